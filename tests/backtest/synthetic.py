"""Synthetic backtest data shared by the learning and tuning tests: samples and churn draws."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from streamer.backtest.sampling import Sample
from streamer.contract.vocabulary import Band, LifecycleStage


def churn_draws(rng: np.random.Generator, logit: NDArray[np.float64]) -> NDArray[np.bool_]:
    """One churn label per row, drawn with probability 1 / (1 + e^-logit)."""
    return rng.uniform(size=len(logit)) < 1 / (1 + np.exp(-logit))


def sample(
    components: tuple[float | None, ...] = (None,) * 4,
    *,
    account_id: str = "acct",
    at: int = 0,
    score: float = 0.0,
    stage: LifecycleStage = LifecycleStage.adopted,
    mrr: int = 1_000_000,
    signals: Mapping[str, float] | None = None,
    volumes: Mapping[str, int] | None = None,
) -> Sample:
    """A green sample without a plan; only what a test varies needs naming."""
    return Sample(
        account_id, at, score, Band.green, stage, None, components, mrr, signals or {}, volumes or {}
    )
