"""`--tune` picks among the default weights and the fits shrunk towards them (the plain fit: a yardstick)."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import numpy as np
import pytest

from streamer.backtest import choice as choice_module
from streamer.backtest.analysis import (
    TUNE_HORIZON,
    Difference,
    Fitted,
    Labelled,
    calibrated_table,
    fitted_settings,
    model_table,
    tune,
)
from streamer.backtest.choice import (
    Candidate,
    Choice,
    Kind,
    mix_fit,
    mix_risk,
    plain_fit,
    plain_risk,
    shrunk_fit,
)
from streamer.backtest.configfile import tuned_config_text
from streamer.backtest.learn import FeatureSpace
from streamer.backtest.report import render_choice, render_tuning
from streamer.backtest.sampling import Sample
from streamer.backtest.tuning import signal_scores_under
from streamer.core.clock import DAY
from streamer.core.config import RiskModel, ScoreConfig
from streamer.core.risk import churn_probability

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
    assert choice.keeps_default and choice.weighting.kind is Kind.default
    best_health = choice.best(Kind.health)
    assert best_health is not None and best_health.auc is not None and choice.weighting.auc is not None
    assert choice.weighting.auc > best_health.auc
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
    assert choice.weighting.kind is Kind.health and not choice.keeps_default
    assert result.health.l2 == choice.weighting.l2
    default = choice.best(Kind.default)
    assert default is not None and default.auc is not None and choice.weighting.auc is not None
    assert choice.weighting.auc > default.auc
    tuned, default_held = result.tuned.auc[TUNE_HORIZON], result.default.auc[TUNE_HORIZON]
    assert tuned is not None and default_held is not None and tuned > default_held
    assert result.fitted.signal_weights["nps"] > result.fitted.signal_weights["recency_days"]


def test_a_tie_keeps_the_default_weights_and_hedges_the_risk_with_the_mix() -> None:
    """Nothing varies: every candidate ranks at chance. The mix (the calibrated default averaged
    with the plain fit) comes first in `PREFERENCE`, so it becomes the [model]; no health fit
    replaces the default score's weights on noise."""
    rng = np.random.default_rng(1)
    samples = [
        sample(account_id=f"a{i}", at=(i // 200) * 31 * DAY, mrr=1, signals={"recency_days": 50.0})
        for i in range(1800)
    ]
    labelled = Labelled(TUNE_HORIZON, samples, rng.uniform(size=1800) < 0.2)
    result = tune({TUNE_HORIZON: labelled}, ScoreConfig(), adopt, 1 / 3)
    assert result.choice.winner.kind is Kind.mix and len(result.choice.folds) == 3
    assert result.tuned_weights == ScoreConfig().weights.as_dict()
    assert result.fitted.signal_weights == {n: w for n, (_, w) in ScoreConfig().signal_table.items()}


NOISE = (
    "nps", "csat_pct", "ces", "open_high_priority", "oldest_open_hours", "resolution_hours",
    "first_contact_rate", "ticket_volume_ratio", "events_28d", "active_days_28d", "seat_utilisation",
    "feature_breadth",
)  # fmt: skip


def overfitting_history(seed: int = 3, months: int = 9, per_month: int = 80) -> Labelled:
    """Churn follows usage and days to renewal, which the default weighs; twelve more signals are
    noise. 80 accounts a month, about 6 churners: a fit has more to overfit than to learn."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    labels: list[bool] = []
    for m in range(months):
        for i in range(per_month):
            signals = {"usage_28d": float(rng.uniform(0, 100)), "days_to_renewal": float(rng.uniform(0, 100))}
            signals |= {name: float(rng.uniform(0, 100)) for name in NOISE}
            logit = -1.0 - 4.0 * (0.6 * signals["usage_28d"] + 0.4 * signals["days_to_renewal"]) / 100
            labels.append(bool(rng.uniform() < 1 / (1 + np.exp(-logit))))
            samples.append(sample(account_id=f"a{i}", at=m * 31 * DAY, mrr=1, signals=signals))
    return Labelled(TUNE_HORIZON, samples, np.array(labels, dtype=bool))


def test_a_fit_that_overfits_falls_back_to_the_default_by_the_one_standard_error_rule() -> None:
    """Out of fold a fit ranks a little better than the default (0.733 vs 0.724), by noise: on the
    held-out months the same fit would rank at 0.584 against the default's 0.668. The gap (0.009)
    is under one standard error of the difference (0.016, paired bootstrap over accounts): the
    default is within the noise of the best, and its weights are written. (The [model] is the mix,
    whose plain half overfits the twelve noise signals too: 0.627 held out.)"""
    result = tune({TUNE_HORIZON: overfitting_history()}, ScoreConfig(), adopt, 1 / 3)
    choice = result.choice
    assert choice.best_writable is not None and choice.best_writable.kind is Kind.health
    default = choice.best(Kind.default)
    assert default is not None and default.auc is not None and choice.best_writable.auc is not None
    assert choice.best_writable.auc > default.auc  # the fit "won" out of fold ...
    assert choice.standard_error is not None and choice.bar is not None and default.auc >= choice.bar
    assert choice.keeps_default  # ... by less than the noise: the default is kept
    assert result.tuned_weights == ScoreConfig().weights.as_dict()
    assert result.tuned.auc[TUNE_HORIZON] == result.default.auc[TUNE_HORIZON]
    assert math.isinf(result.health.l2)  # no health fit behind the weights
    assert result.choice.winner.kind is Kind.mix  # the [model]: the mix (the plain fit is no clearer)


def test_an_infinite_penalty_gives_the_default_scores_ranking_exactly() -> None:
    """The shrunk fit's limit is the default: written as weights, it scores every sample in the
    default's order (up to the rounding of the written weights)."""
    labelled = overfitting_history(seed=1)
    rows = [s.signals for s in labelled.samples]
    space = FeatureSpace.learn(rows)
    config = ScoreConfig()
    model = shrunk_fit(space, rows, labelled.churned, math.inf, config)
    assert all(value <= 0 for value in model.coefficients.values())
    written = adopt(fitted_settings(model, config, [0], len(rows)))
    default_scores = signal_scores_under(labelled.samples, config)
    written_scores = signal_scores_under(labelled.samples, written)
    assert np.corrcoef(default_scores, written_scores)[0, 1] > 0.9999
    strong = shrunk_fit(space, rows, labelled.churned, 1e7, config)
    for name, coefficient in model.coefficients.items():
        assert strong.coefficients[name] == pytest.approx(coefficient, abs=1e-3)


def volume_history(months: int = 9, per_month: int = 300, seed: int = 4) -> Labelled:
    """Churn follows how much an account uses one feature ("reports": ln(1 + events) over 28 days),
    which no signal carries; the signals the default weighs (usage, days to renewal) are noise."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    labels: list[bool] = []
    for m in range(months):
        for i in range(per_month):
            reports, other = int(rng.integers(0, 200)), int(rng.integers(0, 500))
            signals = {"usage_28d": float(rng.uniform(0, 100)), "days_to_renewal": float(rng.uniform(0, 100))}
            logit = 2.0 - 1.2 * np.log1p(reports)
            labels.append(bool(rng.uniform() < 1 / (1 + np.exp(-logit))))
            volumes = {"reports": reports, "search": other} if reports else {"search": other}
            samples.append(
                sample(account_id=f"a{i}", at=m * 31 * DAY, mrr=1, signals=signals, volumes=volumes)
            )
    return Labelled(TUNE_HORIZON, samples, np.array(labels, dtype=bool))


def test_the_plain_regression_is_written_when_it_ranks_clearly_better_and_the_core_reproduces_it() -> None:
    """The plain regression reads the feature volumes; no health fit of the signals can rank churn
    here. It wins out of fold by far more than the noise and becomes the [model]: the score keeps
    the default weights, churn_risk_60d (the core's risk function on the written table) ranks
    held-out churn like the plain fit, and the held-out figure of what --tune chose is that."""
    labelled = volume_history()
    result = tune({TUNE_HORIZON: labelled}, ScoreConfig(), adopt, 1 / 3)
    choice = result.choice
    assert choice.winner.kind is Kind.plain and choice.winner == choice.best(Kind.plain)
    default, health = choice.best(Kind.default), choice.best(Kind.health)
    assert default is not None and health is not None and choice.winner.auc is not None
    assert choice.winner.auc > max(default.auc or 0.5, health.auc or 0.5) + 0.1
    assert result.plain.l2 == choice.winner.l2
    assert result.tuned_weights == ScoreConfig().weights.as_dict()
    config = adopt(result.fitted)
    assert config.model is not None and config.model.feature_volumes["reports"] < -0.5
    held = result.test_labelled[TUNE_HORIZON].samples
    expected = plain_risk(result.plain, held)
    written = [
        churn_probability({n: (0.0, v) for n, v in s.signals.items()}, config.model, s.volumes) for s in held
    ]
    assert np.allclose(written, expected, atol=1e-4)
    chosen, plain_auc = result.chosen[TUNE_HORIZON], result.plain_risk.auc[TUNE_HORIZON]
    default_held = result.default.auc[TUNE_HORIZON]
    assert chosen is not None and plain_auc is not None and default_held is not None
    assert chosen == result.risk.auc[TUNE_HORIZON] == pytest.approx(plain_auc, abs=1e-3)
    assert chosen > default_held + 0.1
    assert any("the plain regression ranked clearly better" in line for line in render_choice(choice))
    # held out, against the default: the lead and its noise, paired over the same accounts
    versus = result.versus["default"]
    assert versus.auc == pytest.approx(chosen - default_held)
    assert versus.standard_error is not None and 0 < versus.standard_error < 0.05 and versus.clear
    assert not result.versus["plain"].clear  # the plain fit is what was written
    lines = [line for line in render_tuning(result) if line.startswith("held out, churn_risk_60d's AUC")]
    assert len(lines) == 1 and "against the default score (SE" in lines[0]
    assert "more than two standard errors" in lines[0] and "noise" in lines[0]


def test_a_held_out_difference_is_clear_only_beyond_two_standard_errors() -> None:
    assert Difference(0.05, 0.02).clear and Difference(-0.05, 0.02).clear
    assert not Difference(0.03, 0.02).clear and not Difference(0.0, 0.0).clear
    assert not Difference(0.2, None).clear  # no standard error: nothing to tell it from noise by


@pytest.mark.parametrize(("margin_in_se", "written"), [(1.5, Kind.mix), (2.5, Kind.plain)])
def test_the_plain_fit_replaces_the_mix_only_when_it_ranks_better_by_more_than_two_standard_errors(
    monkeypatch: pytest.MonkeyPatch, margin_in_se: float, written: Kind
) -> None:
    """The same out-of-fold rankings, with the standard error of their difference set so that the
    plain fit ranks better than the mix by 1.5 and by 2.5 of it: a margin the folds' noise gives
    one portfolio in six or more keeps the mix; only a clear one writes the plain fit."""
    labelled = volume_history()
    choice = tune({TUNE_HORIZON: labelled}, ScoreConfig(), adopt, 1 / 3).choice
    plain, mix = choice.best(Kind.plain), choice.best(Kind.mix)
    assert plain is not None and mix is not None and plain.auc is not None and mix.auc is not None
    margin = plain.auc - mix.auc
    assert margin > 0.01
    monkeypatch.setattr(choice_module, "bootstrap_se", lambda *args, **kwargs: margin / margin_in_se)
    again = tune({TUNE_HORIZON: labelled}, ScoreConfig(), adopt, 1 / 3).choice
    assert again.winner.kind is written and [c.auc for c in again.candidates] == [
        c.auc for c in choice.candidates
    ]


def mixed_history(months: int = 9, per_month: int = 300, seed: int = 5) -> Labelled:
    """Churn follows usage (a signal the default weighs) and the volume of one feature ("reports",
    which no signal carries); nps is missing for a third of the samples."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    labels: list[bool] = []
    for m in range(months):
        for i in range(per_month):
            reports, usage = int(rng.integers(0, 200)), float(rng.uniform(0, 100))
            signals = {"usage_28d": usage, "days_to_renewal": float(rng.uniform(0, 100))}
            if i % 3:
                signals["nps"] = float(rng.uniform(0, 100))
            logit = 1.5 - 0.6 * np.log1p(reports) - 3.0 * usage / 100
            labels.append(bool(rng.uniform() < 1 / (1 + np.exp(-logit))))
            volumes = {"reports": reports, "search": int(rng.integers(0, 500))}
            samples.append(
                sample(account_id=f"a{i}", at=m * 31 * DAY, mrr=1, signals=signals, volumes=volumes)
            )
    return Labelled(TUNE_HORIZON, samples, np.array(labels, dtype=bool))


def test_the_mix_is_one_linear_model_that_the_core_reproduces() -> None:
    """The mix bags the plain fits (each one's log-odds divided by its spread over the training
    samples, averaged), averages the calibrated default's and the bag's log-odds, each divided by
    its spread, and calibrates the average: one model over the plain fits' columns (signals,
    missing terms, feature volumes), which the written [model] carries and the core's risk
    function evaluates to the same probabilities."""
    labelled = mixed_history()
    train = [s for s in labelled.samples if s.at < 6 * 31 * DAY]
    churned = labelled.churned[: len(train)]
    held = labelled.samples[len(train) :]
    rows = [s.signals for s in train]
    space = FeatureSpace.learn(rows)
    calibrated = shrunk_fit(space, rows, churned, math.inf, ScoreConfig())
    plains = [plain_fit(train, churned, l2, 16) for l2 in (1.0, 100.0)]
    mix = mix_fit(plains, train, churned, ScoreConfig())
    assert "nps" in mix.space.indicators and mix.missing["nps"] != 0.0

    def log_odds(p: np.ndarray) -> np.ndarray:
        return np.log(p / (1 - p))

    fitted_d = log_odds(calibrated.probability(rows))
    each = [log_odds(plain_risk(plain, train)) for plain in plains]
    fitted_p = sum(z / z.std() for z in each) / len(each)
    assert not np.allclose(each[0] / each[0].std(), each[1] / each[1].std(), atol=1e-3)  # two fits
    average = 0.5 * fitted_d / fitted_d.std() + 0.5 * fitted_p / fitted_p.std()
    mixed = log_odds(mix_risk(mix, train))
    slope = np.polyfit(average, mixed, 1)[0]
    assert slope > 0 and np.allclose(mixed, np.polyval(np.polyfit(average, mixed, 1), average), atol=1e-6)
    assert mix_risk(mix, train).mean() == pytest.approx(churned.mean(), abs=0.01)  # calibrated
    table = model_table(mix, [0, 31 * DAY], len(train))
    assert table["feature_volumes"]["reports"] < 0
    config = adopt(Fitted(ScoreConfig().weights.as_dict(), {}, table))
    assert config.model is not None
    written = [
        churn_probability({n: (0.0, v) for n, v in s.signals.items()}, config.model, s.volumes) for s in held
    ]
    assert np.allclose(written, mix_risk(mix, held), atol=1e-4)


def test_the_report_notes_a_model_that_ranked_below_the_default_out_of_fold() -> None:
    """The case a README walk found (80 simulated accounts, two training month starts): the plain
    fit written at 0.794 out of fold against the default's 0.878, silently."""
    default, plain = Candidate(Kind.default, None, 0.878), Candidate(Kind.plain, 10.0, 0.794)
    candidates = [default, plain, Candidate(Kind.mix, None, 0.468)]
    noted = [line for line in render_choice(Choice(plain, candidates, [])) if line.startswith("note:")]
    assert noted == [
        "note: out of fold the default score ranked better than the [model] written (0.878 against "
        "0.794): the [model] is chosen among the fits only (docs/backtest.md), and folds have "
        "misjudged both ways; compare the held-out rows below before adopting it"
    ]
    better = Candidate(Kind.mix, None, 0.9)
    assert not [line for line in render_choice(Choice(better, [default, better], [])) if "note:" in line]


def few_churned() -> Labelled:
    """200 accounts a month for 9 months; churn among the same 12 accounts only, which use one
    feature ("reports") far less than the others (no signal carries it)."""
    rng = np.random.default_rng(7)
    samples: list[Sample] = []
    labels: list[bool] = []
    for m in range(9):
        for i in range(200):
            risky = i < 12
            signals = {"recency_days": float(rng.uniform(0, 100)), "nps": float(rng.uniform(0, 100))}
            volumes = {"reports": int(rng.integers(0, 5)) if risky else int(rng.integers(20, 200))}
            labels.append(risky and bool(rng.uniform() < 0.9))
            samples.append(
                sample(account_id=f"a{i}", at=m * 31 * DAY, mrr=1, signals=signals, volumes=volumes)
            )
    return Labelled(TUNE_HORIZON, samples, np.array(labels, dtype=bool))


def test_too_few_churned_accounts_write_the_score_calibrated_however_well_a_fit_ranks_out_of_fold() -> None:
    """Churn at every month start, but always among the same 12 accounts: 100 churn samples and
    12 churned accounts. The plain fit ranks them far better than the default out of fold (it
    learns their feature volume), yet 12 accounts are too few to learn a portfolio from, so
    nothing fitted is written: the default weights, and the score calibrated as the [model],
    which ranks held-out samples exactly as the score does. Counting samples would let it through."""
    labelled = few_churned()
    result = tune({TUNE_HORIZON: labelled}, ScoreConfig(), adopt, 1 / 3)
    choice = result.choice
    assert choice.churned_accounts == 12 and result.train_churned > 20 and choice.too_few_churned
    assert choice.winner.kind is Kind.calibrated and choice.weighting.kind is Kind.default
    plain, default = choice.best(Kind.plain), choice.best(Kind.default)
    assert plain is not None and default is not None and plain.auc is not None and default.auc is not None
    assert plain.auc > default.auc + 0.2  # the fit would have "won"
    config = adopt(result.fitted)
    assert config.model is not None and config.model.score < 0 and not config.model.coefficients
    assert result.tuned_weights == ScoreConfig().weights.as_dict()
    assert result.chosen[TUNE_HORIZON] == result.default.auc[TUNE_HORIZON]  # ranks as the score
    assert result.versus["default"] == Difference(0.0, 0.0)
    lines = render_choice(choice)
    assert any("12 accounts churned in the training samples, fewer than 20" in line for line in lines)
    assert "no training sample had a scheduled cancellation: churn_risk_60d reads the score alone" in (
        render_tuning(result)
    )
    assert not any(line.startswith("note:") for line in lines)
    # with the bar lowered, the same history gets the plain fit it ranked best
    lowered = tune({TUNE_HORIZON: labelled}, ScoreConfig(), adopt, 1 / 3, min_churned_accounts=12)
    assert lowered.choice.winner.kind is Kind.plain


def test_a_score_that_ranks_churn_the_wrong_way_is_calibrated_flat_and_the_report_says_so() -> None:
    """Too few churned accounts, and they are the healthiest by the score: a calibration of the
    score may not read a higher score as more risk, so its coefficient is 0 and churn_risk_60d is
    the base rate; the report says so instead of claiming it ranks as the score."""
    rng = np.random.default_rng(11)
    samples: list[Sample] = []
    labels: list[bool] = []
    for m in range(9):
        for i in range(200):
            risky = i < 10
            high = 95.0 if risky else float(rng.uniform(0, 80))
            signals = {"recency_days": high, "nps": high}
            labels.append(risky and bool(rng.uniform() < 0.9))
            samples.append(sample(account_id=f"a{i}", at=m * 31 * DAY, mrr=1, signals=signals))
    labelled = Labelled(TUNE_HORIZON, samples, np.array(labels, dtype=bool))
    result = tune({TUNE_HORIZON: labelled}, ScoreConfig(), adopt, 1 / 3)
    assert result.choice.too_few_churned and result.fitted.model["score"] == 0.0
    config = adopt(result.fitted)
    assert config.model is not None and config.model.score == 0.0
    assert result.chosen[TUNE_HORIZON] == 0.5  # one probability for everyone
    lines = render_tuning(result)
    assert any(
        line.startswith("note: the score did not rank churn in the training samples") for line in lines
    )
    assert not [
        line
        for line in render_tuning(tune({TUNE_HORIZON: few_churned()}, ScoreConfig(), adopt, 1 / 3))
        if "did not rank churn" in line
    ]


def test_the_score_calibrated_also_reads_a_scheduled_cancellation_where_training_had_some() -> None:
    """Leaving accounts churn far more often than their score says; where the training samples
    hold some, the calibration fits that signal's term too (finite, even when every one of them
    churned), and where none did, it is the score alone."""
    rng = np.random.default_rng(5)
    scores = rng.uniform(40, 100, 400)
    churned = rng.uniform(size=400) < 0.02 + 0.2 * (scores < 60)
    leaving = np.full(400, 100.0)
    leaving[:8] = 0.0
    churned[:8] = True  # all of them churned: separated
    months = [31 * DAY * m for m in range(6)]
    table = calibrated_table(scores, churned, months, leaving)
    term = table["coefficients"]["scheduled_cancellation"]
    assert -50 < term < -2 and table["score"] < 0 and table["means"]["scheduled_cancellation"] == 98.0
    said = table["intercept"] + table["score"] * 0.9  # a score of 90
    assert churn_probability({"scheduled_cancellation": (0.0, 0.0)}, _model(table), score=90.0) > 0.5
    assert churn_probability(
        {"scheduled_cancellation": (100.0, 100.0)}, _model(table), score=90.0
    ) == pytest.approx(1 / (1 + np.exp(-(said + term))), rel=1e-6)
    alone = calibrated_table(scores, churned, months, np.full(400, 100.0))
    assert alone["coefficients"] == {} and alone["means"] == {}
    assert calibrated_table(scores, churned, months) == alone


def _model(table: dict[str, Any]) -> RiskModel:
    return RiskModel.model_validate(table)
