"""`/metrics` in the Prometheus text format: the workers' counters and gauges (from their stats in
Redis, one `worker` label each) and the view's own request counts and latencies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from streamer.contract.vocabulary import BANDS
from streamer.core.totals import report
from streamer.projection.memory import StoreMemory, Trouble
from streamer.projection.redis_reader import ProjectionReader
from streamer.projection.stats import LAG_PREFIX, RULE_PREFIX
from streamer.view.errors import UNREADABLE

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (stats name, metric name without _total, help) of the workers' counters
WORKER_COUNTERS = (
    ("processed", "healthstream_events_processed", "Input messages taken in by the worker"),
    ("accepted", "healthstream_events_accepted", "Events applied to account state"),
    ("duplicates", "healthstream_events_duplicate", "Events ignored as duplicates (same event_id)"),
    ("rejected", "healthstream_events_rejected", "Messages dead-lettered (invalid or too late)"),
    ("rerouted", "healthstream_events_rerouted", "Messages re-published to their account's partition"),
    (
        "copies_again",
        "healthstream_events_rerouted_again",
        "Re-routed copies received again (a re-routing worker restarted) and skipped as handled",
    ),
    ("stale", "healthstream_events_stale", "Deliveries skipped: fetched before a rebalance or repeated"),
    (
        "reread",
        "healthstream_events_reread",
        "Deliveries skipped: re-read after a restart or rebalance, already in the stored state",
    ),
    ("rereads", "healthstream_partition_rereads", "Stalled input partitions read again"),
    (
        "gap_rereads",
        "healthstream_gap_rereads",
        "Deliveries that skipped input offsets, refused and read again from the first one skipped",
    ),
    (
        "empty_offsets",
        "healthstream_empty_offsets",
        "Input offsets without a record (transaction markers, aborted records), passed over",
    ),
    (
        "dead_letters_known",
        "healthstream_dead_letters_known",
        "Messages rejected again after a restart or rebalance whose dead letter was already in the "
        "topic, so not written twice (also counted in healthstream_events_rejected_total)",
    ),
    (
        "offset_gaps",
        "healthstream_offset_gaps",
        "Input offset ranges lost (gone from Kafka before they were read; should stay 0)",
    ),
    ("alerts", "healthstream_alerts_raised", "Alerts raised (all rules)"),
    ("snapshots", "healthstream_snapshots_published", "Health snapshots published"),
    ("batches", "healthstream_batches", "Batches processed"),
    (
        "projection_failures",
        "healthstream_projection_write_failures",
        "Failed writes to the Redis projection",
    ),
    (
        "projection_skipped_writes",
        "healthstream_projection_skipped_writes",
        "Projection writes skipped for good: Redis refused them (a key of another type than the "
        "workers write there, WRONGTYPE)",
    ),
    (
        "fenced",
        "healthstream_membership_fenced",
        "Times the worker's group membership came into doubt (no heartbeat for most of a session) "
        "and it held its writes",
    ),
    (
        "projection_pruned_alerts",
        "healthstream_projection_pruned_alerts",
        "Alerts staged while Redis was away and dropped unwritten: Redis would not have kept them",
    ),
)


class Live(Collector):
    """Families computed per scrape from Redis (set just before `generate_latest`)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)

    def describe(self) -> Iterable[Metric]:
        return []


def _sample(stats: dict[str, float], bad: Mapping[str, str], name: str) -> float | None:
    """A worker's stat: 0 when it reports none, None (left out) when it holds one the view cannot
    read (`bad`, see `Workers.unreadable`)."""
    return None if name in bad or "" in bad else stats.get(name, 0.0)


def _add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, value)


