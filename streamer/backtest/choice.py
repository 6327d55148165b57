"""What `--tune` writes: the mix of the default and the plain regressions as the [model] unless the
plain fit clearly ranks better, and the default weights unless a fit clearly ranks better, inside
the training period.

The fits start from the default. Each signal's share of the default score (component weight x
its weight in the component, with every signal present) times one fitted scale is the *prior*:
the health fit's coefficients are pulled towards it by an L2 penalty, so that an infinite
penalty gives back the default score's ranking exactly and a finite one adds a regularised
correction. The plain (unconstrained) regression reads the signals and the volume of each of
the portfolio's top `TOP_FEATURES` product features (ln(1 + events over 28 days)). The *mix*
averages the calibrated default's log-odds and the plain regressions' at every penalty of
`L2_GRID` (`bagged`: each fit's log-odds divided by its spread, averaged, so that no penalty is
picked on the folds), each side divided by its spread over the training samples, and calibrates
the average (`mix_fit`): one linear model over the plain fits' columns, which `[model]` carries.

Candidates, scored on the same rolling-origin folds inside the training period (see
`learn.time_folds`; the instants are the month starts and the weekly grid between them): the
default, the shrunk fit at each penalty of `SHRINK_GRID` turned into weights exactly as `--tune`
would write them, the plain regression at each penalty of `L2_GRID` (the yardstick is the one
that ranks best out of fold) and the mix (each fold fits its own). The folds use 60-day churn
labels; when the training period is too short for a 60-day split (two month starts), 30-day
labels, so that no fit label reaches its validation instant and no validation label the
held-out range.

First, whether there is enough churn to learn from: with fewer than `MIN_CHURNED_ACCOUNTS`
accounts that churned in the training samples (`--min-churned-accounts`), nothing is fitted for
what `--tune` writes: the weights stay the default's and the `[model]` is the score itself,
calibrated (`Kind.calibrated`: log-odds = a + b x score / 100, b <= 0, and a term for a
scheduled cancellation where training had some), so that `churn_risk_60d` ranks as the score
does (b = 0, the base rate for everyone, where the training scores rank churn the wrong way).
A plain fit reads about 36 columns and the folds of such a history hold a handful of churners
each: an out-of-fold difference of two rankings is then mostly noise
(docs/backtest-rounds.md, *Too few churned accounts to learn from*). The candidates are still scored out
of fold, for the report.

Otherwise, two decisions, each by a standard-error rule towards the default's side (a paired bootstrap
over accounts gives the standard error of a difference of two pooled out-of-fold ROC AUCs; it
keeps an account's samples together and compares both on the same draws):

- the **[model]** behind churn_risk_60d, the ranking `--tune` publishes: the mix, unless the
  plain regression ranks better than it by more than `MODEL_STANDARD_ERRORS` (two) standard errors
  of their difference: the plain fit is written where the default adds nothing to it (a default that
  ranks no churn), not on a difference the folds' noise makes one portfolio in six.
  The default alone is not a candidate for it: the mix contains it, and the inner folds, fitted
  on less history than the final fit (and on 30-day labels where the training period is short),
  ranked the default above the mix on portfolios where the mix ranked better held out
  (docs/backtest-rounds.md, "The [model] and the weights decided apart");
- the score's **weights**: among the default and the health fits, the best out of fold sets the
  bar and the first of `PREFERENCE` within one standard error of it is written (the default,
  then the health fits from the strongest penalty): a health fit replaces the default's weights
  only when it ranks better by more than the noise of the folds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from streamer.backtest.learn import (
    L2_GRID,
    FeatureSpace,
    Fold,
    SignalModel,
    fit_l2_logistic,
    fit_signal_model,
    time_folds,
)
from streamer.backtest.metrics import RankedRisk, roc_auc
from streamer.backtest.sampling import Sample
from streamer.backtest.tuning import signal_scores_under
from streamer.core.config import ScoreConfig
from streamer.core.score import SIGNAL_COMPONENT

Matrix = NDArray[np.float64]
SHRINK_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
"""Penalties of the fits shrunk towards the default (standardised columns); infinity is the default."""
BOOTSTRAP_ROUNDS = 200
STANDARD_ERRORS = 1.0
"""How far below the best a simpler candidate may rank and still be chosen, in standard errors of the
difference (the usual one-standard-error rule). Two, with two month-start folds, gave up a fit worth
+0.024 held out on one portfolio; the weekly grid's folds are larger, so one SE is a tighter bar."""
MODEL_STANDARD_ERRORS = 2.0
"""How much better than the mix, in standard errors of their difference, the plain fit has to rank out
of fold to be written as the [model]. At one, on twelve ChurnSim and simulator portfolios above the
churned-accounts bar, the out-of-fold margins spread like noise (-2.0 to +1.5 SE) and each of the three
switches (+1.1 to +1.5 SE) ranked below the mix held out (docs/backtest-rounds.md, fifteenth round)."""
MIN_CHURNED_ACCOUNTS = 20
"""Fewest churned accounts in the training samples for `--tune` to write a fit (`--min-churned-accounts`)."""
TOP_FEATURES = 16  # feature volumes the plain regression reads, by portfolio volume (`--top-features`)
VOLUME_PREFIX = "volume:"  # a plain fit's column of one feature's volume (signal names have no colon)
BOOTSTRAP_SEED = 0  # the bootstrap is deterministic: the same history chooses the same candidate


