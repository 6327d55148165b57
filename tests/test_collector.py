"""`streamer offline` collects cyclic garbage at a slower pace, and the outputs stay the same."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from streamer.collector import THRESHOLDS
from tests.offline.test_runner import LINES, jsonl, offline, write_events


def test_the_offline_command_collects_at_the_slower_pace(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", LINES)
    offline(events, tmp_path / "out")
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() > 0  # what was alive before scoring is out of the collector's reach


def test_the_outputs_do_not_depend_on_the_collectors_pace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = write_events(tmp_path / "events.jsonl", LINES)
    offline(events, tmp_path / "slow")

    def collect_often() -> None:  # the opposite extreme: a full collection every few allocations
        gc.unfreeze()
        gc.set_threshold(50, 1, 1)

    monkeypatch.setattr("streamer.offline.cli.collect_less", collect_often)
    offline(events, tmp_path / "fast")
    assert gc.get_threshold() == (50, 1, 1)
    for name in ("accounts.jsonl", "health.jsonl", "alerts.jsonl", "portfolio.json"):
        assert (tmp_path / "slow" / name).read_bytes() == (tmp_path / "fast" / name).read_bytes(), name
    # dead letters say when they were written (wall clock): the rest of each is the same
    slow, fast = (jsonl(tmp_path / kind / "deadletter.jsonl") for kind in ("slow", "fast"))
    assert slow and [letter.pop("received_at") for letter in slow + fast]
    assert slow == fast
