"""Signal-level learning: the L2 logistic regression, time-ordered folds, calibration, the time split."""

from __future__ import annotations

import itertools
import tomllib

import numpy as np
import pytest

from streamer.backtest import choice
from streamer.backtest.analysis import TUNE_HORIZON, Fitted, Labelled, TuneResult, tune
from streamer.backtest.configfile import tuned_config_text
from streamer.backtest.learn import (
    FeatureSpace,
    brier,
    calibration_table,
    choose_l2,
    fit_l2_logistic,
    fit_signal_model,
    time_folds,
)
from streamer.backtest.sampling import Sample
from streamer.backtest.tuning import score_from_signals
from streamer.core.clock import DAY
from streamer.core.config import ScoreConfig
from streamer.core.risk import churn_probability

from .synthetic import churn_draws, sample


def test_recovers_known_coefficients_on_synthetic_data() -> None:
    rng = np.random.default_rng(11)
    x = rng.uniform(0, 1, (20_000, 3))
    logit = -0.5 - 3.0 * x[:, 0] + 1.5 * x[:, 1]  # column 2 carries nothing
    y = churn_draws(rng, logit)
    intercept, beta = fit_l2_logistic(x, y, l2=0.01)
    assert intercept == pytest.approx(-0.5, abs=0.15)
    assert beta[0] == pytest.approx(-3.0, abs=0.2)
    assert beta[1] == pytest.approx(1.5, abs=0.2)
    assert abs(beta[2]) < 0.2


def test_a_bounded_column_that_raises_churn_is_held_at_zero_and_the_rest_refitted() -> None:
    rng = np.random.default_rng(12)
    x = rng.uniform(0, 1, (20_000, 3))
    logit = -0.5 - 3.0 * x[:, 0] + 1.5 * x[:, 1]
    y = churn_draws(rng, logit)
    _, free = fit_l2_logistic(x, y, l2=0.01)
    _, bounded = fit_l2_logistic(x, y, l2=0.01, non_positive=[0, 1, 2])
    assert bounded[1] == 0.0 and free[1] > 1.0
    assert (bounded <= 0).all()
    assert bounded[0] == pytest.approx(-3.0, abs=0.3)


def test_a_stronger_penalty_shrinks_the_coefficients() -> None:
    rng = np.random.default_rng(13)
    x = rng.uniform(0, 1, (500, 2))
    y = churn_draws(rng, 1 - 4 * x[:, 0])
    weak = fit_l2_logistic(x, y, l2=0.01)[1]
    strong = fit_l2_logistic(x, y, l2=300.0)[1]
    assert abs(strong[0]) < abs(weak[0]) / 2


def test_calibration_table_and_brier_score() -> None:
    p = np.array([0.1, 0.1, 0.2, 0.2, 0.8, 0.8, 0.9, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1], dtype=bool)
    bins = calibration_table(p, y, bins=4)
    assert [(b.samples, round(b.predicted, 3), b.observed) for b in bins] == [
        (2, 0.1, 0.0),
        (2, 0.2, 0.5),
        (2, 0.8, 1.0),
        (2, 0.9, 1.0),
    ]
    assert brier(p, y) == pytest.approx((0.01 * 2 + 0.04 + 0.64 + 0.04 * 2 + 0.01 * 2) / 8)


def test_missing_signals_take_the_training_mean_and_a_missing_column() -> None:
    rows = [{"a": 80.0, "b": 20.0}, {"a": 40.0}, {"a": 60.0, "b": 40.0}]
    space = FeatureSpace.learn(rows)
    assert space.signals == ("a", "b") and space.indicators == ("b",)
    assert space.means == {"a": 60.0, "b": 30.0}
    assert space.matrix([{"a": 100.0}]).tolist() == [[1.0, 0.3, 1.0]]


def test_a_signal_of_one_value_wherever_present_is_marked_constant() -> None:
    """Nothing can be learned from it (a month-to-month portfolio's renewal always within the
    month): the report says its tuned weight is the default's, not a finding."""
    rows = [{"a": 80.0, "b": 0.0, "c": 5.0}, {"a": 40.0, "b": 0.0}, {"a": 60.0, "b": 0.0, "c": 5.0}]
    space = FeatureSpace.learn(rows)
    assert space.constant == frozenset({"b", "c"})


def test_folds_never_fit_on_a_label_that_reaches_their_validation_month() -> None:
    months = [m * 31 * DAY for m in range(8)]
    folds = time_folds(months, 60)
    assert [f.validate for f in folds] == months[-3:]
    for fold in folds:
        assert fold.fit_months and all(m + 60 * DAY <= fold.validate for m in fold.fit_months)
    assert folds[-1].fit_months == months[:6]  # month 6 is 31 days before month 7