class Kind(StrEnum):
    default = "default"  # the configured weights, unchanged (the shrunk fit at an infinite penalty)
    health = "health"  # a health fit (coefficients <= 0) shrunk towards the default, written as weights
    mix = "mix"  # the default (calibrated) and the plain regression averaged: the [model] only, weights kept
    plain = "plain"  # the unconstrained regression with feature volumes: the [model] only, weights kept
    calibrated = "calibrated"  # the score calibrated: the [model] when too few accounts churned

    @property
    def model_only(self) -> bool:
        """Written as the [model] behind churn_risk_60d only: the score keeps the default weights."""
        return self in (Kind.mix, Kind.plain, Kind.calibrated)


PREFERENCE = (Kind.mix, Kind.default, Kind.health, Kind.plain)
"""The order in which candidates are preferred (the weights: the default, then the health fits)."""


@dataclass(frozen=True)
class Candidate:
    kind: Kind
    l2: float | None  # None for the default
    auc: float | None  # pooled out-of-fold ROC AUC (None: no usable fold)

    @property
    def label(self) -> str:
        return self.kind.value if self.l2 is None else f"{self.kind.value} l2={self.l2:g}"


@dataclass(frozen=True)
class Choice:
    """What `--tune` writes, out of fold: the [model] (`winner`: the score calibrated, the mix or the
    plain fit), the score's weights (`weights`: the default or a health fit) and every candidate's
    AUC."""

    winner: Candidate
    candidates: list[Candidate]
    folds: list[Fold]
    best_writable: Candidate | None = None  # the highest out-of-fold AUC among the weight candidates
    standard_error: float | None = None  # of its AUC minus the default's (bootstrap over accounts)
    horizon_days: int = 60  # the label horizon of the folds (30 when the training period is short)
    eligible: list[Candidate] = field(default_factory=list)  # the weight candidates within the noise
    weights: Candidate | None = None  # the score's weights: the default or a health fit (None: the winner's)
    churned_accounts: int = 0  # accounts with a 60-day churn label in the training samples
    min_churned_accounts: int = MIN_CHURNED_ACCOUNTS  # fewer: the default weights and the score calibrated

    @property
    def weighting(self) -> Candidate:
        """What the written [weights] and [signal_weights] come from: the default or a health fit."""
        return self.weights if self.weights is not None else self.winner

    @property
    def too_few_churned(self) -> bool:
        """Whether the training samples held too few churned accounts for a fit to be written (the
        [model] is then the score calibrated)."""
        return self.winner.kind is Kind.calibrated

    @property
    def keeps_default(self) -> bool:
        """Whether the written weights are the default's."""
        return self.weighting.kind is not Kind.health

    @property
    def bar(self) -> float | None:
        """The AUC the default has to reach to be kept: the best's minus one standard error of their
        difference (each fit has its own, against the best)."""
        if self.best_writable is None or self.best_writable.auc is None:
            return None
        return self.best_writable.auc - STANDARD_ERRORS * (self.standard_error or 0.0)

    def best(self, kind: Kind) -> Candidate | None:
        """The best of `kind` out of fold (the mix has one candidate: it bags every plain penalty)."""
        found = [c for c in self.candidates if c.kind is kind and c.auc is not None]
        return min(found, key=_preference) if found else None


