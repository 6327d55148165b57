"""A worker's counters and lag flattened into the stats mapping."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from streamer.projection.stats import LAG_PREFIX, RULE_PREFIX, RecentLatency, worker_stats


@dataclass
class Counters:
    processed: int = 10
    accepted: int = 7
    duplicates: int = 1
    rejected: int = 2
    rerouted: int = 0
    stale: int = 5
    reread: int = 6
    rereads: int = 1
    offset_gaps: int = 1
    consumer_gaps: int = 2
    alerts: int = 3
    snapshots: int = 4
    batches: int = 2
    by_rule: dict[str, int] = field(default_factory=lambda: defaultdict(int, {"silence": 2, "csat_low": 1}))
    last_latency_s: float = 0.123456


def test_counters_lag_and_rules_are_flattened() -> None:
    stats = worker_stats(Counters(), {0: 5, 3: 1}, started_at=100.0, now=160.0, projection_pending=9)
    assert stats["processed"] == 10 and stats["rejected"] == 2 and stats["alerts"] == 3
    assert stats["stale"] == 5 and stats["rereads"] == 1 and stats["reread"] == 6
    assert stats["offset_gaps"] == 3  # seen by the scorer and recorded by faust's consumer
    assert stats["lag"] == 6 and stats[f"{LAG_PREFIX}0"] == 5 and stats[f"{LAG_PREFIX}3"] == 1
    assert stats[f"{RULE_PREFIX}silence"] == 2
    assert stats["latency_s"] == 0.1235 and stats["uptime_s"] == 60.0
    assert stats["projection_pending"] == 9
    assert all(isinstance(value, float) for value in stats.values())


def test_an_idle_worker_reports_no_latency_instead_of_its_last_one() -> None:
    latency, counters = RecentLatency(), Counters(batches=2, last_latency_s=0.5)
    assert latency.read(counters) == 0.5  # batches were processed since start
    assert latency.read(counters) == 0.0  # none since the last reading: idle
    counters.batches, counters.last_latency_s = 3, 0.2
    assert latency.read(counters) == 0.2
    assert RecentLatency().read(Counters(batches=0, last_latency_s=0.0)) == 0.0
    stats = worker_stats(counters, {}, started_at=0.0, now=1.0, latency_s=latency.read(counters))
    assert stats["latency_s"] == 0.0
