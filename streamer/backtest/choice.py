"""Which weighting `--tune` writes: the default unless a fit, shrunk towards it, clearly ranks better.

The fits start from the default. Each signal's share of the default score (component weight x
its weight in the component, with every signal present) times one fitted scale is the *prior*:
the health fit's coefficients are pulled towards it by an L2 penalty, so that an infinite
penalty gives back the default score's ranking exactly and a finite one adds a regularised
correction. Candidates, scored on the same time-ordered folds inside the training months (see
`learn.time_folds`): the default, the shrunk fit at each penalty of `SHRINK_GRID` turned into
weights exactly as `--tune` would write them, and the plain (unconstrained) regression at each
penalty of `L2_GRID`, the yardstick (its signs may say more health, more churn: never written).

The rule is a standard-error rule towards the default (two standard errors): the writable candidate
with the best pooled out-of-fold ROC AUC sets the bar; a candidate is within it when its AUC is below the
best's by less than two standard errors of their difference (a paired bootstrap over accounts,
which keeps an account's samples together and compares both on the same draws); the simplest
candidate within it wins: the default first, then the strongest penalty. A fit replaces the
default only when it ranks better by more than the noise of the folds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
from streamer.backtest.metrics import roc_auc
from streamer.backtest.sampling import Sample
from streamer.backtest.tuning import signal_scores_under
from streamer.core.config import ScoreConfig
from streamer.core.score import SIGNAL_COMPONENT

Matrix = NDArray[np.float64]
SHRINK_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
"""Penalties of the fits shrunk towards the default (standardised columns); infinity is the default."""
BOOTSTRAP_ROUNDS = 200
STANDARD_ERRORS = 2.0
"""How far below the best a simpler candidate may rank and still be chosen, in standard errors of the
difference: with one, crm6-s303's fit (0.735 vs the default's 0.692 out of fold, SE 0.037, two folds)
was written and lost held out (0.584 vs 0.659); two ask for a gain the folds could not show by chance."""
BOOTSTRAP_SEED = 0  # the bootstrap is deterministic: the same history chooses the same candidate


class Kind(StrEnum):
    default = "default"  # the configured weights, unchanged (the shrunk fit at an infinite penalty)
    health = "health"  # a health fit (coefficients <= 0) shrunk towards the default, written as weights
    plain = "plain"  # the unconstrained regression: the yardstick, never written


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
    """The winner among the writable candidates (default, health fits) and every candidate's AUC."""

    winner: Candidate
    candidates: list[Candidate]
    folds: list[Fold]
    best_writable: Candidate | None = None  # the highest out-of-fold AUC among default and fits
    standard_error: float | None = None  # of its AUC minus the default's (bootstrap over accounts)

    @property
    def keeps_default(self) -> bool:
        return self.winner.kind is Kind.default

    @property
    def bar(self) -> float | None:
        """The AUC the default has to reach to be kept: the best's minus two standard errors of their
        difference (each fit has its own, against the best)."""
        if self.best_writable is None or self.best_writable.auc is None:
            return None
        return self.best_writable.auc - STANDARD_ERRORS * (self.standard_error or 0.0)

    def best(self, kind: Kind) -> Candidate | None:
        found = [c for c in self.candidates if c.kind is kind and c.auc is not None]
        return min(found, key=_preference) if found else None

    @property
    def plain_beats_winner(self) -> bool:
        plain = self.best(Kind.plain)
        return plain is not None and (plain.auc or 0.5) > (self.winner.auc or 0.5)


def _preference(candidate: Candidate) -> tuple[float, int, float]:
    """Sort key, best first: higher AUC, then the default, then the stronger penalty."""
    return (-(candidate.auc if candidate.auc is not None else 0.5), *_simplicity(candidate))


def _simplicity(candidate: Candidate) -> tuple[int, float]:
    """Sort key, simplest first: the default, then the stronger penalty."""
    return (0 if candidate.kind is Kind.default else 1, -(candidate.l2 or 0.0))


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
    """Time-ordered folds whose fitting months hold churners and non-churners."""
    at = np.array([s.at for s in samples], dtype=np.int64)
    found = []
    for fold in time_folds(sorted(set(at.tolist())), horizon_days):
        labels = churned[np.isin(at, fold.fit_months)]
        if labels.any() and not labels.all():
            found.append(fold)
    return found


