"""A small simulated portfolio scored by the core in process: engines, snapshots, alerts.

Its configuration carries a hand-written churn model, so paying accounts have a `churn_risk_60d`
and churned ones have none (lists sorted by it leave those out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson

from streamer.core.config import ScoreConfig
from streamer.offline.runner import OfflineRun
from streamer.sim.config import SimulationConfig
from streamer.sim.generate import generate_events


@dataclass
class Scored:
    run: OfflineRun
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # as published, in order
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, dict[str, Any]]:
        """The last published snapshot of each account."""
        return {snapshot["account_id"]: snapshot for snapshot in self.snapshots}


MODEL = {
    "version": "hand-written",
    "intercept": -1.0,
    "coefficients": {"payment_failures": -2.0, "nps": -1.5, "recency_days": -0.8},
    "means": {"payment_failures": 90.0, "nps": 60.0, "recency_days": 50.0},
    "missing": {"nps": 0.5},
}


@cache
def scored(accounts: int = 30, months: int = 3, seed: int = 5, partitions: int = 4) -> Scored:
    """Shared between tests: treat it as read-only."""
    config = SimulationConfig(accounts=accounts, months=months, seed=seed, usage_density=0.3)
    run = OfflineRun(ScoreConfig.model_validate({"model": MODEL}), partitions)
    result = Scored(run)
    run.feed(
        (orjson.dumps(event) for event in generate_events(config)),
        on_snapshot=result.snapshots.append,
        on_alert=result.alerts.append,
        on_dead_letter=lambda record: None,
    )
    return result
