"""From a replay to the figures: AUC per month start and pooled, churn by band, alerts, tuning."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from streamer.backtest.labels import churns_within
from streamer.backtest.metrics import BandRate, RuleStats, alert_stats, band_ratio, churn_by_band, roc_auc
from streamer.backtest.sampling import Replay, Sample
from streamer.backtest.tuning import (
    Logistic,
    component_means,
    design,
    fit_logistic,
    normalised,
    scores_under,
    split_months,
)
from streamer.core.clock import DAY
from streamer.core.config import COMPONENTS, ScoreConfig

HORIZONS = (30, 60)  # days: "churns within 30 / 60 days of the month start"
TUNE_HORIZON = 60
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


def label(replay: Replay, days: int) -> Labelled:
    """Samples at month starts with `days` of data after them, of accounts paying then."""
    horizon = days * DAY
    kept: list[Sample] = []
    labels: list[bool] = []
    for sample in replay.samples:
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
class TuneResult:
    train_months: list[int]
    test_months: list[int]
    train_samples: int
    train_churned: int
    model: Logistic
    means: NDArray[np.float64]  # training means used for missing sub-scores
    default_weights: dict[str, float]
    tuned_weights: dict[str, float]
    default: HeldOut
    tuned: HeldOut
    test_labelled: dict[int, Labelled]
    test_scores: dict[str, dict[int, NDArray[np.float64]]]  # "default"/"tuned" -> horizon -> scores


class NotEnoughHistory(ValueError):
    """Too few month starts or churners to fit and hold out."""


def _held_out(
    test: Mapping[int, Labelled], config: ScoreConfig
) -> tuple[HeldOut, dict[int, NDArray[np.float64]]]:
    scores = {days: scores_under(labelled.samples, config) for days, labelled in test.items()}
    auc = {days: roc_auc(-scores[days], labelled.churned) for days, labelled in test.items()}
    main = test[TUNE_HORIZON]
    bands_of = [
        config.bands_for(s.stage, s.plan).band(float(score))
        for s, score in zip(main.samples, scores[TUNE_HORIZON], strict=True)
    ]
    rates = churn_by_band(bands_of, main.churned.tolist())
    return HeldOut(auc, rates, band_ratio(rates)), scores


def tune(
    by_horizon: Mapping[int, Labelled],
    config: ScoreConfig,
    tuned_config: Callable[[dict[str, float]], ScoreConfig],
    holdout: float,
) -> TuneResult:
    """Fit on the earlier month starts, compare default and tuned weights on the later ones.

    `tuned_config(weights)` builds the configuration the tuned weights would be written as.
    """
    main = by_horizon[TUNE_HORIZON]
    months = sorted({s.at for s in main.samples})
    if len(months) < 3:
        raise NotEnoughHistory(
            f"--tune needs at least 3 month starts with {TUNE_HORIZON} days of data after them, "
            f"found {len(months)}: use a longer history or fewer --warmup-days"
        )
    train_months, test_months = split_months(months, holdout, TUNE_HORIZON * DAY)
    train = main.where(np.array([s.at in set(train_months) for s in main.samples], dtype=bool))
    if not train_months or train.churned.sum() < 2 or (~train.churned).sum() < 2:
        raise NotEnoughHistory(
            f"--tune needs churners and non-churners in the training months, found "
            f"{int(train.churned.sum())} churned of {len(train.samples)} samples"
        )
    means = component_means(train.samples)
    model = fit_logistic(design(train.samples, means), train.churned)
    weights = normalised(model.health_weights)
    adopted = tuned_config(weights)
    first_test = test_months[0]
    test = {
        days: labelled.where(np.array([s.at >= first_test for s in labelled.samples], dtype=bool))
        for days, labelled in by_horizon.items()
    }
    default, default_scores = _held_out(test, config)
    tuned, tuned_scores = _held_out(test, adopted)
    return TuneResult(
        train_months=train_months,
        test_months=sorted({s.at for labelled in test.values() for s in labelled.samples}),
        train_samples=len(train.samples),
        train_churned=int(train.churned.sum()),
        model=model,
        means=means,
        default_weights=config.weights.as_dict(),
        tuned_weights=weights,
        default=default,
        tuned=tuned,
        test_labelled=test,
        test_scores={"default": default_scores, "tuned": tuned_scores},
    )


@dataclass(frozen=True)
class Backtest:
    replay: Replay
    horizons: dict[int, HorizonResult]
    alerts: list[RuleStats]
    alert_window: tuple[int, int]
    tuning: TuneResult | None
    baseline: dict[int, float | None] = field(default_factory=dict)  # horizon -> pooled baseline AUC


def baseline_by_horizon(replay: Replay, horizons: Mapping[int, HorizonResult]) -> dict[int, float | None]:
    """The usage baseline's pooled AUC on exactly the samples and labels of each horizon."""
    usage = replay.baseline_usage
    return {
        days: roc_auc(
            np.array(
                [-usage.get((s.account_id, s.at), 0) for s in result.labelled.samples], dtype=np.float64
            ),
            result.labelled.churned,
        )
        for days, result in horizons.items()
    }


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
    return Backtest(replay, horizons, alerts, (start, end), None, baseline_by_horizon(replay, horizons))
