"""Deterministic simulator of a SaaS customer portfolio that emits contract events.

`generate_events(config)` yields the events in event-time order, `generate_truth(config)` the
hidden health and churns behind them, `write_simulation` writes both to files.
"""

from streamer.sim.config import SimulationConfig
from streamer.sim.dirty import DIRTY_KINDS, DirtyMixer, DirtyRecord
from streamer.sim.generate import generate_events
from streamer.sim.portfolio import AccountModel, build_portfolio
from streamer.sim.truth import generate_truth
from streamer.sim.writer import WriteReport, truth_path_for, write_simulation

__all__ = [
    "DIRTY_KINDS",
    "AccountModel",
    "DirtyMixer",
    "DirtyRecord",
    "SimulationConfig",
    "WriteReport",
    "build_portfolio",
    "generate_events",
    "generate_truth",
    "truth_path_for",
    "write_simulation",
]
