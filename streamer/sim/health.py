"""The hidden health of an account: a mean-reverting random walk with occasional shocks."""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

SHOCK_PER_DAY = 1 / 150
"""Chance of a shock on a given day (a champion leaves, an outage, a budget review...)."""
REVERSION = 0.035
"""Daily pull of health towards its baseline: a shock shows over one to two months."""
SMOOTHING = 1 / 14
"""Weight of today in the two-week moving health that drives decisions."""
SLOW_SMOOTHING = 1 / 60
"""Weight of today in the two-month moving health, the baseline a decline is measured from."""


def clamp(value: float, low: float = 0.02, high: float = 0.98) -> float:
    """`value` limited to [low, high]."""
    return low if value < low else high if value > high else value


@dataclass(slots=True)
class Health:
    """Today's health, the baseline it drifts to, the account's long-run fit, smoothed views."""

    value: float
    baseline: float
    fit: float
    smooth: float
    slow: float

    @classmethod
    def new(cls, fit: float, rng: Random) -> Health:
        """A starting health near the account's fit."""
        value = clamp(fit + rng.gauss(0.0, 0.05))
        return cls(value=value, baseline=fit, fit=fit, smooth=value, slow=value)

    def restart(self, rng: Random) -> None:
        """A fresh start after a reactivation: a moderate, hopeful health."""
        self.baseline = rng.uniform(0.55, 0.85)
        self.fit = max(self.fit, self.baseline)
        self.value = clamp(self.baseline - 0.05)
        self.smooth = self.slow = self.value

    @property
    def decline(self) -> float:
        """How far the two-week health has fallen below the two-month one (0 when rising)."""
        return max(0.0, self.slow - self.smooth)

    def step(self, rng: Random, volatile: bool) -> float:
        """Advance one day and return the new health; `volatile` during onboarding."""
        if rng.random() < SHOCK_PER_DAY:
            if rng.random() < 0.7:
                self.baseline -= rng.uniform(0.15, 0.4)
            else:
                self.baseline += rng.uniform(0.1, 0.25)
        self.baseline = clamp(self.baseline + (self.fit - self.baseline) / 120.0)
        noise = rng.gauss(0.0, 0.02 if volatile else 0.012)
        self.value = clamp(self.value + REVERSION * (self.baseline - self.value) + noise)
        self.smooth += (self.value - self.smooth) * SMOOTHING
        self.slow += (self.value - self.slow) * SLOW_SMOOTHING
        return self.value
