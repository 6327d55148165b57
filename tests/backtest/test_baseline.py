"""The usage baseline of `streamer backtest`: events in the 28 days before a month start, fewer = riskier."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from streamer.backtest.analysis import Labelled, analyse, pooled_differences
from streamer.backtest.baseline import UsageWindow
from streamer.backtest.report import _against_chance, render, to_json
from streamer.backtest.sampling import replay
from streamer.core.clock import DAY
from streamer.core.config import ScoreConfig

from .synthetic import canceled, sample, started, used


def ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_the_window_is_the_28_whole_days_before_the_instant() -> None:
    window = UsageWindow()
    window.add("a", ms("2024-02-02T00:00:00Z"), 1)  # first instant of the window
    window.add("a", ms("2024-02-01T23:59:59Z"), 10)  # just before it
    window.add("a", ms("2024-02-29T23:59:59Z"), 100)  # last second before 03-01
    window.add("b", ms("2024-02-15T12:00:00Z"), 4)
    window.add("a", ms("2024-03-01T00:00:00Z"), 1000)  # at the instant: not before it
    assert window.before("a", ms("2024-03-01T00:00:00Z")) == 101
    assert window.before("b", ms("2024-03-01T00:00:00Z")) == 4
    assert window.before("nobody", ms("2024-03-01T00:00:00Z")) == 0


def test_old_days_are_dropped_as_time_passes() -> None:
    window = UsageWindow()
    start = ms("2024-01-01T12:00:00Z")
    for day in range(200):
        window.add("a", start + day * DAY, 1)
    assert len(window._counts["a"]) <= window.days + 1
    assert window.before("a", ms("2024-07-19T00:00:00Z")) == 28  # the days 06-21 .. 07-18


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """Four accounts paying from 2024-01-01; C churns 02-20, D 03-10; month starts 02-01 and 03-01."""
    lines = [
        *(started(account) for account in "ABCD"),
        used("D", "2024-01-02T10:00:00Z", 3, 2),  # activity starts: +30 days warm-up = 02-01
        used("D", "2024-01-10T10:00:00Z", 7, 3),
        used("A", "2024-01-20T10:00:00Z", 10, 4),
        used("B", "2024-01-25T10:00:00Z", 5, 5),
        used("C", "2024-01-31T23:00:00Z", 1, 6),
        used("B", "2024-02-01T00:00:00Z", 100, 7),  # at the month start: after it; before 03-01's window
        used("A", "2024-02-15T10:00:00Z", 2, 8),
        canceled("C", "2024-02-20T00:00:00Z"),
        used("D", "2024-02-29T23:59:59Z", 4, 9),
        canceled("D", "2024-03-10T00:00:00Z"),
        used("A", "2024-04-15T00:00:00Z", 1, 10),  # the end of the data
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_baseline_auc_by_hand(history: Path) -> None:
    replayed = replay(history, ScoreConfig(), warmup_days=30)
    feb, mar = ms("2024-02-01T00:00:00Z"), ms("2024-03-01T00:00:00Z")
    assert replayed.month_starts == [feb, mar]
    assert replayed.baseline_usage == {
        ("A", feb): 10, ("B", feb): 5, ("C", feb): 1, ("D", feb): 7,  # D's 01-02 use is 30 days before
        ("A", mar): 2, ("B", mar): 0, ("D", mar): 4,  # C no longer pays; B's 02-01 use is 29 days before
    }  # fmt: skip
    result = analyse(replayed)
    # 60 days (02-01 only): churners C (1), D (7) vs A (10), B (5): C beats both, D only A -> 3/4.
    # 30 days: churners C@02-01 (1), D@03-01 (4) vs A (10), B (5), D (7) at 02-01 and A (2), B (0)
    # at 03-01: C is busier only than B@03-01 (4 of 5 pairs), D@03-01 beats 10, 5, 7 (3 of 5) -> 7/10.
    assert result.baseline == {30: pytest.approx(0.7), 60: pytest.approx(0.75)}
    assert "usage events in the 28 days before (fewer = riskier): AUC 30d 0.700, AUC 60d 0.750" in render(
        result, "x"
    )
    assert to_json(result)["baseline"] == {"name": "usage_28d", "auc": {"30": 0.7, "60": 0.75}}


def test_the_report_says_how_far_the_score_is_from_a_coin_flip_and_from_the_baseline(history: Path) -> None:
    result = analyse(replay(history, ScoreConfig(), warmup_days=30))
    score = result.horizons[60].pooled_auc
    assert score is not None
    minus = result.minus[60]
    assert minus["chance"].auc == pytest.approx(score - 0.5)
    assert minus["baseline"].auc == pytest.approx(score - 0.75)
    assert not minus["chance"].clear  # four accounts: nothing is beyond the noise
    text = render(result, "x")
    assert f"the score's AUC 60d {score:.3f} (SE " in text
    assert "within two standard errors of a coin flip" in text
    assert f"the score minus the baseline, AUC 60d: {score - 0.75:+.3f} (SE " in text
    assert to_json(result)["horizons"]["60"]["minus"]["baseline"] == {
        "auc": pytest.approx(score - 0.75),
        "standard_error": minus["baseline"].standard_error,
        "clear": False,
    }


def labelled(scores: Sequence[float], churned: Sequence[bool]) -> Labelled:
    """One sample per account at one instant."""
    samples = [sample(account_id=f"a{i}", score=score) for i, score in enumerate(scores)]
    return Labelled(60, samples, np.array(churned, dtype=bool))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_score_that_knows_nothing_is_within_the_noise_of_a_coin_flip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    churned = rng.uniform(size=600) < 0.1
    found = pooled_differences(labelled(rng.uniform(0, 100, 600), churned), rng.uniform(size=600))
    chance = found["chance"]
    assert chance.standard_error is not None and 0.02 < chance.standard_error < 0.06
    assert not chance.clear
    assert "does not rank churn" in _against_chance(chance)


def test_a_score_that_ranks_churn_is_beyond_chance_either_way_round() -> None:
    rng = np.random.default_rng(7)
    churned = rng.uniform(size=600) < 0.1
    ranked = np.where(churned, rng.uniform(0, 60, 600), rng.uniform(40, 100, 600))  # churners lower
    baseline = rng.uniform(size=600)  # a baseline that knows nothing
    found = pooled_differences(labelled(ranked, churned), baseline)
    assert found["chance"].clear and found["chance"].auc > 0.3
    assert found["baseline"].clear and found["baseline"].auc > 0.3
    assert _against_chance(found["chance"]) == "better than a coin flip"
    backwards = pooled_differences(labelled(100 - ranked, churned), baseline)["chance"]
    assert backwards.clear and backwards.auc < -0.3
    assert "the wrong way" in _against_chance(backwards)


def test_the_score_against_itself_as_baseline_is_no_difference() -> None:
    rng = np.random.default_rng(3)
    churned = rng.uniform(size=300) < 0.2
    scores = rng.uniform(0, 100, 300)
    same = pooled_differences(labelled(scores, churned), -scores)["baseline"]
    assert same.auc == 0 and same.standard_error == 0 and not same.clear
