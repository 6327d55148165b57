"""How a respondent scores NPS, CSAT and CES given the account's hidden health."""

from __future__ import annotations

from random import Random
from typing import Any

from streamer.sim.comments import bank_for

SCALES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
"""Valid score range of each survey (CES: 7 = least effort)."""


def _bounded(value: float, survey: str) -> int:
    low, high = SCALES[survey]
    return min(high, max(low, round(value)))


def nps_score(rng: Random, health: float) -> int:
    """Likelihood to recommend, 0-10: promoters come from healthy accounts."""
    return _bounded(rng.gauss(3.0 + 7.8 * health, 1.5), "nps")


def csat_score(rng: Random, health: float, contacts: int, reopened: bool) -> int:
    """Satisfaction with a support interaction, 1-5."""
    mean = 2.3 + 3.5 * health - 0.25 * (contacts - 1) - (0.5 if reopened else 0.0)
    return _bounded(rng.gauss(mean, 0.7), "csat")


def ces_score(rng: Random, health: float, contacts: int) -> int:
    """Customer effort, 1-7 with 7 = least effort."""
    return _bounded(rng.gauss(2.0 + 4.8 * health - 0.4 * (contacts - 1), 0.9), "ces")


def answer_fields(
    rng: Random, survey: str, score: int, respondent: str, context: str | None
) -> dict[str, Any]:
    """The fields of `survey.answered`, with a comment now and then."""
    fields: dict[str, Any] = {"survey": survey, "score": score, "respondent_id": respondent}
    low, high = SCALES[survey]
    sentiment = (score - low) / (high - low)
    if rng.random() < (0.45 if sentiment < 0.4 else 0.25):
        fields["comment"] = rng.choice(bank_for(sentiment))
    if context is not None and rng.random() < 0.9:
        fields["context"] = context
    return fields