def _preference(candidate: Candidate) -> tuple[float, int, float]:
    """Sort key, best first: higher AUC, then the simpler candidate."""
    return (-(candidate.auc if candidate.auc is not None else 0.5), *_preferred_order(candidate))


def _preferred_order(candidate: Candidate) -> tuple[int, float]:
    """Sort key, first preferred: the order of `PREFERENCE`; then the stronger penalty."""
    return (PREFERENCE.index(candidate.kind), -(candidate.l2 or 0.0))


def default_shares(config: ScoreConfig, signals: Sequence[str]) -> dict[str, float]:
    """Each signal's share of the default score when all of `signals` have data: its component's
    weight times its weight over the weights of that component's signals among `signals`.

    With every signal present the core's score is 100 x the sum of share x sub-score/100 (stage
    and plan overrides of the component weights aside).
    """
    table = config.signal_table
    component_weights = config.weights.as_dict()
    totals: dict[str, float] = {}
    for name in signals:
        component = SIGNAL_COMPONENT[name]
        totals[component] = totals.get(component, 0.0) + table[name][1]
    shares = {}
    for name in signals:
        component = SIGNAL_COMPONENT[name]
        total = totals[component]
        shares[name] = component_weights[component] * table[name][1] / total if total > 0 else 0.0
    return shares


def default_prior(
    space: FeatureSpace, rows: Sequence[Mapping[str, float]], churned: NDArray[np.bool_], config: ScoreConfig
) -> tuple[float, dict[str, float]]:
    """(intercept, coefficients) of the default score as a churn model: log-odds = intercept +
    scale x the default's linear score (shares x sub-scores/100, a missing signal at its mean),
    the scale fitted on `rows` (kept >= 0 health: a default that ranks the wrong way gives 0)."""
    shares = default_shares(config, space.signals)
    weights = np.array([shares[name] for name in space.signals])
    linear = space.matrix(rows)[:, : len(space.signals)] @ weights
    intercept, slope = fit_l2_logistic(linear[:, None], churned, 1e-6, non_positive=[0])
    scale = -float(slope[0])
    return intercept, {name: -scale * shares[name] for name in space.signals}


def default_model(
    space: FeatureSpace, rows: Sequence[Mapping[str, float]], churned: NDArray[np.bool_], config: ScoreConfig
) -> SignalModel:
    """The shrunk fit at an infinite penalty: the default score, calibrated."""
    intercept, prior = default_prior(space, rows, churned, config)
    return SignalModel(space, intercept, prior, dict.fromkeys(space.indicators, 0.0), math.inf)


def shrunk_fit(
    space: FeatureSpace,
    rows: Sequence[Mapping[str, float]],
    churned: NDArray[np.bool_],
    l2: float,
    config: ScoreConfig,
) -> SignalModel:
    """The health fit whose penalty pulls every signal's coefficient towards the default's."""
    if math.isinf(l2):
        return default_model(space, rows, churned, config)
    _, prior = default_prior(space, rows, churned, config)
    return fit_signal_model(space, rows, churned, l2, health=True, prior=prior)


def usable_folds(samples: Sequence[Sample], churned: NDArray[np.bool_], horizon_days: int) -> list[Fold]:
    """Time-ordered folds whose fitting instants hold churners and non-churners."""
    at = np.array([s.at for s in samples], dtype=np.int64)
    found = []
    for fold in time_folds(sorted(set(at.tolist())), horizon_days):
        labels = churned[np.isin(at, fold.fit_months)]
        if labels.any() and not labels.all():
            found.append(fold)
    return found


def top_features(samples: Sequence[Sample], k: int) -> tuple[str, ...]:
    """The `k` product features with the most events over the samples (ties by name)."""
    totals: dict[str, int] = {}
    for s in samples:
        for name, count in s.volumes.items():
            totals[name] = totals.get(name, 0) + count
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return tuple(name for name, _ in ranked[:k])


