"""A small simulated portfolio scored by the core in process: engines, snapshots, alerts."""

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


@cache
def scored(accounts: int = 30, months: int = 3, seed: int = 5, partitions: int = 4) -> Scored:
    """Shared between tests: treat it as read-only."""
    config = SimulationConfig(accounts=accounts, months=months, seed=seed, usage_density=0.3)
    run = OfflineRun(ScoreConfig(), partitions)
    result = Scored(run)
    run.feed(
        (orjson.dumps(event) for event in generate_events(config)),
        on_snapshot=result.snapshots.append,
        on_alert=result.alerts.append,
        on_dead_letter=lambda record: None,
    )
    return result
