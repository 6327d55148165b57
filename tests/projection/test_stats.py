"""A worker's counters and lag flattened into the stats mapping."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import fields
from typing import Any

from streamer.projection.stats import (
    COUNTERS,
    LAG_PREFIX,
    RULE_PREFIX,
    CommitWatch,
    RecentLatency,
    worker_stats,
)
from streamer.stream.counters import Counters
from streamer.view.metrics import WORKER_COUNTERS, worker_families


def counters(**changes: Any) -> Counters:
    """The scorer's own counters, every one set to a distinct value unless given."""
    values: dict[str, Any] = {
        "processed": 10,
        "accepted": 7,
        "duplicates": 1,
        "rejected": 2,
        "rerouted": 0,
        "copies_again": 8,
        "stale": 5,
        "reread": 6,
        "rereads": 1,
        "dead_letters_known": 11,
        "gap_rereads": 12,
        "empty_offsets": 13,
        "offset_gaps": 1,
        "consumer_gaps": 2,
        "alerts": 3,
        "snapshots": 4,
        "batches": 2,
        "by_rule": defaultdict(int, {"silence": 2, "csat_low": 1}),
        "last_latency_s": 0.123456,
    }
    return Counters(**{**values, **changes})


def test_counters_lag_and_rules_are_flattened() -> None:
    stats = worker_stats(
        counters(),
        {0: 5, 3: 1},
        started_at=100.0,
        now=160.0,
        projection_pending=9,
        projection_skipped_writes=2,
        projection_pruned_alerts=700,
        loop_stall_s=0.31234,
        stalled_s=75.04,
    )
    assert stats["processed"] == 10 and stats["rejected"] == 2 and stats["alerts"] == 3
    assert stats["stale"] == 5 and stats["rereads"] == 1 and stats["reread"] == 6
    assert stats["copies_again"] == 8
    assert stats["dead_letters_known"] == 11 and stats["gap_rereads"] == 12 and stats["empty_offsets"] == 13
    assert stats["offset_gaps"] == 3  # seen by the scorer and recorded by faust's consumer
    assert stats["lag"] == 6 and stats[f"{LAG_PREFIX}0"] == 5 and stats[f"{LAG_PREFIX}3"] == 1
    assert stats[f"{RULE_PREFIX}silence"] == 2
    assert stats["latency_s"] == 0.1235 and stats["uptime_s"] == 60.0
    assert stats["projection_pending"] == 9 and stats["loop_stall_s"] == 0.3123
    assert stats["stalled_s"] == 75.0
    assert stats["projection_skipped_writes"] == 2 and stats["projection_pruned_alerts"] == 700
    assert all(isinstance(value, float) for value in stats.values())


def test_an_idle_worker_reports_no_latency_instead_of_its_last_one() -> None:
    latency, running = RecentLatency(), counters(batches=2, last_latency_s=0.5)
    assert latency.read(running) == 0.5  # batches were processed since start
    assert latency.read(running) == 0.0  # none since the last reading: idle
    running.batches, running.last_latency_s = 3, 0.2
    assert latency.read(running) == 0.2
    assert RecentLatency().read(counters(batches=0, last_latency_s=0.0)) == 0.0
    stats = worker_stats(running, {}, started_at=0.0, now=1.0, latency_s=latency.read(running))
    assert stats["latency_s"] == 0.0


def test_a_worker_that_commits_nothing_while_input_waits_is_stalled_for_as_long() -> None:
    watch, at = CommitWatch(), {("usage", 0): 10, ("usage", 1): 4}
    assert watch.read(at, waiting=3, now=100.0) == 0.0  # the first reading starts the clock
    assert watch.read(at, waiting=5, now=130.0) == 30.0  # more arrives, nothing is committed
    assert watch.read(at, waiting=5, now=175.0) == 75.0
    moved = {("usage", 0): 12, ("usage", 1): 4}
    assert watch.read(moved, waiting=5, now=180.0) == 0.0  # a commit
    assert watch.read(moved, waiting=5, now=200.0) == 20.0
    assert watch.read(moved, waiting=0, now=260.0) == 0.0  # nothing waits: idle, not stalled
    assert watch.read(moved, waiting=2, now=270.0) == 10.0  # input arrived since the last reading
    assert watch.read(moved, waiting=2, now=300.0, recovering=True) == 0.0  # tables are recovering
    assert watch.read(moved, waiting=2, now=310.0) == 10.0
    fewer = {("usage", 0): 12}
    assert watch.read(fewer, waiting=2, now=320.0) == 0.0  # a rebalance changed the partitions


def test_the_writers_skipped_writes_and_pruned_alerts_are_worker_counters_in_the_views_metrics() -> None:
    """Both were counted on the writer only: an operator saw neither."""
    stats = worker_stats(
        counters(), {}, started_at=0.0, now=1.0, projection_skipped_writes=1, projection_pruned_alerts=5
    )
    families = {family.name: family for family in worker_families({"w1": stats})}
    for name, value in (
        ("healthstream_projection_skipped_writes", 1.0),
        ("healthstream_projection_pruned_alerts", 5.0),
    ):
        [sample] = [s for s in families[name].samples if s.name == name + "_total"]
        assert sample.labels == {"worker": "w1"} and sample.value == value


def test_the_times_a_worker_held_its_writes_at_the_membership_fence_are_a_worker_counter() -> None:
    """The fence's warning was a log line only: an operator could not alert on it."""
    stats = worker_stats(counters(), {}, started_at=0.0, now=1.0, fenced=2)
    families = {family.name: family for family in worker_families({"w1": stats})}
    name = "healthstream_membership_fenced"
    [sample] = [s for s in families[name].samples if s.name == name + "_total"]
    assert sample.labels == {"worker": "w1"} and sample.value == 2.0


# Folded into another stats entry rather than exported alone.
FOLDED = {"offset_gaps", "consumer_gaps", "by_rule", "last_latency_s"}


def test_every_counter_of_the_scorer_reaches_the_views_metrics() -> None:
    """Three counters (dead letters already written, gap re-reads, empty offsets) were kept and
    logged but never exported: an operator comparing the rejected count with the dead-letter topic
    after a restart could not see why they differ. A counter added to `Counters` fails here until
    it is exported (or named as folded into another)."""
    exported = {name for name, _, _ in WORKER_COUNTERS}
    for counter in fields(Counters):
        if counter.name not in FOLDED:
            assert counter.name in COUNTERS and counter.name in exported, counter.name
    stats = worker_stats(counters(), {}, started_at=0.0, now=1.0)
    families = {family.name: family for family in worker_families({"w1": stats})}
    for name, value in (
        ("healthstream_dead_letters_known", 11.0),
        ("healthstream_gap_rereads", 12.0),
        ("healthstream_empty_offsets", 13.0),
    ):
        [sample] = [s for s in families[name].samples if s.name == name + "_total"]
        assert sample.labels == {"worker": "w1"} and sample.value == value