def plain_rows(samples: Sequence[Sample], features: Sequence[str]) -> list[dict[str, float]]:
    """A plain fit's rows: the signal sub-scores and, per feature, 100 x ln(1 + events over 28 days)
    under `VOLUME_PREFIX` + name (always present: 0 for an unused feature), so that a coefficient
    on the /100 scale is per unit of ln(1 + events), as `[model] feature_volumes` reads it."""
    rows = []
    for s in samples:
        row = dict(s.signals)
        for name in features:
            row[VOLUME_PREFIX + name] = 100.0 * math.log1p(s.volumes.get(name, 0))
        rows.append(row)
    return rows


def plain_fit(samples: Sequence[Sample], churned: NDArray[np.bool_], l2: float, top_k: int) -> SignalModel:
    """The plain (unconstrained) regression on the signals and the top-`top_k` feature volumes."""
    rows = plain_rows(samples, top_features(samples, top_k))
    return fit_signal_model(FeatureSpace.learn(rows), rows, churned, l2, health=False)


def plain_risk(model: SignalModel, samples: Sequence[Sample]) -> Matrix:
    """A plain fit's probabilities for `samples` (its feature volumes read from them)."""
    return model.probability(plain_rows(samples, volume_features(model)))


def volume_features(model: SignalModel) -> list[str]:
    """The product features whose volumes `model` reads."""
    return [name[len(VOLUME_PREFIX) :] for name in model.space.signals if name.startswith(VOLUME_PREFIX)]


def mix_risk(model: SignalModel, samples: Sequence[Sample]) -> Matrix:
    """A mix's probabilities for `samples` (a model over the plain fit's columns, volumes included)."""
    return model.probability(plain_rows(samples, volume_features(model)))


def _log_odds(model: SignalModel, rows: Sequence[Mapping[str, float]]) -> Matrix:
    beta = np.array(
        [model.coefficients[name] for name in model.space.signals]
        + [model.missing[name] for name in model.space.indicators]
    )
    return np.asarray(model.intercept + model.space.matrix(rows) @ beta, dtype=np.float64)


def _by_spread(
    models: Sequence[SignalModel], rows: Sequence[Mapping[str, float]]
) -> list[tuple[SignalModel, float]]:
    """Each model with the standard deviation of its log-odds over `rows`; a model constant over
    them drops out (it ranks nothing)."""
    parts = []
    for model in models:
        spread = float(np.std(_log_odds(model, rows))) if rows else 0.0
        if spread > 1e-9:
            parts.append((model, spread))
    return parts


def _weighted_sum(parts: Sequence[tuple[SignalModel, float]], space: FeatureSpace, l2: float) -> SignalModel:
    """One linear model over `space`: each part's terms times its weight, summed (a term a part
    lacks counts 0)."""
    return SignalModel(
        space,
        sum(w * m.intercept for m, w in parts),
        {n: sum(w * m.coefficients.get(n, 0.0) for m, w in parts) for n in space.signals},
        {n: sum(w * m.missing.get(n, 0.0) for m, w in parts) for n in space.indicators},
        l2,
    )


def bagged(plains: Sequence[SignalModel], rows: Sequence[Mapping[str, float]]) -> SignalModel:
    """The plain fits at several penalties averaged: each one's log-odds divided by its standard
    deviation over `rows` (the rows all were fitted on), the results averaged. One linear model over
    their common columns (every fit on the same rows has the same columns); a fit constant over
    `rows` drops out. A bag of one is that fit, rescaled."""
    parts = _by_spread(plains, rows)
    share = 1.0 / max(1, len(parts))
    return _weighted_sum(
        [(m, share * (1.0 / spread)) for m, spread in parts], plains[0].space, min(m.l2 for m in plains)
    )


