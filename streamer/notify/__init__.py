"""Alert delivery to webhooks: routing, Slack/JSON bodies, retries, rate limits, digests, dedupe."""
