"""From a replay to the figures: AUC per month start and pooled, churn by band, alerts, tuning."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamer.backtest.choice import (
    MIN_CHURNED_ACCOUNTS,
    TOP_FEATURES,
    VOLUME_PREFIX,
    Choice,
    Kind,
    bootstrap_se,
    choose,
    mix_fit,
    mix_risk,
    plain_fit,
    plain_risk,
    shrunk_fit,
)
from streamer.backtest.labels import churns_within
from streamer.backtest.learn import (
    L2_GRID,
    CalibrationBin,
    FeatureSpace,
    Selection,
    SignalModel,
    brier,
    calibration_table,
    fit_l2_logistic,
    log_loss,
)
from streamer.backtest.metrics import BandRate, RuleStats, alert_stats, band_ratio, churn_by_band, roc_auc
from streamer.backtest.sampling import Replay, Sample
from streamer.backtest.tuning import normalised, signal_scores_under, split_months
from streamer.core.clock import DAY
from streamer.core.config import COMPONENTS, ScoreConfig
from streamer.core.risk import churn_probability
from streamer.core.score import SIGNAL_COMPONENT

HORIZONS = (30, 60)  # days: "churns within 30 / 60 days of the month start"
TUNE_HORIZON = 60
MIN_SIGNAL_WEIGHT = 0.001  # a tuned signal weight, against weights of about 0.1 to 10
ALERT_HORIZON = 60


@dataclass(frozen=True)
class Labelled:
    """Samples of one horizon whose label window fits the data, with their churn labels."""

    days: int
    samples: list[Sample]
    churned: NDArray[np.bool_]

    @property
    def scores(self) -> NDArray[np.float64]:
        return np.array([s.score for s in self.samples], dtype=np.float64)

    def where(self, keep: NDArray[np.bool_]) -> Labelled:
        return Labelled(
            self.days, [s for s, k in zip(self.samples, keep, strict=True) if k], self.churned[keep]
        )


def label(replay: Replay, days: int, samples: Sequence[Sample] | None = None) -> Labelled:
    """Samples at month starts (or `samples`, e.g. the weekly grid's) with `days` of data after
    them, of accounts paying then."""
    horizon = days * DAY
    kept: list[Sample] = []
    labels: list[bool] = []
    for sample in replay.samples if samples is None else samples:
        if sample.at + horizon > replay.data_end:
            continue
        churned = churns_within(replay.timelines.get(sample.account_id, []), sample.at, horizon)
        if churned is not None:
            kept.append(sample)
            labels.append(churned)
    return Labelled(days, kept, np.array(labels, dtype=bool))


@dataclass(frozen=True)
class MonthAuc:
    at: int
    samples: int
    churned: int
    auc: float | None


@dataclass(frozen=True)
class ComponentSignal:
    """How well one component alone ranks churners, over the samples where it has data."""

    name: str
    coverage: float  # share of samples with data for it
    auc: float | None


@dataclass(frozen=True)
class HorizonResult:
    labelled: Labelled
    pooled_auc: float | None
    months: list[MonthAuc]
    bands: dict[str, BandRate]
    red_green: float | None
    components: list[ComponentSignal]


def component_signals(labelled: Labelled) -> list[ComponentSignal]:
    signals: list[ComponentSignal] = []
    for index, name in enumerate(COMPONENTS):
        values = [s.components[index] for s in labelled.samples]
        present = np.array([value is not None for value in values], dtype=bool)
        scores = np.array([value for value in values if value is not None], dtype=np.float64)
        coverage = float(present.mean()) if len(values) else 0.0
        signals.append(ComponentSignal(name, coverage, roc_auc(-scores, labelled.churned[present])))
    return signals


def horizon_result(labelled: Labelled) -> HorizonResult:
    scores = labelled.scores
    ats = np.array([s.at for s in labelled.samples], dtype=np.int64)
    months = [
        MonthAuc(
            int(at),
            int((ats == at).sum()),
            int(labelled.churned[ats == at].sum()),
            roc_auc(-scores[ats == at], labelled.churned[ats == at]),
        )
        for at in sorted(set(ats.tolist()))
    ]
    bands = churn_by_band([s.band for s in labelled.samples], labelled.churned.tolist())
    return HorizonResult(
        labelled,
        roc_auc(-scores, labelled.churned),
        months,
        bands,
        band_ratio(bands),
        component_signals(labelled),
    )


@dataclass(frozen=True)
class HeldOut:
    """One weighting's figures on the held-out month starts."""

    auc: dict[int, float | None]  # horizon days -> AUC
    bands: dict[str, BandRate]  # at TUNE_HORIZON
    red_green: float | None


@dataclass(frozen=True)
class Fitted:
    """What a tuning writes into the configuration."""

    weights: dict[str, float]  # component weights, summing to 1
    signal_weights: dict[str, float]  # every signal's weight inside its component
    model: dict[str, Any]  # the [model] table


@dataclass(frozen=True)
class Probabilities:
    """A model's predicted churn probabilities on the held-out month starts."""

    auc: dict[int, float | None]  # horizon days -> AUC
    brier: float
    log_loss: float
    calibration: list[CalibrationBin]  # deciles at TUNE_HORIZON
    predicted: dict[int, NDArray[np.float64]]


CLEAR_STANDARD_ERRORS = 2.0
"""A held-out difference beyond this many standard errors is one the held-out months tell from noise."""


@dataclass(frozen=True)
class Difference:
    """One held-out AUC minus another on the same samples, and the standard error of that difference."""

    auc: float
    standard_error: float | None

    @property
    def clear(self) -> bool:
        """Whether the difference is beyond `CLEAR_STANDARD_ERRORS` standard errors."""
        return self.standard_error is not None and abs(self.auc) > CLEAR_STANDARD_ERRORS * self.standard_error


@dataclass(frozen=True)
class TuneResult:
    train_months: list[int]
    test_months: list[int]
    train_samples: int
    train_churned: int
    health: SignalModel  # coefficients <= 0: the written weights when it won them
    plain: SignalModel  # unconstrained, the yardstick
    plain_selection: Selection
    choice: Choice  # default vs health fits vs plain, out of fold: what was written and why
    default_weights: dict[str, float]
    tuned_weights: dict[str, float]
    default_signal_weights: dict[str, float]
    fitted: Fitted
    default: HeldOut
    tuned: HeldOut
    risk: Probabilities  # the written [model] through the core's risk function
    plain_risk: Probabilities
    mix_risk: Probabilities  # the mix of the calibrated default and the plain fit, whatever was chosen
    test_labelled: dict[int, Labelled]
    test_scores: dict[str, dict[int, NDArray[np.float64]]]  # "default"/"tuned" -> horizon -> scores
    chosen: dict[int, float | None] = field(default_factory=dict)  # held-out AUC of what --tune wrote
    """The ranking the written configuration publishes: churn_risk_60d (the score calibrated, the mix
    or the plain fit)."""
    versus: dict[str, Difference] = field(default_factory=dict)
    """churn_risk_60d's held-out AUC at TUNE_HORIZON minus the default score's ("default") and the plain
    LR's ("plain"), with the standard error of each difference (a paired bootstrap over accounts)."""


def _versus(
    labelled: Labelled, chosen: NDArray[np.float64], others: Mapping[str, NDArray[np.float64]]
) -> dict[str, Difference]:
    """`chosen`'s AUC minus each other risk's on `labelled`, with a paired bootstrap's standard error
    (whole accounts drawn, both AUCs on each draw)."""
    accounts = [s.account_id for s in labelled.samples]
    base = roc_auc(chosen, labelled.churned)
    found = {}
    for name, other in others.items():
        against = roc_auc(other, labelled.churned)
        if base is not None and against is not None:
            found[name] = Difference(base - against, bootstrap_se(chosen, labelled.churned, accounts, other))
    return found


class NotEnoughHistory(ValueError):
    """Too few month starts or churners to fit and hold out."""


def _held_out(
    test: Mapping[int, Labelled], config: ScoreConfig
) -> tuple[HeldOut, dict[int, NDArray[np.float64]]]:
    scores = {days: signal_scores_under(labelled.samples, config) for days, labelled in test.items()}
    auc = {days: roc_auc(-scores[days], labelled.churned) for days, labelled in test.items()}
    main = test[TUNE_HORIZON]
    bands_of = [
        config.segment(s.stage, s.plan)[1].rule.band(
            float(score), s.signals.get("usage_28d"), committed(s), standing=dict(s.signals)
        )
        for s, score in zip(main.samples, scores[TUNE_HORIZON], strict=True)
    ]
    rates = churn_by_band(bands_of, main.churned.tolist())
    return HeldOut(auc, rates, band_ratio(rates)), scores


def committed(sample: Sample) -> bool:
    """Whether the account's term ran beyond the renewal window at the sample, as the core's band
    read it (`streamer.core.score.committed`): it had a renewal date (`days_to_renewal` present
    and above 0: a term that has ended without a renewal counts as 0) and was not in the renewal
    stage, which holds exactly when that date is within the window."""
    days = sample.signals.get("days_to_renewal")
    return days is not None and days > 0 and sample.stage not in ("renewal", "churned")


def _probabilities(
    test: Mapping[int, Labelled], predict: Callable[[int, list[Sample]], NDArray[np.float64]]
) -> Probabilities:
    """A model's figures on the held-out samples; `predict(days, samples)` gives its probabilities
    for the samples labelled at that horizon."""
    predicted = {days: predict(days, labelled.samples) for days, labelled in test.items()}
    main, p = test[TUNE_HORIZON], predicted[TUNE_HORIZON]
    return Probabilities(
        auc={days: roc_auc(predicted[days], labelled.churned) for days, labelled in test.items()},
        brier=brier(p, main.churned),
        log_loss=log_loss(p, main.churned),
        calibration=calibration_table(p, main.churned),
        predicted=predicted,
    )


def _date(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%d")


def model_table(model: SignalModel, train_months: Sequence[int], samples: int) -> dict[str, Any]:
    """A fit as the `[model]` table: signal coefficients with their means and missing terms, and
    the feature volumes' coefficients (a plain fit's `VOLUME_PREFIX` columns) as `feature_volumes`."""
    first, last = _date(train_months[0]), _date(train_months[-1])
    signals = {name: c for name, c in model.coefficients.items() if not name.startswith(VOLUME_PREFIX)}
    volumes = {
        name.removeprefix(VOLUME_PREFIX): c
        for name, c in model.coefficients.items()
        if name.startswith(VOLUME_PREFIX)
    }
    table: dict[str, Any] = {
        "version": f"tune {first}..{last} n={samples} l2={model.l2:g}",
        "horizon_days": TUNE_HORIZON,
        "intercept": round(model.intercept, 6),
        "trained_from": first,
        "trained_to": last,
        "coefficients": {name: round(value, 6) for name, value in signals.items()},
        "means": {name: round(model.space.means[name], 4) for name in signals},
    }
    if model.missing:
        table["missing"] = {name: round(value, 6) for name, value in model.missing.items()}
    if volumes:
        table["feature_volumes"] = {name: round(value, 6) for name, value in volumes.items()}
    return table


LEAVING = "scheduled_cancellation"  # the signal whose sub-score is 0 while a cancellation is scheduled


def calibrated_table(
    scores: NDArray[np.float64],
    churned: NDArray[np.bool_],
    train_months: Sequence[int],
    leaving: NDArray[np.float64] | None = None,
) -> dict[str, Any]:
    """The score calibrated as the `[model]`: log-odds = intercept + score coefficient x score / 100,
    fitted on the training samples' scores (the coefficient kept <= 0: a higher score never reads
    as more risk, so churn_risk_60d ranks as the score does; 0 when the training scores did not
    rank churn at all: churn_risk_60d is then the training base rate, which the report says).

    `leaving` is each sample's `scheduled_cancellation` sub-score (0 while a cancellation is
    scheduled, 100 otherwise). Where the training samples hold both, the calibration also fits
    its coefficient (kept <= 0): an account that has said it is leaving churns far more often
    than its score says (the score moves a few points for it), and a risk of a few per cent on
    it, at the bottom of an at-risk list ordered by churn_risk_60d, would read as nonsense."""
    if leaving is not None and not ((leaving < 50.0).any() and (leaving >= 50.0).any()):
        leaving = None  # all leaving or none: nothing to tell apart
    columns = [scores / 100.0] + ([leaving / 100.0] if leaving is not None else [])
    x = np.column_stack(columns)
    intercept, slopes = fit_l2_logistic(x, churned, 1e-6, non_positive=list(range(len(columns))))
    first, last = _date(train_months[0]), _date(train_months[-1])
    table: dict[str, Any] = {
        "version": f"tune {first}..{last} n={len(scores)}",  # `tune` appends the kind
        "horizon_days": TUNE_HORIZON,
        "intercept": round(intercept, 6),
        "trained_from": first,
        "trained_to": last,
        "coefficients": {},
        "means": {},
        "score": round(float(slopes[0]), 6),
    }
    if leaving is not None:
        table["coefficients"] = {LEAVING: round(float(slopes[1]), 6)}
        table["means"] = {LEAVING: round(float(leaving.mean()), 4)}
    return table


def leaving_scores(samples: Sequence[Sample]) -> NDArray[np.float64]:
    """Each sample's `scheduled_cancellation` sub-score (100, none scheduled, where it has none)."""
    return np.array([s.signals.get(LEAVING, 100.0) for s in samples], dtype=np.float64)


def fitted_settings(
    model: SignalModel, config: ScoreConfig, train_months: Sequence[int], samples: int
) -> Fitted:
    """The health model as configuration: signal weights = -coefficients, component weights =
    their sums per component (so that, with every signal present, the score is linear in the
    sub-scores with the model's proportions), and the model itself as `[model]`."""
    signal_weights = {name: weight for name, (_, weight) in config.signal_table.items()}
    for name, coefficient in model.coefficients.items():
        # a floor keeps a signal the fit dropped visible (its component still shows its
        # sub-score, with weight ~0) instead of turning its component into "missing"
        signal_weights[name] = max(MIN_SIGNAL_WEIGHT, round(-coefficient, 4))
    totals = dict.fromkeys(COMPONENTS, 0.0)
    for name, coefficient in model.coefficients.items():
        totals[SIGNAL_COMPONENT[name]] += max(0.0, -coefficient)
    total = sum(totals.values())
    weights = normalised(np.array([totals[c] for c in COMPONENTS])) if total > 0 else config.weights.as_dict()
    return Fitted(weights, signal_weights, model_table(model, train_months, samples))


def tune(
    by_horizon: Mapping[int, Labelled],
    config: ScoreConfig,
    tuned_config: Callable[[Fitted], ScoreConfig],
    holdout: float,
    grid: Mapping[int, Labelled] | None = None,
    top_k: int = TOP_FEATURES,
    min_churned_accounts: int = MIN_CHURNED_ACCOUNTS,
) -> TuneResult:
    """Fit signal-level models on the earlier month starts, compare on the later ones.

    A training sample at instant t (a month start, or an instant of the weekly `grid` when
    given, labelled per horizon like `by_horizon`) is used only if t + its label horizon <= the
    first held-out month start (its label never reads the held-out period); the model is chosen
    by rolling-origin folds inside the training instants under the same rule (see
    `streamer.backtest.choice`). `tuned_config(fitted)` builds the configuration the fit would be
    written as; `top_k` bounds the feature volumes the plain regression reads; with fewer than
    `min_churned_accounts` churned accounts in the training samples the [model] is the score
    calibrated and the weights the default's.
    """
    main = by_horizon[TUNE_HORIZON]
    months = sorted({s.at for s in main.samples})
    if len(months) < 3:
        raise NotEnoughHistory(
            f"--tune needs at least 3 month starts with {TUNE_HORIZON} days of data after them, "
            f"found {len(months)}: use a longer history or fewer --warmup-days"
        )
    train_months, test_months = split_months(months, holdout, TUNE_HORIZON * DAY)
    first_test = test_months[0]

    def training(days: int) -> Labelled:
        """Month-start and grid samples whose `days`-day label window ends by the first held-out one."""
        found = [by_horizon[days]] + ([grid[days]] if grid is not None and days in grid else [])
        samples = [s for labelled in found for s in labelled.samples]
        churned = np.concatenate([labelled.churned for labelled in found])
        keep = np.array([s.at + days * DAY <= first_test for s in samples], dtype=bool)
        return Labelled(days, samples, churned).where(keep)

    train = training(TUNE_HORIZON)
    if not train_months or train.churned.sum() < 2 or (~train.churned).sum() < 2:
        raise NotEnoughHistory(
            f"--tune needs churners and non-churners in the training months, found "
            f"{int(train.churned.sum())} churned of {len(train.samples)} samples"
        )
    rows = [s.signals for s in train.samples]
    space = FeatureSpace.learn(rows)

    def as_config(model: SignalModel, fit_months: Sequence[int], samples: int) -> ScoreConfig:
        return tuned_config(fitted_settings(model, config, fit_months, samples))

    inner = {
        days: (labelled.samples, labelled.churned)
        for days in sorted(by_horizon)
        if days <= TUNE_HORIZON and (labelled := training(days)).samples
    }
    choice = choose(inner, config, as_config, top_k=top_k, min_churned_accounts=min_churned_accounts)
    best_plain = choice.best(Kind.plain)
    plain_l2 = best_plain.l2 if best_plain is not None and best_plain.l2 is not None else max(L2_GRID)
    plain_selection = Selection(
        plain_l2, {}, choice.folds, {c.l2: c.auc for c in choice.candidates if c.kind is Kind.plain and c.l2}
    )
    health_l2 = choice.weighting.l2 if choice.weighting.kind is Kind.health else math.inf
    health_model = shrunk_fit(space, rows, train.churned, health_l2 or math.inf, config)
    plains = [plain_fit(train.samples, train.churned, l2, top_k) for l2 in L2_GRID]
    plain_model = (
        plains[L2_GRID.index(plain_l2)]
        if plain_l2 in L2_GRID
        else plain_fit(train.samples, train.churned, plain_l2, top_k)
    )
    mix_model = mix_fit(plains, train.samples, train.churned, config)
    health = fitted_settings(health_model, config, train_months, len(train.samples))
    # the [model] is the score calibrated, the mix or the plain fit; the weights the default's or
    # the health fit's
    model = mix_model if choice.winner.kind is Kind.mix else plain_model
    table = model_table(model, train_months, len(train.samples))
    if choice.winner.kind is Kind.calibrated:
        scores = signal_scores_under(train.samples, config)
        table = calibrated_table(scores, train.churned, train_months, leaving_scores(train.samples))
    elif choice.winner.kind is Kind.mix:  # the mix bags the plain fits at every penalty of the grid
        table["version"] = table["version"].replace(
            f"l2={model.l2:g}", f"l2={min(L2_GRID):g}..{max(L2_GRID):g}"
        )
    table["version"] = f"{table['version']} {choice.winner.kind.value}"  # which candidate it is
    if choice.keeps_default:
        default_signal_weights = {name: weight for name, (_, weight) in config.signal_table.items()}
        fitted = Fitted(config.weights.as_dict(), default_signal_weights, table)
    else:
        fitted = Fitted(health.weights, health.signal_weights, table)
    adopted = tuned_config(fitted)
    test = {
        days: labelled.where(np.array([s.at >= first_test for s in labelled.samples], dtype=bool))
        for days, labelled in by_horizon.items()
    }
    default, default_scores = _held_out(test, config)
    tuned, tuned_scores = _held_out(test, adopted)
    written = adopted.model
    assert written is not None

    def risk_of(days: int, samples: list[Sample]) -> NDArray[np.float64]:
        scores = tuned_scores[days].tolist()  # what the workers would score them with it
        return np.array(
            [
                churn_probability({n: (0.0, v) for n, v in s.signals.items()}, written, s.volumes, score)
                for s, score in zip(samples, scores, strict=True)
            ],
            dtype=np.float64,
        )

    def plain_of(_: int, samples: list[Sample]) -> NDArray[np.float64]:
        return plain_risk(plain_model, samples)

    def mix_of(_: int, samples: list[Sample]) -> NDArray[np.float64]:
        return mix_risk(mix_model, samples)

    risk = _probabilities(test, risk_of)
    plain_held = _probabilities(test, plain_of)
    versus = _versus(
        test[TUNE_HORIZON],
        risk.predicted[TUNE_HORIZON],
        {"default": -default_scores[TUNE_HORIZON], "plain": plain_held.predicted[TUNE_HORIZON]},
    )
    return TuneResult(
        train_months=train_months,
        test_months=sorted({s.at for labelled in test.values() for s in labelled.samples}),
        train_samples=len(train.samples),
        train_churned=int(train.churned.sum()),
        health=health_model,
        plain=plain_model,
        plain_selection=plain_selection,
        choice=choice,
        default_weights=config.weights.as_dict(),
        tuned_weights=fitted.weights,
        default_signal_weights={name: weight for name, (_, weight) in config.signal_table.items()},
        fitted=fitted,
        default=default,
        tuned=tuned,
        risk=risk,
        plain_risk=plain_held,
        mix_risk=_probabilities(test, mix_of),
        test_labelled=test,
        test_scores={"default": default_scores, "tuned": tuned_scores},
        chosen=dict(risk.auc),
        versus=versus,
    )


@dataclass(frozen=True)
class Backtest:
    replay: Replay
    horizons: dict[int, HorizonResult]
    alerts: list[RuleStats]
    alert_window: tuple[int, int]
    tuning: TuneResult | None
    baseline: dict[int, float | None] = field(default_factory=dict)  # horizon -> pooled baseline AUC
    minus: dict[int, dict[str, Difference]] = field(default_factory=dict)
    """Per horizon, the score's pooled AUC minus a coin flip's ("chance", 0.5) and minus the usage
    baseline's ("baseline"), each with its standard error (`pooled_differences`)."""


CHANCE = 0.5
"""The ROC AUC of a ranking that knows nothing of churn (a coin flip)."""


def baseline_risk(replay: Replay, labelled: Labelled) -> NDArray[np.float64]:
    """The usage baseline as a risk on `labelled`'s samples: fewer events in the window, riskier."""
    usage = replay.baseline_usage
    return np.array([-usage.get((s.account_id, s.at), 0) for s in labelled.samples], dtype=np.float64)


def pooled_differences(labelled: Labelled, baseline: NDArray[np.float64]) -> dict[str, Difference]:
    """The score's pooled AUC on `labelled` minus `CHANCE` and minus the baseline's (`baseline`: its
    risks on the same samples), with the standard error of a bootstrap over accounts (paired for
    the baseline: both AUCs on each draw). Whether a history lets the score rank churn at all."""
    risk, churned = -labelled.scores, labelled.churned
    auc, against = roc_auc(risk, churned), roc_auc(baseline, churned)
    accounts = [s.account_id for s in labelled.samples]
    found = {}
    if auc is not None:
        found["chance"] = Difference(auc - CHANCE, bootstrap_se(risk, churned, accounts))
        if against is not None:
            found["baseline"] = Difference(auc - against, bootstrap_se(risk, churned, accounts, baseline))
    return found


def analyse(replay: Replay) -> Backtest:
    """Every figure except tuning, from one replay."""
    if not replay.month_starts:
        raise NotEnoughHistory(
            "no month start has enough history before it (--warmup-days) and 30 days of data after it"
        )
    horizons = {days: horizon_result(label(replay, days)) for days in HORIZONS}
    start, end = replay.month_starts[0], replay.data_end
    alerts = alert_stats(
        replay.alerts, replay.timelines, start=start, end=end, horizon_ms=ALERT_HORIZON * DAY
    )
    baselines = {days: baseline_risk(replay, h.labelled) for days, h in horizons.items()}
    return Backtest(
        replay,
        horizons,
        alerts,
        (start, end),
        None,
        {days: roc_auc(baselines[days], h.labelled.churned) for days, h in horizons.items()},
        {days: pooled_differences(h.labelled, baselines[days]) for days, h in horizons.items()},
    )