def mix_fit(
    plains: Sequence[SignalModel], samples: Sequence[Sample], churned: NDArray[np.bool_], config: ScoreConfig
) -> SignalModel:
    """The default score calibrated on `samples` (`default_model`) and the plain regressions
    `plains` (fitted on the same samples at the penalties of `L2_GRID`, averaged by `bagged`: no
    penalty is chosen on the folds), averaged: each one's
    log-odds divided by its standard deviation over `samples` (the samples both were fitted on), so
    that each weighs alike in the ranking, the two averaged, and the average calibrated on `samples`
    (log-odds = a + b x average, b >= 0: the mix's ranking is kept).

    Both are linear in the same columns (the default's missing terms are 0 and its feature volumes
    absent, so 0), hence so is the mix: one model over the plain fits' columns, which `[model]`
    carries as it carries the plain fit. A model constant over `samples` drops out.
    """
    signal_rows = [s.signals for s in samples]
    default = default_model(FeatureSpace.learn(signal_rows), signal_rows, churned, config)
    rows = plain_rows(samples, volume_features(plains[0]))
    plain = bagged(plains, rows)
    parts = [(m, 0.5 / spread) for m, spread in _by_spread((default, plain), rows)]
    average = _weighted_sum(parts, plain.space, plain.l2)
    z = _log_odds(average, rows)
    a, slope = fit_l2_logistic(-z[:, None], churned, 1e-6, non_positive=[0])
    b = -float(slope[0])
    return SignalModel(
        average.space,
        a + b * average.intercept,
        {n: b * c for n, c in average.coefficients.items()},
        {n: b * c for n, c in average.missing.items()},
        plain.l2,
    )


def bootstrap_se(
    risk: Matrix, churned: NDArray[np.bool_], accounts: Sequence[str], against: Matrix | None = None
) -> float | None:
    """Standard error of the ROC AUC of `risk` (of its difference to `against`'s when given),
    resampling whole accounts (an account's samples at several month starts are not independent
    draws). Each draw counts how often every account was picked; the AUCs of that resample come
    from risks ranked once (`RankedRisk`), so a draw costs one pass over the samples."""
    numbers: dict[str, int] = {}
    owner = np.array([numbers.setdefault(account, len(numbers)) for account in accounts], dtype=np.int64)
    if len(numbers) < 2:
        return None
    ranked = RankedRisk(risk, churned)
    other = None if against is None else RankedRisk(against, churned)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    found = []
    for _ in range(BOOTSTRAP_ROUNDS):
        drawn = np.bincount(rng.integers(0, len(numbers), len(numbers)), minlength=len(numbers))[owner]
        auc = ranked.auc(drawn)
        base = 0.0 if other is None else other.auc(drawn)
        if auc is not None and base is not None:
            found.append(auc - base)
    return float(np.std(found)) if len(found) >= 2 else None


