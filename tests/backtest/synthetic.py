"""Synthetic backtest data shared by the tests: samples, churn draws, and event lines for small replays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
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


def line(event_type: str, account: str, when: str, number: int, **fields: Any) -> bytes:
    return orjson.dumps(
        {"event_id": f"{account}-{number}", "event_type": event_type, "account_id": account,
         "occurred_at": when, **fields}
    )  # fmt: skip


def started(account: str) -> bytes:
    state = {"subscription_id": "s", "plan": "pro", "amount": "100", "currency": "USD", "interval": "month"}
    return line("subscription.started", account, "2024-01-01T00:00:00Z", 0, **state)


def canceled(account: str, when: str) -> bytes:
    return line("subscription.canceled", account, when, 1, subscription_id="s")


def used(account: str, when: str, count: int, number: int) -> bytes:
    return line("usage.recorded", account, when, number, user_id="u", feature="f", count=count)
