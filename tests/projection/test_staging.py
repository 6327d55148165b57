"""Staging keeps the newest value per key, also when a failed write is merged back."""

from __future__ import annotations

import orjson

from streamer.projection.staging import PartitionState, Staged


def snap(account: str, as_of: int, score: float) -> tuple[int, dict[str, object]]:
    return as_of, {"account_id": account, "score": score}


def test_an_older_snapshot_does_not_replace_a_newer_one() -> None:
    staged = Staged()
    staged.snapshot(*snap("a", 200, 50.0))
    staged.snapshot(*snap("a", 100, 10.0))
    assert orjson.loads(staged.snapshots["a"][1])["score"] == 50.0
    staged.snapshot(*snap("a", 200, 60.0))  # same instant, later batch: replaces
    assert orjson.loads(staged.snapshots["a"][1])["score"] == 60.0


def test_partition_state_keeps_the_latest_stream_time() -> None:
    staged = Staged()
    staged.partition(0, PartitionState(200, b"new", b"[]"))
    staged.partition(0, PartitionState(100, b"old", b"[]"))
    assert staged.partitions[0].sums == b"new"


def test_absorb_puts_newer_values_over_a_failed_batch() -> None:
    failed = Staged()
    failed.snapshot(*snap("a", 100, 1.0))
    failed.snapshot(*snap("b", 300, 2.0))
    failed.alerts["x"] = {"alert_id": "x"}
    failed.workers["w"] = {"processed": 1.0}
    later = Staged()
    later.snapshot(*snap("a", 200, 3.0))
    later.snapshot(*snap("b", 250, 4.0))
    later.workers["w"] = {"processed": 5.0}
    failed.absorb(later)
    assert orjson.loads(failed.snapshots["a"][1])["score"] == 3.0
    assert orjson.loads(failed.snapshots["b"][1])["score"] == 2.0
    assert failed.workers["w"] == {"processed": 5.0}
    assert len(failed) == 4