def worker_families(
    workers: dict[str, dict[str, float]], unreadable: Mapping[str, Mapping[str, str]] | None = None
) -> list[Metric]:
    """Prometheus families of the workers' stats (by worker id); a stat the view cannot read
    (`unreadable`, see `Workers.unreadable`) is left out."""
    families: list[Metric] = []
    reported = [
        (worker_id, stats, (unreadable or {}).get(worker_id, {}))
        for worker_id, stats in sorted(workers.items())
    ]
    for name, metric, help_text in WORKER_COUNTERS:
        family = CounterMetricFamily(metric, f"{help_text}, since the worker started", labels=["worker"])
        for worker_id, stats, bad in reported:
            _add(family, [worker_id], _sample(stats, bad, name))
        families.append(family)
    by_rule = CounterMetricFamily(
        "healthstream_alerts_raised_by_rule",
        "Alerts raised per rule, since the worker started",
        labels=["worker", "rule"],
    )
    lag = GaugeMetricFamily(
        "healthstream_consumer_lag",
        "Input messages not yet committed (all input topics)",
        labels=["worker", "partition"],
    )
    latency = GaugeMetricFamily(
        "healthstream_processing_latency_seconds",
        "Wall time from a batch's last message being produced to its processing",
        labels=["worker"],
    )
    stall = GaugeMetricFamily(
        "healthstream_event_loop_stall_seconds",
        "Longest time the worker's event loop stood still between its last two stats reports",
        labels=["worker"],
    )
    stalled = GaugeMetricFamily(
        "healthstream_worker_stalled_seconds",
        "How long the worker has left input waiting with nothing committed (0: it commits, or nothing waits)",
        labels=["worker"],
    )
    pending = GaugeMetricFamily(
        "healthstream_projection_pending",
        "Values staged for the Redis projection, not yet written",
        labels=["worker"],
    )
    for worker_id, stats, bad in reported:
        for key, value in sorted(stats.items()):
            if key.startswith(RULE_PREFIX):
                by_rule.add_metric([worker_id, key[len(RULE_PREFIX) :]], value)
            elif key.startswith(LAG_PREFIX):
                lag.add_metric([worker_id, key[len(LAG_PREFIX) :]], value)
        _add(latency, [worker_id], _sample(stats, bad, "latency_s"))
        _add(stall, [worker_id], _sample(stats, bad, "loop_stall_s"))
        _add(stalled, [worker_id], _sample(stats, bad, "stalled_s"))
        _add(pending, [worker_id], _sample(stats, bad, "projection_pending"))
    count = GaugeMetricFamily("healthstream_workers", "Workers that reported recently")
    count.add_metric([], len(reported))
    return [*families, by_rule, lag, latency, stall, stalled, pending, count]


def memory_families(memory: StoreMemory) -> list[Metric]:
    """Prometheus families of the projection store's memory (`streamer.projection.memory`)."""
    used = GaugeMetricFamily("healthstream_redis_memory_used_bytes", "Memory Redis uses (used_memory)")
    used.add_metric([], memory.used)
    limit = GaugeMetricFamily("healthstream_redis_maxmemory_bytes", "Redis's memory limit (0: none)")
    limit.add_metric([], memory.limit)
    evicts = GaugeMetricFamily(
        "healthstream_redis_evicts_projection",
        "1 when Redis's maxmemory-policy can evict the projection's keys at its memory limit",
    )
    evicts.add_metric([], 1 if memory.trouble is Trouble.evicts else 0)
    evicted = CounterMetricFamily(
        "healthstream_redis_evicted_keys", "Keys Redis evicted at its memory limit, since Redis started"
    )
    evicted.add_metric([], memory.evicted_keys)
    return [used, limit, evicts, evicted]


class Metrics:
    """The view's registry: its own request metrics plus the live families."""

    def __init__(self, reader: ProjectionReader, worker_max_age_s: float) -> None:
        self.reader = reader
        self.worker_max_age_s = worker_max_age_s
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "healthstream_view_requests",
            "HTTP requests answered by the view",
            ["route", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "healthstream_view_request_seconds",
            "Time the view took to answer",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.live = Live()
        self.registry.register(self.live)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.seconds.labels(route).observe(seconds)

    async def render(self) -> bytes:
        families: list[Metric] = []
        up = GaugeMetricFamily("healthstream_redis_up", "Whether the view could read the projection store")
        try:
            workers = await self.reader.workers(self.worker_max_age_s)
            # every partition's stream time checked too, as /healthz does: a partition the view
            # cannot read is Redis down here (the README's word), not only a 503 of the portfolio
            _, totals = await self.reader.checked_totals()
            current = report(totals, currency="")
        except (RedisError, OSError, *UNREADABLE):  # unreachable, or holding what it cannot read
            up.add_metric([], 0)
            families.append(up)
        else:
            up.add_metric([], 1)
            by_band = GaugeMetricFamily(
                "healthstream_accounts",
                "Accounts not churned, by band (a churned account keeps its last band: not counted)",
                labels=["band"],
            )
            for band in BANDS:
                by_band.add_metric([band], current["accounts_by_band"][band])
            by_stage = GaugeMetricFamily(
                "healthstream_accounts_by_stage", "Accounts by lifecycle stage", labels=["stage"]
            )
            for stage, count in current["accounts_by_stage"].items():
                by_stage.add_metric([stage], count)
            memory = await self.reader.memory()  # None: INFO refused to this user, no figures
            families += [
                up,
                by_band,
                by_stage,
                *(memory_families(memory) if memory else []),
                *worker_families(workers.stats, workers.unreadable),
            ]
        self.live.families = families
        return bytes(generate_latest(self.registry))
