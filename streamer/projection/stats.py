"""A worker's counters and gauges as the flat `stats` mapping the projection stores."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Protocol


class CountersLike(Protocol):
    processed: int
    accepted: int
    duplicates: int
    rejected: int
    rerouted: int
    stale: int
    reread: int
    rereads: int
    dead_letters_known: int
    gap_rereads: int
    empty_offsets: int
    offset_gaps: int
    consumer_gaps: int
    alerts: int
    snapshots: int
    batches: int
    last_latency_s: float

    @property
    def by_rule(self) -> Mapping[str, int]: ...


COUNTERS = (
    "processed",
    "accepted",
    "duplicates",
    "rejected",
    "rerouted",
    "copies_again",
    "stale",
    "reread",
    "rereads",
    "dead_letters_known",
    "gap_rereads",
    "empty_offsets",
    "alerts",
    "snapshots",
    "batches",
)
RULE_PREFIX = "alerts_rule."
LAG_PREFIX = "lag_partition."


class RecentLatency:
    """The processing latency to report: the last batch's, or 0 when no batch was processed since
    the previous reading (an idle worker has nothing waiting; its last value would stay forever)."""

    def __init__(self) -> None:
        self._batches: int | None = None

    def read(self, counters: CountersLike) -> float:
        fresh = counters.batches != self._batches
        self._batches = counters.batches
        return counters.last_latency_s if fresh and counters.batches else 0.0


class CommitWatch:
    """How long input has waited while the worker committed none of it (`stalled_s`).

    A worker that keeps reporting but stands still (an output the broker refuses for ever, an
    agent that hangs) looks alive by its heartbeat; this shows it. The clock starts again
    whenever nothing waits, its tables are recovering, or the committed offsets differ from the
    last reading (a commit, or a rebalance that changed its partitions)."""

    def __init__(self) -> None:
        self._committed: dict[Hashable, int] = {}
        self._since: float | None = None

    def read(
        self, committed: Mapping[Hashable, int], waiting: int, now: float, *, recovering: bool = False
    ) -> float:
        """Seconds since input began waiting with the committed offsets as they are now."""
        if self._since is None or waiting <= 0 or recovering or committed != self._committed:
            self._committed, self._since = dict(committed), now
        return now - self._since


def worker_stats(
    counters: CountersLike,
    lag: Mapping[int, int],
    *,
    started_at: float,
    now: float,
    projection_pending: int = 0,
    projection_failures: int = 0,
    projection_skipped_writes: int = 0,
    projection_pruned_alerts: int = 0,
    latency_s: float | None = None,
    loop_stall_s: float = 0.0,
    stalled_s: float = 0.0,
    fenced: int = 0,
) -> dict[str, float]:
    """Counters since the worker started, consumer lag per partition (all input topics) and total;
    `latency_s` (see RecentLatency) defaults to the last batch's; `loop_stall_s`: the longest the
    event loop stood still since the last stats (`streamer.stream.loop_watch`); `stalled_s`: how
    long input has waited with nothing committed (`CommitWatch`); `projection_skipped_writes` and
    `projection_pruned_alerts`: the writer's (`RedisProjection`); `fenced`: times the worker's group
    membership came into doubt and it held its writes (`streamer.stream.membership.Fence`)."""
    stats: dict[str, float] = {name: float(getattr(counters, name)) for name in COUNTERS}
    stats["offset_gaps"] = float(counters.offset_gaps + counters.consumer_gaps)
    stats["latency_s"] = round(counters.last_latency_s if latency_s is None else latency_s, 4)
    stats["loop_stall_s"] = round(loop_stall_s, 4)
    stats["stalled_s"] = round(stalled_s, 1)
    stats["lag"] = float(sum(lag.values()))
    stats["uptime_s"] = round(now - started_at, 1)
    stats["reported_at"] = now
    stats["projection_pending"] = float(projection_pending)
    stats["projection_failures"] = float(projection_failures)
    stats["projection_skipped_writes"] = float(projection_skipped_writes)
    stats["projection_pruned_alerts"] = float(projection_pruned_alerts)
    stats["fenced"] = float(fenced)
    for rule, count in counters.by_rule.items():
        stats[RULE_PREFIX + rule] = float(count)
    for partition, behind in lag.items():
        stats[f"{LAG_PREFIX}{partition}"] = float(behind)
    return stats
