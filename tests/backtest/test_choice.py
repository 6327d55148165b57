"""`--tune` picks among the default weights, the health fits and (as a yardstick) the plain fit."""

from __future__ import annotations

import tomllib

import numpy as np

from streamer.backtest.analysis import TUNE_HORIZON, Fitted, Labelled, tune
from streamer.backtest.choice import Kind
from streamer.backtest.configfile import tuned_config_text
from streamer.backtest.report import render_choice
from streamer.backtest.sampling import Sample
from streamer.core.clock import DAY
from streamer.core.config import ScoreConfig

from .synthetic import sample


def adopt(fitted: Fitted) -> ScoreConfig:
    text = tuned_config_text({}, fitted.weights, [], fitted.signal_weights, fitted.model)
    return ScoreConfig.model_validate(tomllib.loads(text))


def history(logit_of: object, months: int = 9, per_month: int = 300, seed: int = 3) -> Labelled:
    """Samples with recency_days, nps and a constant payment_failures; churn drawn from
    `logit_of(month, recency, nps)` (sub-scores 0-100)."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    labels: list[bool] = []
    for m in range(months):
        for i in range(per_month):
            recency, nps = float(rng.uniform(0, 100)), float(rng.uniform(0, 100))
            signals = {"recency_days": recency, "nps": nps, "payment_failures": 100.0}
            logit = logit_of(m, recency, nps)  # type: ignore[operator]
            labels.append(bool(rng.uniform() < 1 / (1 + np.exp(-logit))))
            samples.append(sample(account_id=f"a{i}", at=m * 31 * DAY, mrr=1, signals=signals))
    return Labelled(TUNE_HORIZON, samples, np.array(labels, dtype=bool))


def test_the_default_weights_are_kept_when_no_fit_ranks_better_out_of_fold() -> None:
    """Months 0-1 churn the wrong way round (more recency, more churn), later ones the right way:
    fits on the early months cannot use recency (health weights are >= 0) and rank no better
    than chance on the later folds, where the default weights rank well. Before the choice,
    --tune wrote the fit regardless."""

    def logit(month: int, recency: float, nps: float) -> float:
        return -4.0 + 5.0 * recency / 100 if month < 2 else 1.0 - 5.0 * recency / 100

    result = tune({TUNE_HORIZON: history(logit)}, ScoreConfig(), adopt, 1 / 3)
    choice = result.choice
    assert choice.keeps_default and choice.winner.kind is Kind.default
    best_health = choice.best(Kind.health)
    assert best_health is not None and best_health.auc is not None and choice.winner.auc is not None
    assert choice.winner.auc > best_health.auc
    assert result.tuned_weights == ScoreConfig().weights.as_dict()
    assert result.fitted.signal_weights == {n: w for n, (_, w) in ScoreConfig().signal_table.items()}
    assert (
        result.test_scores["tuned"][TUNE_HORIZON].tolist()
        == result.test_scores["default"][TUNE_HORIZON].tolist()
    )
    assert any("--tune keeps the default weights" in line for line in render_choice(choice))
    for fold in choice.folds:  # the time-split guard holds for the choice's folds too
        assert all(m + TUNE_HORIZON * DAY <= fold.validate for m in fold.fit_months)
        assert fold.validate in result.train_months


def test_a_health_fit_is_written_when_it_ranks_better_than_the_default_out_of_fold() -> None:
    """Churn follows nps alone; the default score leans on recency (noise here)."""

    def logit(month: int, recency: float, nps: float) -> float:
        return 1.0 - 6.0 * nps / 100

    result = tune({TUNE_HORIZON: history(logit)}, ScoreConfig(), adopt, 1 / 3)
    choice = result.choice
    assert choice.winner.kind is Kind.health and not choice.keeps_default
    assert result.health.l2 == choice.winner.l2
    default = choice.best(Kind.default)
    assert default is not None and default.auc is not None and choice.winner.auc is not None
    assert choice.winner.auc > default.auc
    tuned, default_held = result.tuned.auc[TUNE_HORIZON], result.default.auc[TUNE_HORIZON]
    assert tuned is not None and default_held is not None and tuned > default_held
    assert result.fitted.signal_weights["nps"] > result.fitted.signal_weights["recency_days"]


def test_a_tie_goes_to_the_default() -> None:
    """Nothing varies: every candidate ranks at chance, and the simplest, the default, wins."""
    rng = np.random.default_rng(1)
    samples = [
        sample(account_id=f"a{i}", at=(i // 200) * 31 * DAY, mrr=1, signals={"recency_days": 50.0})
        for i in range(1800)
    ]
    labelled = Labelled(TUNE_HORIZON, samples, rng.uniform(size=1800) < 0.2)
    result = tune({TUNE_HORIZON: labelled}, ScoreConfig(), adopt, 1 / 3)
    assert result.choice.keeps_default and len(result.choice.folds) == 3
