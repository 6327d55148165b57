"""Support tickets of one account: opened, resolved after a while, sometimes reopened."""

from __future__ import annotations

import math
from random import Random
from typing import Any

from streamer.core.support import PRIORITIES
from streamer.sim.catalog import CHANNELS, RESOLUTION_MEDIAN_HOURS
from streamer.sim.feedback import answer_fields, ces_score, csat_score
from streamer.sim.scheduler import Scheduler
from streamer.sim.times import DAY, HOUR

CHANNEL_NAMES = [name for name, _ in CHANNELS]
CHANNEL_WEIGHTS = [weight for _, weight in CHANNELS]


def _poisson(rng: Random, mean: float) -> int:
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


class SupportModel:
    """Opens tickets at a rate and severity that grow as health falls, and resolves them."""

    def __init__(self, account_id: str, tz_hours: int, rng: Random) -> None:
        self.account_id = account_id
        self.tz_hours = tz_hours
        self.rng = rng
        self._count = 0

    def day(
        self,
        later: Scheduler,
        day_ts: int,
        health: float,
        users: list[str],
        weekend: bool,
        onboarding: bool,
        window: tuple[int, int],
    ) -> None:
        """Open the day's tickets (inside `window`) and schedule what follows them."""
        rng = self.rng
        sickness = 1.0 - health
        rate = (0.01 + 0.07 * sickness * sickness) * (1.0 + 0.35 * math.log2(1 + len(users) / 5))
        rate *= (0.3 if weekend else 1.2) * (2.0 if onboarding else 1.0)
        for _ in range(_poisson(rng, rate)):
            local = rng.randrange(7 * HOUR, 20 * HOUR)
            opened = day_ts + (local - self.tz_hours * HOUR) % DAY
            if window[0] <= opened < window[1]:
                self._ticket(later, opened, health, rng.choice(users))

    def _ticket(self, later: Scheduler, opened: int, health: float, requester: str) -> None:
        rng = self.rng
        sickness = 1.0 - health
        self._count += 1
        ticket_id = f"{self.account_id}-t{self._count:04d}"
        urgent, high = 0.03 + 0.12 * sickness, 0.12 + 0.18 * sickness
        low = 0.05 + 0.25 * health
        priority = rng.choices(PRIORITIES, weights=[low, 1.0 - low - high - urgent, high, urgent])[0]
        fields: dict[str, Any] = {"ticket_id": ticket_id, "priority": priority}
        if rng.random() < 0.85:
            fields["channel"] = rng.choices(CHANNEL_NAMES, weights=CHANNEL_WEIGHTS)[0]
        later.add(opened, "ticket.opened", fields)
        resolved = opened + self._duration(priority, sickness)
        contacts = self._contacts(health)
        later.add(resolved, "ticket.resolved", {"ticket_id": ticket_id, "contacts": contacts})
        reopened = rng.random() < 0.05 + 0.15 * sickness
        if reopened:
            again = resolved + rng.randrange(HOUR, 5 * DAY)
            later.add(again, "ticket.reopened", {"ticket_id": ticket_id})
            resolved = again + self._duration(priority, sickness) // 2
            contacts = self._contacts(health)
            later.add(resolved, "ticket.resolved", {"ticket_id": ticket_id, "contacts": contacts})
        if rng.random() < 0.3:
            score = csat_score(rng, health, contacts, reopened)
            answer = answer_fields(rng, "csat", score, requester, "support")
            later.add(resolved + rng.randrange(600, DAY), "survey.answered", answer)
        elif rng.random() < 0.2:
            score = ces_score(rng, health, contacts)
            answer = answer_fields(rng, "ces", score, requester, "support")
            later.add(resolved + rng.randrange(600, DAY), "survey.answered", answer)

    def _duration(self, priority: str, sickness: float) -> int:
        hours = RESOLUTION_MEDIAN_HOURS[priority] * math.exp(self.rng.gauss(0.0, 0.8))
        return max(300, int(hours * (1.0 + 0.8 * sickness) * HOUR))

    def _contacts(self, health: float) -> int:
        if self.rng.random() < 0.45 + 0.35 * health:
            return 1
        return 2 + int(self.rng.expovariate(1.0))
