"""Learn a churn model from a portfolio's own history: L2 logistic regression on signal sub-scores.

Features are the per-signal 0-100 sub-scores of `Evaluation.signals` (as fractions), whatever
signals the core produces: a signal without data at a sample takes its training mean, plus a
0/1 "missing" column when the training samples have it sometimes but not always. The penalty
strength is chosen by time-ordered cross-validation inside the training months (each fold fits
on month starts whose label window ends before the fold's month start, and is scored on that
month start). Columns are standardised before the fit (so one penalty shrinks every signal
alike, whatever its spread) and the coefficients reported on the sub-score/100 scale. The
penalty is the one whose out-of-fold predictions, pooled over the folds, rank churners best
(ROC AUC; ties go to the lower log-loss, then to the stronger penalty). Two fits share those
features:

- the *health* fit keeps every signal's coefficient <= 0 (more health, less churn), so that its
  coefficients can become signal weights of the score; it is also the written `[model]`;
- the *plain* fit is unconstrained, the yardstick a score has to keep up with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from streamer.backtest.metrics import roc_auc
from streamer.core.clock import DAY

Matrix = NDArray[np.float64]

L2_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""Candidate penalties (on the summed log-likelihood; columns standardised to unit spread)."""
CV_FOLDS = 3  # the latest training instants that serve, each in turn, as a validation fold
FOLD_SPACING_DAYS = 14  # validation instants at least this far apart (weekly neighbours say the same)
MIN_MISSING_SHARE = 0.01  # a missing column needs this share of training samples on each side


def sigmoid(z: Matrix) -> Matrix:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0))), dtype=np.float64)


def _objective(design: Matrix, y: Matrix, penalty: Matrix, beta: Matrix, centre: Matrix) -> float:
    """Penalised negative log-likelihood, computed without overflow (log(1 + e^z) by logaddexp)."""
    z = design @ beta
    away = beta - centre
    return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * away * away))