def synthetic(
    months: int = 9, per_month: int = 300, seed: int = 5, poison_from: int | None = None
) -> Labelled:
    """Samples whose churn follows `recency_days` (health) and, from `poison_from` on, the opposite."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    labels: list[bool] = []
    for m in range(months):
        at = m * 31 * DAY
        for i in range(per_month):
            recency, nps = float(rng.uniform(0, 100)), float(rng.uniform(0, 100))
            signals = {"recency_days": recency, "payment_failures": 100.0}
            if i % 4:
                signals["nps"] = nps
            logit = 1.0 - 5.0 * recency / 100
            if poison_from is not None and m >= poison_from:
                logit = -4.0 + 5.0 * recency / 100  # the later months churn the other way round
            labels.append(bool(rng.uniform() < 1 / (1 + np.exp(-logit))))
            samples.append(sample(account_id=f"a{i}", at=at, score=50.0, mrr=1, signals=signals))
    return Labelled(TUNE_HORIZON, samples, np.array(labels, dtype=bool))


def adopt_with(base: dict[str, object]) -> object:
    def adopt(fitted: Fitted) -> ScoreConfig:
        text = tuned_config_text(base, fitted.weights, [], fitted.signal_weights, fitted.model)
        return ScoreConfig.model_validate(tomllib.loads(text))

    return adopt


def test_tune_trains_only_on_labels_that_end_before_the_held_out_range() -> None:
    """Months 5-8 churn the opposite way; month 5 is training by position but its label window
    reaches month 6, the first held-out month start. Were it used, it would drag the fitted
    recency coefficient towards 0: the guard keeps it out."""
    labelled = synthetic(poison_from=5)
    result = tune({60: labelled}, ScoreConfig(), adopt_with({}), 1 / 3)  # type: ignore[arg-type]
    months = sorted({s.at for s in labelled.samples})
    assert result.train_months == months[:5]
    assert result.test_months == months[6:]
    assert result.train_samples == 5 * 300
    assert all(m + TUNE_HORIZON * DAY <= result.test_months[0] for m in result.train_months)
    for fold in result.choice.folds:
        assert all(m + TUNE_HORIZON * DAY <= fold.validate for m in fold.fit_months)
    assert result.health.coefficients["recency_days"] < -3.0


def weekly(labelled: Labelled, seed: int, poison_from: int | None = None) -> Labelled:
    """Grid samples every 7 days between the month starts of `labelled` (drawn like `synthetic`)."""
    rng = np.random.default_rng(seed)
    months = sorted({s.at for s in labelled.samples})
    samples: list[Sample] = []
    labels: list[bool] = []
    at = months[0] + 7 * DAY
    while at < months[-1]:
        if at not in months:
            late = poison_from is not None and at >= months[poison_from]
            for i in range(100):
                recency = float(rng.uniform(0, 100))
                logit = -4.0 + 5.0 * recency / 100 if late else 1.0 - 5.0 * recency / 100
                labels.append(bool(rng.uniform() < 1 / (1 + np.exp(-logit))))
                signals = {"recency_days": recency, "payment_failures": 100.0}
                samples.append(sample(account_id=f"a{i}", at=at, mrr=1, signals=signals, volumes={"x": i}))
        at += 7 * DAY
    return Labelled(TUNE_HORIZON, samples, np.array(labels, dtype=bool))


def watch_inner_fits(
    monkeypatch: pytest.MonkeyPatch, instant_of_row: dict[int, int]
) -> list[tuple[str, list[int]]]:
    """Record, in call order, the instants every inner fit (each candidate) reads and scores."""
    seen: list[tuple[str, list[int]]] = []
    shrunk, plain, mix = choice.shrunk_fit, choice.plain_fit, choice.mix_fit
    score, risk, mixed = choice.signal_scores_under, choice.plain_risk, choice.mix_risk

    def shrunk_fit(space: object, rows: list[dict[str, float]], *rest: object) -> object:
        seen.append(("fit", sorted({instant_of_row[id(row)] for row in rows})))
        return shrunk(space, rows, *rest)  # type: ignore[arg-type]

    def plain_fit(samples: list[Sample], *rest: object) -> object:
        seen.append(("fit", sorted({s.at for s in samples})))
        return plain(samples, *rest)  # type: ignore[arg-type]

    def mix_fit(models: object, samples: list[Sample], *rest: object) -> object:
        seen.append(("fit", sorted({s.at for s in samples})))
        return mix(models, samples, *rest)  # type: ignore[arg-type]

    def mix_scoring(model: object, samples: list[Sample]) -> object:
        seen.append(("validate", sorted({s.at for s in samples})))
        return mixed(model, samples)  # type: ignore[arg-type]

    def scoring(samples: list[Sample], config: ScoreConfig) -> object:
        seen.append(("validate", sorted({s.at for s in samples})))
        return score(samples, config)

    def plain_scoring(model: object, samples: list[Sample]) -> object:
        seen.append(("validate", sorted({s.at for s in samples})))
        return risk(model, samples)  # type: ignore[arg-type]

    monkeypatch.setattr(choice, "shrunk_fit", shrunk_fit)
    monkeypatch.setattr(choice, "plain_fit", plain_fit)
    monkeypatch.setattr(choice, "signal_scores_under", scoring)
    monkeypatch.setattr(choice, "plain_risk", plain_scoring)
    monkeypatch.setattr(choice, "mix_fit", mix_fit)
    monkeypatch.setattr(choice, "mix_risk", mix_scoring)
    return seen


def check_inner_fits(seen: list[tuple[str, list[int]]], result: TuneResult) -> int:
    """Every inner fit reads labels that end by the instant it is then scored on, and that instant's
    own label ends by the first held-out month start. Returns the fits checked."""
    horizon = result.choice.horizon_days * DAY
    first_test = result.test_months[0]
    fits = 0
    for (kind, fit_at), (next_kind, validated) in itertools.pairwise(seen):
        if next_kind != "validate":
            continue
        assert len(validated) == 1 and validated[0] + horizon <= first_test
        if kind == "fit":
            fits += 1
            assert fit_at and all(m + horizon <= validated[0] for m in fit_at)
    return fits


def test_the_inner_choice_fits_only_on_labels_that_end_before_the_month_it_validates_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What every inner fit of the model choice reads, watched from the inside, for every candidate
    (the default's calibration, each shrunk fit, each plain fit with feature volumes, each fold's mix
    of the calibrated default and the plain fits at every penalty) on the weekly
    grid's rolling-origin folds: each fit reads samples whose 60-day label window ends by the
    instant it is then scored on, and that instant's own label ends by the first held-out month."""
    labelled = synthetic(poison_from=5)
    grid = weekly(labelled, 8, poison_from=5)
    instant_of_row = {id(s.signals): s.at for s in [*labelled.samples, *grid.samples]}
    seen = watch_inner_fits(monkeypatch, instant_of_row)
    result = tune(
        {60: labelled},
        ScoreConfig(),
        adopt_with({}),
        1 / 3,
        {60: grid},  # type: ignore[arg-type]
    )
    assert result.choice.horizon_days == 60 and len(result.choice.folds) == 3
    validated = [fold.validate for fold in result.choice.folds]
    assert any(at not in result.train_months for at in validated)  # grid instants validate too
    candidates = len(choice.SHRINK_GRID) + len(choice.L2_GRID) + 1  # a plain fit per penalty, one mix
    assert check_inner_fits(seen, result) == 3 * candidates


