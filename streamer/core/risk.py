"""Calibrated churn risk: the configured churn model applied to one evaluation's signals (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from streamer.core.config import RiskModel

LOGIT_LIMIT = 40.0  # keeps exp() finite; a probability that close to 0 or 1 rounds the same
VOLUME_DAYS: Final = 28  # the window of the per-feature volumes a model reads
NO_VOLUMES: Mapping[str, int] = {}


def volume_term(volumes: Mapping[str, int], model: RiskModel) -> float:
    """The per-feature volumes' part of the log-odds: coefficient x ln(1 + events over 28 days)."""
    z = 0.0
    for feature, coefficient in model.feature_volumes.items():
        z += coefficient * math.log1p(volumes.get(feature, 0))
    return z


def churn_log_odds(
    signals: Mapping[str, tuple[float, float]],
    model: RiskModel,
    volumes: Mapping[str, int] = NO_VOLUMES,
    score: float | None = None,
) -> float:
    """The model's log-odds of churn from `signals` (name -> (raw value, 0-100 sub-score)),
    `volumes` (product feature -> the account's events of it over the last `VOLUME_DAYS` days) and
    `score` (the health score as computed, which a model with a `score` coefficient needs).

    A signal the model knows but the evaluation lacks takes the training mean sub-score and its
    missing-data coefficient; signals the model does not know are ignored. A feature the model
    knows and the account did not use counts 0 events.
    """
    z = model.intercept + volume_term(volumes, model)
    if model.score:
        if score is None:
            raise ValueError(f"model {model.version!r} reads the health score: pass it")
        z += model.score * score / 100.0
    for name, coefficient in model.coefficients.items():
        found = signals.get(name)
        if found is None:
            z += coefficient * model.means[name] / 100.0 + model.missing.get(name, 0.0)
        else:
            z += coefficient * found[1] / 100.0
    return z


def churn_probability(
    signals: Mapping[str, tuple[float, float]],
    model: RiskModel,
    volumes: Mapping[str, int] = NO_VOLUMES,
    score: float | None = None,
) -> float:
    """P(churn within the model's horizon), unrounded."""
    z = min(LOGIT_LIMIT, max(-LOGIT_LIMIT, churn_log_odds(signals, model, volumes, score)))
    return 1.0 / (1.0 + math.exp(-z))


def churn_risk(
    signals: Mapping[str, tuple[float, float]],
    model: RiskModel | None,
    volumes: Mapping[str, int] = NO_VOLUMES,
    score: float | None = None,
) -> float | None:
    """The published `churn_risk_60d`: the probability rounded to 4 places, None without a model."""
    if model is None:
        return None
    return round(churn_probability(signals, model, volumes, score), 4)
