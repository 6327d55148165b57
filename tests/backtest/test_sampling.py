"""The replay's sampling instants: only the events the run accepts set the span sampled."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.backtest.sampling import Replay, replay
from streamer.core.config import ScoreConfig

from .synthetic import canceled, started, used

HISTORY = [
    *(started(account) for account in "ABCD"),
    used("D", "2024-01-02T10:00:00Z", 3, 2),  # activity starts: +30 days warm-up = 02-01
    used("A", "2024-01-20T10:00:00Z", 10, 4),
    used("B", "2024-02-05T10:00:00Z", 5, 5),
    canceled("C", "2024-02-20T00:00:00Z"),
    used("A", "2024-03-15T10:00:00Z", 2, 8),
    canceled("D", "2024-03-10T00:00:00Z"),
    used("A", "2024-04-15T00:00:00Z", 1, 10),  # the end of the data: month starts 02-01 and 03-01
]


def replayed(tmp_path: Path, name: str, lines: list[bytes]) -> Replay:
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return replay(path, ScoreConfig(), warmup_days=30)


def assert_same_sampling(found: Replay, expected: Replay) -> None:
    fields = ("month_starts", "data_start", "activity_start", "data_end", "samples", "grid_samples")
    for name in (*fields, "baseline_usage"):
        assert getattr(found, name) == getattr(expected, name), name


@pytest.mark.parametrize(
    "when",
    ["2022-01-01T00:00:00Z", "2025-06-01T00:00:00Z"],
    ids=["years-before", "a-year-after"],
)
def test_a_refused_usage_line_dated_outside_the_history_moves_no_month_start(
    tmp_path: Path, when: str
) -> None:
    clean = replayed(tmp_path, "clean", HISTORY)
    assert len(clean.month_starts) == 2 and clean.grid_samples
    refused = used("A", when, 0, 99)  # a count of 0: the contract refuses it
    found = replayed(tmp_path, "with-refused", [refused, *HISTORY])
    assert (found.accepted, found.rejected) == (clean.accepted, 1)
    assert_same_sampling(found, clean)


def test_the_use_of_an_account_that_is_not_paying_starts_no_activity_span(tmp_path: Path) -> None:
    """A valid usage line of an account that never pays (a test account, a stray line dated
    years back), accepted by the run, is in no sample: it moved the first month start to 2022
    and sampled 26 month starts with no usage tracked before 2024."""
    clean = replayed(tmp_path, "clean", HISTORY)
    stray = used("Z", "2022-01-01T00:00:00Z", 1, 99)
    found = replayed(tmp_path, "with-stray", [stray, *HISTORY])
    assert (found.accepted, found.rejected) == (clean.accepted + 1, 0)
    assert (found.month_starts, found.activity_start, found.data_end) == (
        clean.month_starts,
        clean.activity_start,
        clean.data_end,
    )
    assert [(s.account_id, s.at) for s in found.samples] == [(s.account_id, s.at) for s in clean.samples]
    assert {s.at for s in found.grid_samples} == {s.at for s in clean.grid_samples}


def test_month_starts_count_from_the_first_event_when_every_activity_event_is_refused(
    tmp_path: Path,
) -> None:
    subscriptions = [line for line in HISTORY if b"usage.recorded" not in line]
    clean = replayed(tmp_path, "subscriptions", subscriptions)
    assert clean.activity_start == clean.data_start and clean.month_starts
    refused = used("A", "2024-01-20T10:00:00Z", 0, 99)  # read as activity, refused by the contract
    found = replayed(tmp_path, "with-refused", [*subscriptions, refused])
    assert found.rejected == 1
    assert_same_sampling(found, clean)


def test_without_the_weekly_grid_only_month_starts_are_sampled_and_they_are_the_same(tmp_path: Path) -> None:
    """Only `--tune` reads the weekly grid: sampled always, it held some four times the month
    starts' samples in memory (711 MB for a reviewer's 400-year span, 215 MB without)."""
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(HISTORY) + b"\n")
    both = replay(path, ScoreConfig(), warmup_days=30)
    months = replay(path, ScoreConfig(), warmup_days=30, grid=False)
    assert both.grid_samples and not months.grid_samples
    assert (months.samples, months.month_starts, months.baseline_usage) == (
        both.samples,
        both.month_starts,
        both.baseline_usage,
    )


def test_a_valid_line_holding_a_number_past_a_double_is_read_like_any_other(tmp_path: Path) -> None:
    """The contract lets `1e400` through in a field it does not read, and the run accepts the
    line; the replay read accepted lines with orjson alone, which refuses it: the first activity
    line ended `streamer backtest` with orjson's message, a later one left its usage out of the
    baseline."""
    clean = replayed(tmp_path, "clean", HISTORY)
    noted = [line[:-1] + b',"note":1e400}' if b"usage.recorded" in line else line for line in HISTORY]
    found = replayed(tmp_path, "noted", noted)
    assert (found.accepted, found.rejected) == (clean.accepted, 0)
    assert_same_sampling(found, clean)