def test_with_two_training_month_starts_the_inner_folds_use_30_day_labels_that_never_cross(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two training month starts 31 days apart leave no 60-day inner split (a fit's label would reach
    its validation instant); the weekly grid with 30-day labels does: every fit's 30-day label ends
    by its validation instant, whose 30-day label ends by the first held-out month start."""
    labelled = synthetic(months=5)
    grid = weekly(labelled, 9)
    short = {
        days: Labelled(days, found.samples, found.churned) for days, found in ((30, labelled), (60, labelled))
    }
    short_grid = {days: Labelled(days, grid.samples, grid.churned) for days in (30, 60)}
    instant_of_row = {id(s.signals): s.at for s in [*labelled.samples, *grid.samples]}
    seen = watch_inner_fits(monkeypatch, instant_of_row)
    result = tune(short, ScoreConfig(), adopt_with({}), 1 / 3, short_grid)  # type: ignore[arg-type]
    assert len(result.train_months) == 2
    assert result.choice.horizon_days == 30 and result.choice.folds
    assert check_inner_fits(seen, result) > 0
    for fold in result.choice.folds:
        assert all(m + 30 * DAY <= fold.validate for m in fold.fit_months)
        assert fold.validate + 30 * DAY <= result.test_months[0]


def test_the_written_config_gives_the_tuned_scores_and_the_model_probabilities() -> None:
    labelled = synthetic(seed=6)
    result = tune({60: labelled}, ScoreConfig(), adopt_with({}), 1 / 3)  # type: ignore[arg-type]
    config = ScoreConfig.model_validate(
        tomllib.loads(
            tuned_config_text(
                {}, result.tuned_weights, ["x"], result.fitted.signal_weights, result.fitted.model
            )
        )
    )
    assert config.model is not None
    test = result.test_labelled[60]
    written = [
        churn_probability({n: (0.0, v) for n, v in s.signals.items()}, config.model, s.volumes)
        for s in test.samples
    ]
    kind = result.choice.winner.kind
    fitted = (result.mix_risk if kind is choice.Kind.mix else result.plain_risk).predicted[60]
    assert np.allclose(written, fitted, atol=1e-4)  # the [model] table is the written candidate, rounded
    rescored = [score_from_signals(s.signals, s.stage, s.plan, config) for s in test.samples]
    assert rescored == result.test_scores["tuned"][60].tolist()
    # recency carries the churn; payment_failures never varies: its weight is (near) 0
    assert config.signal_weights.recency_days > 1.0
    assert result.risk.auc[60] is not None and result.risk.auc[60] > 0.75
    assert result.tuned.auc[60] == pytest.approx(result.risk.auc[60], abs=0.02)


def test_cross_validation_picks_a_weak_penalty_for_a_strong_signal_and_ties_go_to_the_strongest() -> None:
    rng = np.random.default_rng(7)
    rows = [{"a": float(rng.uniform(0, 100)), "b": float(rng.uniform(0, 100))} for _ in range(1200)]
    logit = np.array([2.0 - 8.0 * row["a"] / 100 for row in rows])
    churned = churn_draws(rng, logit)
    months = [(i // 200) * 31 * DAY for i in range(1200)]
    selection = choose_l2(rows, churned, months, 60, health=False)
    assert selection.l2 <= 1.0
    assert len(selection.folds) == 3 and all(loss is not None for loss in selection.losses.values())
    # constant features: every penalty predicts the same, the strongest wins the tie
    flat = choose_l2([{"a": 50.0}] * 1200, churned, months, 60, health=False)
    assert flat.l2 == max(flat.losses)


def test_columns_are_standardised_so_a_narrow_signal_is_not_shrunk_away() -> None:
    """A signal whose sub-scores span 2 points (0.02 as a fraction) but carries the churn keeps
    its ranking power under a moderate penalty: the penalty applies to standardised columns."""
    rng = np.random.default_rng(21)
    narrow = rng.uniform(49, 51, 3000)
    churned = rng.uniform(size=3000) < 1 / (1 + np.exp(-(-2.0 - 2.0 * (narrow - 50))))
    rows = [{"a": float(v)} for v in narrow]
    space = FeatureSpace.learn(rows)
    model = fit_signal_model(space, rows, churned, l2=10.0, health=True)
    # ~ -2 per sub-score point = -200 per unit of sub-score/100; unstandardised, l2=10 gives ~ -1
    assert model.coefficients["a"] < -100.0


def test_the_penalty_is_chosen_by_pooled_validation_auc_on_few_churners() -> None:
    """Few churners per month (as on small portfolios): the choice follows the pooled
    validation AUC, and the chosen fit is not flat."""
    rng = np.random.default_rng(8)
    rows, labels, months = [], [], []
    for m in range(7):
        for _ in range(150):
            a, b, c = (float(rng.uniform(0, 100)) for _ in range(3))
            rows.append({"a": a, "b": b, "c": c})
            labels.append(bool(rng.uniform() < 1 / (1 + np.exp(-(-2.0 - 4.0 * a / 100)))))
            months.append(m * 31 * DAY)
    churned = np.array(labels, dtype=bool)
    selection = choose_l2(rows, churned, months, 60, health=True)
    best_auc = max(v for v in selection.aucs.values() if v is not None)
    assert selection.aucs[selection.l2] is not None
    assert round(selection.aucs[selection.l2] or 0, 4) == round(best_auc, 4)
    assert selection.l2 < max(selection.aucs)
    space = FeatureSpace.learn(rows)
    model = fit_signal_model(space, rows, churned, selection.l2, health=True)
    p = model.probability(rows)
    assert float(p.max() / p.min()) > 3.0  # ranks, not the base rate everywhere


def test_the_fit_reaches_the_optimum_when_a_rare_value_is_nearly_all_churners() -> None:
    """As on simulate seed 5: 3% of samples have a cancellation scheduled (sub-score 0), most of
    them churn. Full Newton steps overshot: the gradient stayed far from 0 and the coefficient
    came out positive (more health, more churn) and huge."""
    rng = np.random.default_rng(0)
    scheduled = (rng.uniform(size=1000) < 0.03).astype(np.float64)
    x = np.column_stack([1 - scheduled, rng.uniform(size=(1000, 3))])
    y = churn_draws(rng, -3.0 + 4.5 * scheduled)
    for l2 in (0.001, 1.0, 30.0):
        intercept, beta = fit_l2_logistic(x, y, l2, standardise=True)
        assert beta[0] < -1.0  # no cancellation scheduled: less churn
        scaled = x / x.std(axis=0)
        design = np.hstack((np.ones((len(x), 1)), scaled))
        coefficients = np.concatenate(([intercept], beta * x.std(axis=0)))
        p = 1 / (1 + np.exp(-(design @ coefficients)))
        gradient = design.T @ (p - y) + l2 * np.concatenate(([0.0], coefficients[1:]))
        assert np.abs(gradient).max() < 1e-6
