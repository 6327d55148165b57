"""What the backtest says where there is no churn to rank: n/a or "cannot be judged", never a
0.000 AUC or a target NOT MET, no warning from the plots, and no window that ends before it starts."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

from streamer.backtest.analysis import TUNE_HORIZON, Backtest, Fitted, Labelled, analyse, tune
from streamer.backtest.cli import _tuned_header
from streamer.backtest.configfile import tuned_config_text
from streamer.backtest.plots import scores
from streamer.backtest.report import render, targets
from streamer.backtest.sampling import Sample, replay
from streamer.core.clock import DAY
from streamer.core.config import ScoreConfig

from .synthetic import sample, started, used


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Backtest:
    """Four accounts paying from 2024-01-01, none churning; one month start (02-01), the data
    ending 03-05: fewer than 60 days after it."""
    lines = [
        *(started(account) for account in "ABCD"),
        used("A", "2024-01-02T10:00:00Z", 3, 2),  # activity starts: +30 days warm-up = 02-01
        used("B", "2024-01-20T10:00:00Z", 10, 3),
        used("C", "2024-02-10T10:00:00Z", 5, 4),
        used("D", "2024-03-05T00:00:00Z", 1, 5),
    ]
    path = tmp_path_factory.mktemp("quiet") / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return analyse(replay(path, ScoreConfig(), warmup_days=30))


def test_targets_without_churn_cannot_be_judged_rather_than_not_met(quiet: Backtest) -> None:
    line = targets(quiet)
    assert "NOT MET" not in line
    assert line == (
        "targets of the score tested: AUC 60d - >= the baseline's - cannot be judged (no churn within "
        "60 days); red/green churn 60d - >= 3x cannot be judged (no churn within 60 days)"
    )


def test_the_alert_precision_window_never_ends_before_it_starts(quiet: Backtest) -> None:
    """With the data ending fewer than 60 days after the first month start, no alert can be
    followed for 60 days: the window was printed as 2024-02-01 .. 2024-01-05."""
    text = render(quiet, "events.jsonl")
    assert "precision = share of alerts raised from 2024-02-01 to 60 days before the data end " in text
    assert "(none: the data ends 2024-03-05)" in text
    assert "2024-02-01 .. 2024-01-05" not in text


def test_the_score_plot_without_churners_draws_the_other_side_and_warns_nothing(
    quiet: Backtest, tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in divide" included
        written = scores(quiet, tmp_path)
    assert written.read_bytes().startswith(b"\x89PNG")


def adopt(fitted: Fitted) -> ScoreConfig:
    text = tuned_config_text({}, fitted.weights, [], fitted.signal_weights, fitted.model)
    return ScoreConfig.model_validate(tomllib.loads(text))


def test_the_written_config_says_n_a_for_held_out_aucs_when_the_held_out_months_have_no_churn() -> None:
    """9 month starts of 200 accounts, churn in the first 6 only: the 3 held out have none, and the
    header of the written configuration said "configured score 0.000, tuned score 0.000"."""
    rng = np.random.default_rng(3)
    samples: list[Sample] = []
    labels: list[bool] = []
    for month in range(9):
        for i in range(200):
            recency = float(rng.uniform(0, 100))
            signals = {"recency_days": recency, "nps": float(rng.uniform(0, 100))}
            samples.append(sample(account_id=f"a{i}", at=month * 31 * DAY, mrr=1, signals=signals))
            labels.append(month < 6 and bool(rng.uniform() < 0.4 * (1 - recency / 100)))
    labelled = Labelled(TUNE_HORIZON, samples, np.array(labels, dtype=bool))
    tuning = tune({TUNE_HORIZON: labelled}, ScoreConfig(), adopt, 1 / 3)
    assert tuning.default.auc[TUNE_HORIZON] is None
    header = _tuned_header(tuning, Path("events.jsonl"), None)[-1]
    assert "0.000" not in header
    assert header.startswith(
        "Held-out AUC 60d: configured score n/a, tuned score n/a, churn_risk_60d n/a (n/a: no churn "
        "within 60 days in the held-out month starts; chosen: "
    )
