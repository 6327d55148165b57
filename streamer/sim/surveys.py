"""Relationship surveys of one account: quarterly NPS and an onboarding effort survey."""

from __future__ import annotations

from random import Random

from streamer.sim.feedback import answer_fields, ces_score, nps_score
from streamer.sim.scheduler import Scheduler
from streamer.sim.times import DAY, HOUR

NPS_EVERY_DAYS = 91
ONBOARDING_SURVEY_DAY = 30


class SurveyModel:
    """Sends the account's surveys and schedules the answers of those who respond."""

    def __init__(self, tz_hours: int, rng: Random) -> None:
        self.tz_hours = tz_hours
        self.rng = rng
        self.nps_offset = rng.randrange(NPS_EVERY_DAYS)

    def day(
        self,
        later: Scheduler,
        day: int,
        day_ts: int,
        health: float,
        users: list[str],
        since_start: int,
    ) -> None:
        """Send today's surveys, if any, and schedule the answers."""
        rng = self.rng
        if day % NPS_EVERY_DAYS == self.nps_offset:
            for user in rng.sample(users, min(len(users), 8)):
                if rng.random() < 0.3:
                    answer = answer_fields(rng, "nps", nps_score(rng, health), user, "product")
                    later.add(self._reply_time(day_ts), "survey.answered", answer)
        if since_start == ONBOARDING_SURVEY_DAY:
            for user in rng.sample(users, min(len(users), 3)):
                if rng.random() < 0.5:
                    score = ces_score(rng, health, 1)
                    answer = answer_fields(rng, "ces", score, user, "onboarding")
                    later.add(self._reply_time(day_ts), "survey.answered", answer)

    def _reply_time(self, day_ts: int) -> int:
        """Someone answers within a week, during their waking hours."""
        local = self.rng.randrange(8 * HOUR, 22 * HOUR)
        return day_ts + self.rng.randrange(0, 7) * DAY + (local - self.tz_hours * HOUR) % DAY