def _newton(x: Matrix, y: Matrix, l2: float, prior: Matrix | None = None, iterations: int = 100) -> Matrix:
    """[intercept, betas] of the L2-penalised logistic regression (intercept not shrunk), by damped
    Newton steps: each step is halved until the penalised loss goes down enough (Armijo). The
    penalty pulls the betas towards `prior` (0 when None): a strong penalty returns the prior.

    Full Newton steps overshoot when a rare value is nearly all churners (a scheduled
    cancellation, say): they oscillated, left the gradient far from 0 after every iteration
    and returned coefficients of the wrong sign and any size. The line search makes every step
    lower the loss, so the iteration reaches the optimum of this convex problem.
    """
    design = np.hstack((np.ones((len(x), 1)), x))
    beta = np.zeros(design.shape[1])
    mean = float(np.clip(y.mean(), 1e-6, 1 - 1e-6)) if len(y) else 0.5
    beta[0] = np.log(mean / (1 - mean))
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    centre = np.zeros(design.shape[1])
    if prior is not None:
        centre[1:] = prior
    loss = _objective(design, y, penalty, beta, centre)
    for _ in range(iterations):
        p = sigmoid(design @ beta)
        gradient = design.T @ (p - y) + penalty * (beta - centre)
        weights = p * (1 - p)
        hessian = (design * weights[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        decrease = float(gradient @ step)  # > 0: the Hessian is positive definite
        size = 1.0
        for _ in range(60):
            trial = beta - size * step
            trial_loss = _objective(design, y, penalty, trial, centre)
            if trial_loss <= loss - 1e-4 * size * decrease:
                break
            size /= 2
        else:
            break  # no step lowers the loss: at the optimum up to rounding
        beta, loss = trial, trial_loss
        if float(np.max(np.abs(size * step))) < 1e-9:
            break
    return beta


def fit_l2_logistic(
    x: Matrix,
    churned: ArrayLike,
    l2: float,
    non_positive: Sequence[int] = (),
    standardise: bool = False,
    prior: Matrix | None = None,
) -> tuple[float, Matrix]:
    """(intercept, coefficients) of P(churn) = sigmoid(intercept + x @ coefficients), L2-penalised.

    Columns listed in `non_positive` are kept <= 0 (an active-set method: the most positive one
    is fixed at 0 and the rest refitted; a fixed column whose gradient then asks to go negative
    is freed again), which solves the bound-constrained problem for well-conditioned data.
    With `standardise`, the penalty applies to the coefficients of the columns divided by their
    standard deviation (a constant column is left as it is); the result is on `x`'s scale.
    With `prior` (coefficients on `x`'s scale, <= 0 in the bounded columns), the penalty pulls
    the coefficients towards it instead of towards 0.
    """
    if standardise:
        spread = x.std(axis=0)
        spread[spread < 1e-9] = 1.0
        scaled_prior = None if prior is None else prior * spread
        intercept, scaled = fit_l2_logistic(x / spread, churned, l2, non_positive, prior=scaled_prior)
        return intercept, scaled / spread
    y = np.asarray(churned, dtype=np.float64)
    columns = x.shape[1]
    bounded = set(non_positive)
    fixed: set[int] = set()
    coefficients = np.zeros(columns)
    intercept = 0.0
    for _ in range(4 * columns + 4):
        free = [j for j in range(columns) if j not in fixed]
        beta = _newton(x[:, free], y, l2, None if prior is None else prior[free])
        intercept = float(beta[0])
        coefficients = np.zeros(columns)
        coefficients[free] = beta[1:]
        positive = [(coefficients[j], j) for j in free if j in bounded and coefficients[j] > 0]
        if positive:
            fixed.add(max(positive)[1])
            continue
        p = sigmoid(intercept + x @ coefficients)
        gradient = x.T @ (p - y)  # at a fixed column's 0: > 0 means going negative would help
        if prior is not None:
            gradient -= l2 * prior  # the penalty's pull towards a prior below 0
        wanting = [(gradient[j], j) for j in fixed if gradient[j] > 1e-6]
        if not wanting:
            break
        fixed.discard(max(wanting)[1])
    return intercept, coefficients


def log_loss(probability: Matrix, churned: ArrayLike) -> float:
    y = np.asarray(churned, dtype=np.float64)
    p = np.clip(probability, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(probability: Matrix, churned: ArrayLike) -> float:
    return float(np.mean((probability - np.asarray(churned, dtype=np.float64)) ** 2))


@dataclass(frozen=True)
class CalibrationBin:
    samples: int
    predicted: float  # mean predicted probability
    observed: float  # churn rate


def calibration_table(probability: Matrix, churned: ArrayLike, bins: int = 10) -> list[CalibrationBin]:
    """Samples sorted by predicted risk, cut into `bins` groups of (nearly) equal size."""
    y = np.asarray(churned, dtype=np.float64)
    order = np.argsort(probability, kind="mergesort")
    table: list[CalibrationBin] = []
    for chunk in np.array_split(order, min(bins, len(order))):
        if len(chunk):
            table.append(CalibrationBin(len(chunk), float(probability[chunk].mean()), float(y[chunk].mean())))
    return table


@dataclass(frozen=True)
class FeatureSpace:
    """Which signals are columns, the means standing in for missing ones, which get a missing column."""

    signals: tuple[str, ...]
    means: dict[str, float]  # 0-100 sub-score means over the training samples that have the signal
    indicators: tuple[str, ...]
    # Signals of one value wherever present: no churn to learn from, so a penalty towards a prior
    # (the default's weights) leaves their coefficient at the prior, and towards 0 at 0.
    constant: frozenset[str] = frozenset()

    @classmethod
    def learn(cls, rows: Sequence[Mapping[str, float]]) -> FeatureSpace:
        names = sorted({name for row in rows for name in row})
        means: dict[str, float] = {}
        indicators: list[str] = []
        constant: set[str] = set()
        for name in names:
            present = [row[name] for row in rows if name in row]
            means[name] = float(np.mean(present))
            if min(present) == max(present):
                constant.add(name)
            share = len(present) / len(rows)
            if MIN_MISSING_SHARE <= share <= 1 - MIN_MISSING_SHARE:
                indicators.append(name)
        return cls(tuple(names), means, tuple(indicators), frozenset(constant))

    @property
    def columns(self) -> list[str]:
        return [*self.signals, *(f"{name} missing" for name in self.indicators)]

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> Matrix:
        x = np.empty((len(rows), len(self.signals) + len(self.indicators)))
        for i, row in enumerate(rows):
            for j, name in enumerate(self.signals):
                x[i, j] = row.get(name, self.means[name]) / 100.0
            for k, name in enumerate(self.indicators):
                x[i, len(self.signals) + k] = 0.0 if name in row else 1.0
        return x


@dataclass(frozen=True)
class SignalModel:
    """A fitted model: log-odds = intercept + sum coefficient x sub-score/100 (+ missing terms)."""

    space: FeatureSpace
    intercept: float
    coefficients: dict[str, float]  # per signal
    missing: dict[str, float]  # per signal with a missing column
    l2: float

    def probability(self, rows: Sequence[Mapping[str, float]]) -> Matrix:
        beta = np.array(
            [self.coefficients[name] for name in self.space.signals]
            + [self.missing[name] for name in self.space.indicators]
        )
        return sigmoid(self.intercept + self.space.matrix(rows) @ beta)


def fit_signal_model(
    space: FeatureSpace,
    rows: Sequence[Mapping[str, float]],
    churned: ArrayLike,
    l2: float,
    health: bool,
    prior: Mapping[str, float] | None = None,
) -> SignalModel:
    """Fit on `rows`; `health` keeps every signal's coefficient <= 0 (missing columns stay free);
    `prior` (per signal, on the sub-score/100 scale) is what the penalty pulls the signals towards."""
    bounded = range(len(space.signals)) if health else range(0)
    centre = None
    if prior is not None:
        centre = np.zeros(len(space.signals) + len(space.indicators))
        centre[: len(space.signals)] = [prior.get(name, 0.0) for name in space.signals]
    x = space.matrix(rows)
    intercept, beta = fit_l2_logistic(x, churned, l2, bounded, standardise=True, prior=centre)
    n = len(space.signals)
    return SignalModel(
        space,
        intercept,
        {name: float(beta[j]) for j, name in enumerate(space.signals)},
        {name: float(beta[n + k]) for k, name in enumerate(space.indicators)},
        l2,
    )


@dataclass(frozen=True)
class Fold:
    fit_months: list[int]  # month starts fitted on: each one's label window ends by `validate`
    validate: int  # the month start scored


def time_folds(
    months: Sequence[int], horizon_days: int, folds: int = CV_FOLDS, spacing_days: int = FOLD_SPACING_DAYS
) -> list[Fold]:
    """Rolling-origin folds over the training instants (month starts, and the weekly grid between
    them when sampled): each validates on one instant and fits on the instants whose label window
    ends by it. The validation instants are the latest ones that have something to fit on, at
    least `spacing_days` apart, oldest first."""
    ordered = sorted(set(months))
    found: list[Fold] = []
    for validate in reversed(ordered):
        if len(found) == folds:
            break
        if found and found[-1].validate - validate < spacing_days * DAY:
            continue
        fit = [m for m in ordered if m + horizon_days * DAY <= validate]
        if fit:
            found.append(Fold(fit, validate))
    return found[::-1]


@dataclass(frozen=True)
class Selection:
    l2: float
    losses: dict[float, float | None]  # pooled validation log-loss per candidate (None: no usable fold)
    folds: list[Fold]
    aucs: dict[float, float | None] = field(default_factory=dict)  # pooled validation ROC AUC


def choose_l2(
    rows: Sequence[Mapping[str, float]],
    churned: NDArray[np.bool_],
    months: Sequence[int],
    horizon_days: int,
    health: bool,
    grid: Sequence[float] = L2_GRID,
) -> Selection:
    """The penalty whose validation predictions, pooled over time-ordered folds, rank best.

    Ranking (ROC AUC) decides because the score is used to rank accounts; log-loss breaks a tie
    (rounded to 4 places for AUC, so that noise in the last digits does not pick an extreme),
    then the stronger penalty (also the answer when the history is too short for any fold).
    Log-loss alone picked the strongest penalty on small portfolios: with a few churners per
    fold, flat probabilities near the base rate lose little, and the ranking was lost.
    """
    at = np.asarray(months, dtype=np.int64)
    folds = [
        fold
        for fold in time_folds(sorted(set(at.tolist())), horizon_days)
        if _both_classes(churned[np.isin(at, fold.fit_months)])
    ]
    losses: dict[float, float | None] = {}
    aucs: dict[float, float | None] = {}
    for l2 in grid:
        predicted: list[Matrix] = []
        observed: list[NDArray[np.bool_]] = []
        for fold in folds:
            fit_mask = np.isin(at, fold.fit_months)
            test_mask = at == fold.validate
            fit_rows = [row for row, keep in zip(rows, fit_mask, strict=True) if keep]
            test_rows = [row for row, keep in zip(rows, test_mask, strict=True) if keep]
            space = FeatureSpace.learn(fit_rows)
            model = fit_signal_model(space, fit_rows, churned[fit_mask], l2, health)
            predicted.append(model.probability(test_rows))
            observed.append(churned[test_mask])
        if predicted:
            p, y = np.concatenate(predicted), np.concatenate(observed)
            losses[l2], aucs[l2] = log_loss(p, y), roc_auc(p, y)
        else:
            losses[l2] = aucs[l2] = None
    scored = [
        (-round(aucs[l2] or 0.5, 4), round(loss, 9), -l2) for l2, loss in losses.items() if loss is not None
    ]
    best = -min(scored)[2] if scored else max(grid)
    return Selection(best, losses, folds, aucs)


def _both_classes(labels: NDArray[np.bool_]) -> bool:
    return bool(labels.any()) and not bool(labels.all())
