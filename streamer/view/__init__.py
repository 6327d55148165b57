"""`streamer view`: a stateless HTTP service (JSON API, dashboard, metrics) over the Redis projection."""
