"""Product usage of one account: its users, the features they adopt and daily activity."""

from __future__ import annotations

from bisect import bisect
from itertools import accumulate
from math import log
from random import Random
from typing import Any

from streamer.sim.catalog import FEATURES
from streamer.sim.times import MINUTE_OF_DAY

Event = dict[str, Any]
Timed = tuple[int, Event]

FEATURE_COUNT_MEAN = {name: mean for name, _, mean in FEATURES}
BASE_ACTIVITY = 0.8
"""Scales every user's daily chance of activity (an average user at health 0.7: about 0.3)."""
WEEKEND_FACTOR = 0.12
CANCELING_FACTOR = 0.5
JITTER_SIZE = 1024
"""Pre-drawn normal offsets (minutes) around a peak hour, shared by an account's users."""
HABITS = 16
"""Each user's usual times of day (UTC), drawn once around their peak hour."""
VALUABLE = frozenset({"api", "automation", "integrations", "reports", "alerts"})
"""Features that do a customer's work; a disengaging account keeps to the shallow ones."""
SHALLOW = "dashboards"


class UsageModel:
    """The users of one account and their habits; emits one `usage.recorded` per user-feature-day."""

    def __init__(self, account_id: str, tz_hours: int, rng: Random, density: float) -> None:
        self.account_id = account_id
        self.tz_minutes = tz_hours * 60
        self.rng = rng
        self.activity_scale = BASE_ACTIVITY * density**0.5
        self.feature_scale = density
        self.coverage = rng.uniform(0.6, 1.0)
        self.adoption = rng.uniform(0.6, 1.1)
        keyed = sorted(FEATURES, key=lambda f: -(rng.random() ** (1.0 / f[1])))
        self.features = [name for name, _, _ in keyed]
        self.cum_weights = [list(accumulate(w for _, w, _ in keyed[:n])) for n in range(1, 13)]
        self.user_ids: list[str] = []
        self.propensity: list[float] = []
        self.commitment: list[float] = []  # a user stops using the product below this engagement
        self.habits: list[list[tuple[int, str]]] = []
        self.jitter = [int(rng.gauss(0.0, 120.0)) for _ in range(JITTER_SIZE)]

    def users(self, seats: int) -> int:
        """How many users hold a licence for `seats` seats, growing the pool when needed."""
        wanted = max(1, round(seats * self.coverage))
        while len(self.user_ids) < wanted:
            n = len(self.user_ids) + 1
            self.user_ids.append(f"{self.account_id}-u{n:04d}")
            self.propensity.append(min(0.95, 1.2 * self.rng.betavariate(1.5, 2.0)))
            self.commitment.append(0.5 * self.rng.random() ** 1.5)
            self.habits.append(self._habits(self.rng.randrange(570, 960)))
        return wanted

    def _habits(self, peak: int) -> list[tuple[int, str]]:
        """(seconds into the UTC day, `HH:MM:00Z`) of a user's usual moments of use."""
        moments = []
        for _ in range(HABITS):
            local = peak + self.jitter[self.rng.randrange(JITTER_SIZE)]
            local = min(1430, max(300, local))
            minute = (local - self.tz_minutes) % 1440
            moments.append((minute * 60, MINUTE_OF_DAY[minute]))
        return moments

    def breadth(self, health: float, ramp: float, engagement: float = 0.6) -> int:
        """Distinct features the account uses at this health, engagement and onboarding progress."""
        return max(1, min(12, round(1 + 11 * (0.4 * health + 0.6 * engagement) * self.adoption * ramp)))

    def day(
        self,
        out: list[Timed],
        day_ts: int,
        prefix: str,
        health: float,
        seats: int,
        weekend: bool,
        ramp: float,
        canceling: bool,
        engagement: float = 0.6,
    ) -> None:
        """Append the day's usage records of every active user to `out`.

        Health sets how often users show up; engagement sets what they do once there: how many
        features and uses per user-day, how much of it is valuable work, and whether a user
        keeps using the product at all.
        """
        random = self.rng.random
        level = health**1.3 * ramp * self.activity_scale
        if weekend:
            level *= WEEKEND_FACTOR
        if canceling:
            level *= CANCELING_FACTOR
        breadth = self.breadth(health, ramp, engagement)
        features = self.features[:breadth]
        cum_weights = self.cum_weights[breadth - 1]
        total = cum_weights[-1]
        extra_mean = max(0.05, (0.15 + 1.5 * engagement) * self.feature_scale)
        intensity = 0.3 + 1.4 * engagement
        keeps_valuable = 0.25 + 0.75 * engagement
        account_id = self.account_id
        users = self.users(seats)
        user_ids, habits = self.user_ids, self.habits
        commitment = self.commitment
        for i, propensity in enumerate(self.propensity[:users]):
            if engagement < commitment[i] or random() >= propensity * level:
                continue
            chosen = [features[bisect(cum_weights, random() * total)]]
            for _ in range(int(-log(1.0 - random()) * extra_mean)):
                feature = features[bisect(cum_weights, random() * total)]
                if feature not in chosen:
                    chosen.append(feature)
            chosen = [
                SHALLOW if feature in VALUABLE and random() >= keeps_valuable else feature
                for feature in chosen
            ]
            chosen = list(dict.fromkeys(chosen))
            if canceling and "export" not in chosen and random() < 0.3:
                chosen.append("export")
            user_id, moments = user_ids[i], habits[i]
            for feature in chosen:
                offset, clock = moments[int(random() * HABITS)]
                mean = FEATURE_COUNT_MEAN[feature] * intensity
                event: Event = {
                    "event_id": "",
                    "event_type": "usage.recorded",
                    "account_id": account_id,
                    "occurred_at": prefix + clock,
                    "user_id": user_id,
                    "feature": feature,
                    "count": 1 + int(-log(1.0 - random()) * mean),
                }
                out.append((day_ts + offset, event))