def bootstrap_se(
    risk: Matrix, churned: NDArray[np.bool_], accounts: Sequence[str], against: Matrix | None = None
) -> float | None:
    """Standard error of the ROC AUC of `risk` (of its difference to `against`'s when given),
    resampling whole accounts (an account's samples at several month starts are not independent
    draws)."""
    groups: dict[str, list[int]] = {}
    for index, account in enumerate(accounts):
        groups.setdefault(account, []).append(index)
    members = [np.array(indices) for indices in groups.values()]
    if len(members) < 2:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    found = []
    for _ in range(BOOTSTRAP_ROUNDS):
        picked = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        auc = roc_auc(risk[picked], churned[picked])
        other = 0.0 if against is None else roc_auc(against[picked], churned[picked])
        if auc is not None and other is not None:
            found.append(auc - other)
    return float(np.std(found)) if len(found) >= 2 else None


def choose(
    samples: Sequence[Sample],
    churned: NDArray[np.bool_],
    horizon_days: int,
    default: ScoreConfig,
    as_config: Callable[[SignalModel, Sequence[int], int], ScoreConfig],
    grid: Sequence[float] = SHRINK_GRID,
    plain_grid: Sequence[float] = L2_GRID,
) -> Choice:
    """Score every candidate out of fold and apply the standard-error rule towards the default;
    `as_config(model, fit_months, n)` is the configuration `--tune` would write for a health fit
    on those months' n samples."""
    at = np.array([s.at for s in samples], dtype=np.int64)
    folds = usable_folds(samples, churned, horizon_days)
    risks: dict[tuple[Kind, float | None], list[Matrix]] = {}
    observed: list[NDArray[np.bool_]] = []
    accounts: list[str] = []
    for fold in folds:
        fit_mask, test_mask = np.isin(at, fold.fit_months), at == fold.validate
        fit = [s for s, keep in zip(samples, fit_mask, strict=True) if keep]
        test = [s for s, keep in zip(samples, test_mask, strict=True) if keep]
        fit_rows, test_rows = [s.signals for s in fit], [s.signals for s in test]
        space = FeatureSpace.learn(fit_rows)
        observed.append(churned[test_mask])
        accounts.extend(s.account_id for s in test)
        risks.setdefault((Kind.default, None), []).append(-signal_scores_under(test, default))
        for l2 in grid:
            health = shrunk_fit(space, fit_rows, churned[fit_mask], l2, default)
            written = as_config(health, fold.fit_months, len(fit))
            risks.setdefault((Kind.health, l2), []).append(-signal_scores_under(test, written))
        for l2 in plain_grid:
            plain = fit_signal_model(space, fit_rows, churned[fit_mask], l2, health=False)
            risks.setdefault((Kind.plain, l2), []).append(plain.probability(test_rows))
    keys = [
        (Kind.default, None),
        *((Kind.health, l2) for l2 in grid),
        *((Kind.plain, l2) for l2 in plain_grid),
    ]
    labels = np.concatenate(observed) if observed else np.zeros(0, dtype=bool)
    pooled = {key: np.concatenate(risks[key]) for key in keys} if observed else {}
    candidates = [
        Candidate(kind, l2, roc_auc(pooled[(kind, l2)], labels) if observed else None) for kind, l2 in keys
    ]
    writable = [c for c in candidates if c.kind is not Kind.plain]
    best = min(writable, key=_preference)
    if best.auc is None:
        return Choice(min(writable, key=_simplicity), candidates, folds)
    best_risk, top = pooled[(best.kind, best.l2)], best.auc

    def within_noise(candidate: Candidate) -> bool:
        """Ranks no worse than the best by more than STANDARD_ERRORS standard errors of their difference."""
        if candidate.auc is None:
            return False
        other = pooled[(candidate.kind, candidate.l2)]
        return candidate.auc >= top - STANDARD_ERRORS * (
            bootstrap_se(best_risk, labels, accounts, other) or 0.0
        )

    eligible = [c for c in writable if within_noise(c)]
    se = bootstrap_se(best_risk, labels, accounts, pooled[(Kind.default, None)])
    return Choice(min(eligible, key=_simplicity), candidates, folds, best, se)
