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


ENGAGEMENT_SHOCK_PER_DAY = 1 / 220
"""Chance of an engagement shock on a day (a champion leaves, a workflow moves to another tool)."""
ENGAGEMENT_REVERSION = 0.02
"""Daily pull of engagement towards its baseline: a loss of engagement unfolds over two to three months."""
ENGAGEMENT_SLOW = 1 / 90
"""Weight of today in the three-month moving engagement a decline is measured from."""


@dataclass(slots=True)
class Engagement:
    """How much of its work an account does in the product: a slow latent, only partly tied to health.

    It sets the volume of use per active user, the share of valuable features in it and which
    users keep using the product at all; it drives churn beside health. Its declines are slow,
    so week-over-week ratios barely move while the volume falls month after month.
    """

    value: float
    baseline: float
    fit: float
    slow: float

    @classmethod
    def new(cls, health_fit: float, rng: Random) -> Engagement:
        fit = clamp(0.4 * health_fit + 0.6 * rng.betavariate(2.5, 2.0))
        value = clamp(fit + rng.gauss(0.0, 0.08))
        return cls(value=value, baseline=fit, fit=fit, slow=value)

    def restart(self, rng: Random) -> None:
        """A comeback customer starts out moderately engaged."""
        self.baseline = rng.uniform(0.45, 0.75)
        self.value = self.slow = self.baseline

    @property
    def decline(self) -> float:
        """How far engagement has fallen below its three-month average (0 when rising)."""
        return max(0.0, self.slow - self.value)

    def step(self, rng: Random) -> float:
        if rng.random() < ENGAGEMENT_SHOCK_PER_DAY:
            if rng.random() < 0.65:
                self.baseline -= rng.uniform(0.2, 0.5)
            else:
                self.baseline += rng.uniform(0.1, 0.3)
        self.baseline = clamp(self.baseline + (self.fit - self.baseline) / 240.0)
        noise = rng.gauss(0.0, 0.006)
        self.value = clamp(self.value + ENGAGEMENT_REVERSION * (self.baseline - self.value) + noise)
        self.slow += (self.value - self.slow) * ENGAGEMENT_SLOW
        return self.value
