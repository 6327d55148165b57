"""Fit component weights to history: a non-negative logistic regression of churn on the sub-scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from streamer.backtest.sampling import Sample
from streamer.core.config import COMPONENTS, ScoreConfig
from streamer.core.score import SIGNAL_COMPONENT

Matrix = NDArray[np.float64]


def rescore(components: Sequence[float | None], weights: Mapping[str, float], empty_score: float) -> float:
    """The core's score from component sub-scores: weights renormalised over those with data."""
    present = [
        (weights[name], value)
        for name, value in zip(COMPONENTS, components, strict=True)
        if value is not None
    ]
    total = sum(weight for weight, _ in present)
    if total <= 0:
        return round(empty_score, 1)  # as the core publishes it
    return round(sum(weight * value for weight, value in present) / total, 1)


def scores_under(samples: Sequence[Sample], config: ScoreConfig) -> Matrix:
    """What each sample would have scored under `config`'s weights (stage and plan overrides included)."""
    return np.array(
        [rescore(s.components, config.segment(s.stage, s.plan)[0], config.empty_score) for s in samples],
        dtype=np.float64,
    )


def score_from_signals(
    signals: Mapping[str, float], stage: str, plan: str | None, config: ScoreConfig
) -> float:
    """The core's score from signal sub-scores under `config`'s signal and component weights.

    The same arithmetic as `streamer.core.score.evaluate` (signal weights inside a component,
    component weights renormalised over the components with data, stage and plan overrides).
    """
    table = config.signal_table
    weighted = dict.fromkeys(COMPONENTS, 0.0)
    weights_in = dict.fromkeys(COMPONENTS, 0.0)
    for name, sub in signals.items():
        weight = table[name][1]
        component = SIGNAL_COMPONENT[name]
        weighted[component] += weight * sub
        weights_in[component] += weight
    components = [weighted[name] / weights_in[name] if weights_in[name] > 0 else None for name in COMPONENTS]
    return rescore(components, config.segment(stage, plan)[0], config.empty_score)


def signal_scores_under(samples: Sequence[Sample], config: ScoreConfig) -> Matrix:
    """What each sample would have scored under `config` (signal weights included)."""
    return np.array(
        [score_from_signals(s.signals, s.stage, s.plan, config) for s in samples], dtype=np.float64
    )


def component_means(samples: Sequence[Sample]) -> Matrix:
    """Mean of each sub-score over the samples that have it (50, neutral, when none does)."""
    means = np.full(len(COMPONENTS), 50.0)
    for index in range(len(COMPONENTS)):
        present = [s.components[index] for s in samples if s.components[index] is not None]
        if present:
            means[index] = sum(value for value in present if value is not None) / len(present)
    return means


def design(samples: Sequence[Sample], means: Matrix) -> Matrix:
    """Sub-scores as fractions (0-1), a missing one imputed with the training mean."""
    rows = [[means[i] if value is None else value for i, value in enumerate(s.components)] for s in samples]
    return np.array(rows, dtype=np.float64).reshape(len(samples), len(COMPONENTS)) / 100.0


@dataclass(frozen=True)
class Logistic:
    """P(churn) = sigmoid(intercept - sum of w_i x_i) with every w_i >= 0 (health lowers risk)."""

    intercept: float
    health_weights: Matrix  # w_i, per unit of sub-score fraction (0-1)

    def risk(self, features: Matrix) -> Matrix:
        return _sigmoid(self.intercept - features @ self.health_weights)


def _sigmoid(z: Matrix) -> Matrix:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _newton(features: Matrix, churned: Matrix, l2: float, iterations: int = 100) -> Matrix:
    """Unconstrained L2-penalised logistic regression by Newton's method; returns [intercept, betas]."""
    x = np.hstack((np.ones((len(features), 1)), features))
    beta = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0  # the intercept is not shrunk
    for _ in range(iterations):
        p = _sigmoid(x @ beta)
        gradient = x.T @ (p - churned) + penalty * beta
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return beta


def fit_logistic(features: Matrix, churned: ArrayLike, l2: float = 1.0) -> Logistic:
    """Fit churn ~ sub-scores keeping every health weight >= 0.

    A component whose fitted weight comes out negative (more of it, more churn) is fixed at 0
    and the rest refitted, until all are >= 0 (an active-set method; with four features it
    converges in at most four rounds).
    """
    y = np.asarray(churned, dtype=np.float64)
    active = list(range(features.shape[1]))
    weights = np.zeros(features.shape[1])
    intercept = float(np.log((y.mean() + 1e-9) / (1 - y.mean() + 1e-9)))
    while active:
        beta = _newton(features[:, active], y, l2)
        health = -beta[1:]
        if (health >= 0).all():
            weights[:] = 0.0
            weights[active] = health
            intercept = float(beta[0])
            break
        del active[int(np.argmin(health))]
    else:
        beta = _newton(np.zeros((len(y), 0)), y, l2)
        intercept = float(beta[0])
    return Logistic(intercept, weights)


def normalised(weights: Matrix) -> dict[str, float]:
    """Health weights as component weights summing to 1 (rounded to 3 places)."""
    total = float(weights.sum())
    if total <= 0:
        return dict.fromkeys(COMPONENTS, round(1 / len(COMPONENTS), 3))
    shares = [round(float(w) / total, 3) for w in weights]
    shares[int(np.argmax(shares))] += round(1.0 - sum(shares), 3)  # sum exactly 1 after rounding
    return {name: round(share, 3) for name, share in zip(COMPONENTS, shares, strict=True)}


def split_months(month_starts: Sequence[int], holdout: float, horizon_ms: int) -> tuple[list[int], list[int]]:
    """(training, held-out) month starts: the later `holdout` share is held out, and training month
    starts whose label window reaches into the held-out range are dropped (no label leakage)."""
    ordered = sorted(month_starts)
    held = max(1, round(len(ordered) * holdout))
    test = ordered[len(ordered) - held :]
    train = [at for at in ordered[: len(ordered) - held] if at + horizon_ms <= test[0]]
    return train, test