def choose(
    inner: Mapping[int, tuple[Sequence[Sample], NDArray[np.bool_]]],
    default: ScoreConfig,
    as_config: Callable[[SignalModel, Sequence[int], int], ScoreConfig],
    grid: Sequence[float] = SHRINK_GRID,
    plain_grid: Sequence[float] = L2_GRID,
    top_k: int = TOP_FEATURES,
    min_churned_accounts: int = MIN_CHURNED_ACCOUNTS,
) -> Choice:
    """Score every candidate out of fold and apply the rules of the module's docstring.

    `inner` maps a label horizon (days) to the training samples labelled with it, each one's label
    window ending by the first held-out month start; the longest horizon with usable folds is used.
    `as_config(model, fit_months, n)` is the configuration `--tune` would write for a health fit
    on those instants' n samples.
    """
    horizon = max(inner)
    folds: list[Fold] = []
    for days in sorted(inner, reverse=True):
        horizon, folds = days, usable_folds(inner[days][0], inner[days][1], days)
        if folds:
            break
    final, final_churned = inner[max(inner)]  # the final fit's samples and (60-day) labels
    churned_accounts = len({s.account_id for s, c in zip(final, final_churned, strict=True) if c})
    samples, churned = inner[horizon]
    at = np.array([s.at for s in samples], dtype=np.int64)
    risks: dict[tuple[Kind, float | None], list[Matrix]] = {}
    observed: list[NDArray[np.bool_]] = []
    accounts: list[str] = []
    for fold in folds:
        fit_mask, test_mask = np.isin(at, fold.fit_months), at == fold.validate
        fit = [s for s, keep in zip(samples, fit_mask, strict=True) if keep]
        test = [s for s, keep in zip(samples, test_mask, strict=True) if keep]
        fit_rows = [s.signals for s in fit]
        space = FeatureSpace.learn(fit_rows)
        observed.append(churned[test_mask])
        accounts.extend(s.account_id for s in test)
        risks.setdefault((Kind.default, None), []).append(-signal_scores_under(test, default))
        for l2 in grid:
            health = shrunk_fit(space, fit_rows, churned[fit_mask], l2, default)
            written = as_config(health, fold.fit_months, len(fit))
            risks.setdefault((Kind.health, l2), []).append(-signal_scores_under(test, written))
        plains = []
        for l2 in plain_grid:
            plain = plain_fit(fit, churned[fit_mask], l2, top_k)
            plains.append(plain)
            risks.setdefault((Kind.plain, l2), []).append(plain_risk(plain, test))
        mix = mix_fit(plains, fit, churned[fit_mask], default)
        risks.setdefault((Kind.mix, None), []).append(mix_risk(mix, test))
    keys = [
        (Kind.default, None),
        *((Kind.health, l2) for l2 in grid),
        *((Kind.plain, l2) for l2 in plain_grid),
        (Kind.mix, None),
    ]
    labels = np.concatenate(observed) if observed else np.zeros(0, dtype=bool)
    pooled = {key: np.concatenate(risks[key]) for key in keys} if observed else {}
    candidates = [
        Candidate(kind, l2, roc_auc(pooled[(kind, l2)], labels) if observed else None) for kind, l2 in keys
    ]
    plain_candidates = [c for c in candidates if c.kind is Kind.plain]
    # the yardstick's penalty
    best_plain = min(plain_candidates, key=_preference) if plain_candidates else None
    # the plain fit at the penalty where it ranks best; the mix bags every penalty (no choice)
    writable = [
        c
        for c in candidates
        if c.kind is not Kind.plain or (best_plain is not None and c.l2 == best_plain.l2)
    ]
    default_candidate = next(c for c in writable if c.kind is Kind.default)
    early: Candidate | None = None  # a [model] decided before the standard-error rules
    if churned_accounts < min_churned_accounts:  # nothing fitted is written: the score, calibrated
        early = Candidate(Kind.calibrated, None, default_candidate.auc)
    elif not observed:  # no usable fold: the default weights and the mix
        early = next(c for c in writable if c.kind is Kind.mix)
    if early is not None:
        return Choice(
            early,
            candidates,
            folds,
            horizon_days=horizon,
            weights=default_candidate,
            churned_accounts=churned_accounts,
            min_churned_accounts=min_churned_accounts,
        )
    # the score's weights: the default or a health fit, by the one-standard-error rule among them
    weighing = [c for c in writable if not c.kind.model_only]
    best = min(weighing, key=_preference)
    best_risk, top = pooled[(best.kind, best.l2)], best.auc if best.auc is not None else 0.5

    def within_noise(candidate: Candidate) -> bool:
        """Ranks no worse than the best by more than STANDARD_ERRORS standard errors of their difference."""
        if candidate.auc is None:
            return False
        other = pooled[(candidate.kind, candidate.l2)]
        return candidate.auc >= top - STANDARD_ERRORS * (
            bootstrap_se(best_risk, labels, accounts, other) or 0.0
        )

    eligible = [c for c in weighing if within_noise(c)]
    weights = min(eligible, key=_preferred_order) if eligible else min(weighing, key=_preferred_order)
    se = bootstrap_se(best_risk, labels, accounts, pooled[(Kind.default, None)])
    # the [model]: the mix, unless the plain fit ranks clearly better (MODEL_STANDARD_ERRORS)
    model = next(c for c in writable if c.kind is Kind.mix)
    if best_plain is not None and best_plain.auc is not None and model.auc is not None:
        plain_oof = pooled[(Kind.plain, best_plain.l2)]
        model_se = bootstrap_se(plain_oof, labels, accounts, pooled[(Kind.mix, None)]) or 0.0
        if best_plain.auc > model.auc + MODEL_STANDARD_ERRORS * model_se:
            model = best_plain
    return Choice(
        model, candidates, folds, best, se, horizon, eligible, weights, churned_accounts, min_churned_accounts
    )
