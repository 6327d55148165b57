"""`streamer view`: an HTTP service (JSON API, dashboard, metrics) over the Redis projection; it keeps
no state, and its write routes publish input events to Kafka."""
