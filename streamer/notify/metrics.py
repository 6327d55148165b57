"""The notifier's Prometheus metrics, in a registry of its own (served on `--metrics-port`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class NotifyMetrics:
    """Counters per destination, and each destination's consumer lag of the alerts topic."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        by_destination = ["destination"]
        self.sent = Counter(
            "healthstream_notify_sent",
            "Alerts a destination acknowledged (2xx)",
            by_destination,
            registry=self.registry,
        )
        self.messages = Counter(
            "healthstream_notify_messages",
            "Webhook requests that succeeded (a digest is one)",
            by_destination,
            registry=self.registry,
        )
        self.retried = Counter(
            "healthstream_notify_retried",
            "Attempts that failed and were retried (5xx, 429, connection errors, timeouts)",
            by_destination,
            registry=self.registry,
        )
        self.failed = Counter(
            "healthstream_notify_failed",
            "Alerts a destination definitively rejected (4xx other than 429) or given up on",
            by_destination,
            registry=self.registry,
        )
        self.deduped = Counter(
            "healthstream_notify_deduped",
            "Alerts not sent because the destination already had them (same alert_id)",
            by_destination,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "healthstream_notify_rate_limited_seconds",
            "Seconds spent waiting for the destination's rate limit",
            by_destination,
            registry=self.registry,
        )
        self.pending = Gauge(
            "healthstream_notify_pending",
            "Alerts routed to the destination and not yet acknowledged",
            by_destination,
            registry=self.registry,
        )
        self.lag = Gauge(
            "healthstream_notify_consumer_lag",
            "Alerts on the topic beyond what the destination finished with (its group's offsets)",
            by_destination,
            registry=self.registry,
        )
