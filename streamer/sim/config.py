"""The simulation's parameters, validated once and shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from streamer.sim.times import DAY, add_months, epoch

MAX_ACCOUNTS = 1_000_000
# LAST_START: the first day no consumer takes an event of (core.intake.LATEST_EVENT_MS); a run
# ends by it, so the latest start is that many months before it.
FIRST_START, LAST_START = date(1990, 1, 1), date(9000, 1, 1)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate; the same config always produces the same events."""

    accounts: int = 100
    """Accounts in the portfolio over the whole run (existing at the start plus joiners)."""
    months: int = 12
    """Length of the simulated period in calendar months."""
    seed: int = 1
    start: date = date(2024, 1, 1)
    """First simulated day (00:00 UTC); billing history of existing accounts precedes it."""
    usage_density: float = 1.0
    """Scales usage volume: the share of users active on a day and features per user-day."""
    initial_share: float = 0.65
    """Share of the accounts that are already customers when the simulation starts."""
    history_months: int = 36
    """Existing accounts became customers up to this many months before the start."""
    churn_scale: float = 1.0
    """Multiplies the voluntary-churn hazard (1.0 gives roughly 15-25 % logo churn a year)."""
    dirty_rate: float = 0.0
    """Fraction of extra malformed or hostile records mixed into a written stream."""

    def __post_init__(self) -> None:
        checks = (
            # the portfolio is built in memory before the first line is written
            (
                1 <= self.accounts <= MAX_ACCOUNTS,
                f"accounts must be 1..{MAX_ACCOUNTS:,}, got {self.accounts}",
            ),
            (1 <= self.months <= 120, f"months must be 1..120, got {self.months}"),
            (0 <= self.seed < 2**64, f"seed must be 0..2^64-1, got {self.seed}"),
            # years of four digits, before and after the billing history (--start 0001-01-01 wrote
            # "1-01-22T16:05:22Z", which no consumer reads; 9999-12-01 ran into year 10000)
            (
                FIRST_START <= self.start <= LAST_START,
                f"start must be {FIRST_START} .. {LAST_START}, got {self.start}",
            ),
            # every consumer refuses event times from LAST_START on: the run must end by then
            (
                not FIRST_START <= self.start <= LAST_START or self.end_ts <= epoch(LAST_START),
                f"start {self.start} + {self.months} months runs past {LAST_START}, from which every "
                f"consumer refuses event times: start on or before {self.latest_start()}, or simulate "
                "fewer months",
            ),
            (
                0.0 < self.usage_density <= 10.0,
                f"usage_density must be in (0, 10], got {self.usage_density}",
            ),
            (
                0.0 <= self.initial_share <= 1.0,
                f"initial_share must be in [0, 1], got {self.initial_share}",
            ),
            (
                1 <= self.history_months <= 240,
                f"history_months must be 1..240, got {self.history_months}",
            ),
            (
                0.0 <= self.churn_scale <= 20.0,
                f"churn_scale must be in [0, 20], got {self.churn_scale}",
            ),
            (
                0.0 <= self.dirty_rate <= 0.5,
                f"dirty_rate must be in [0, 0.5], got {self.dirty_rate}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def latest_start(self) -> date:
        """The latest start whose `months` end by `LAST_START`: the first of the month that many
        months before it (a later day of that month ends in LAST_START's month, past its first)."""
        index = LAST_START.year * 12 + LAST_START.month - 1 - self.months
        return date(index // 12, index % 12 + 1, 1)

    @property
    def start_ts(self) -> int:
        """Epoch seconds of the first simulated instant."""
        return epoch(self.start)

    @property
    def end_ts(self) -> int:
        """Epoch seconds of the end (exclusive) of the simulated period."""
        return add_months(self.start_ts, self.months)

    @property
    def days(self) -> int:
        """Number of simulated UTC days."""
        return (self.end_ts - self.start_ts) // DAY
