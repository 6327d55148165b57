"""`streamer import`: history from warehouse-style tables (subscriptions, product events, accounts)."""
