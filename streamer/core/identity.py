"""Who an account is (its profile) and a person's override of its health, with expiry.

Both are "latest wins by event time": each keeps the (event time, event id) of the event that
set it, and an event replaces it only when its own pair is greater, so the result does not
depend on the order events arrive in. A cleared override is kept as a marker for the same
reason: an older override arriving after the clear must not bring it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from streamer.core.clock import iso
from streamer.core.config import ScoreConfig
from streamer.core.score import Evaluation
from streamer.core.vocabulary import Band


@dataclass(slots=True)
class Profile:
    """The latest `account.updated` (the whole profile: a field it left out is cleared)."""

    at: int
    event_id: str
    name: str | None = None
    owner: str | None = None
    segment: str | None = None
    tier: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Override:
    """The latest `health.override` or `health.override_cleared` (then `cleared`)."""

    at: int
    event_id: str
    author: str
    reason: str | None
    band: Band | None = None
    score: float | None = None
    expires_at: int = 0
    cleared: bool = False

    def active_at(self, now: int) -> bool:
        """In force at event time `now`: set, not cleared, from its event time until expiry."""
        return not self.cleared and self.at <= now < self.expires_at


@dataclass(frozen=True, slots=True)
class Applied:
    """An override in force at an evaluation, with what the model said without it."""

    override: Override
    computed_score: float
    computed_band: Band


def newer(at: int, event_id: str, current: Profile | Override | None) -> bool:
    """Whether an event at (`at`, `event_id`) replaces `current` (latest event time wins, then the
    greater event id: any arrival order gives the same result)."""
    return current is None or (at, event_id) > (current.at, current.event_id)


def apply_override(evaluation: Evaluation, override: Override | None, config: ScoreConfig) -> Evaluation:
    """The evaluation as published: the override's score and band while it is active.

    A score override takes the band its score falls in (the account's stage and plan thresholds);
    a band override moves the model's score to the nearest edge of that band's range (so lists
    sorted by score agree with the band).
    """
    if override is None or not override.active_at(evaluation.now):
        return evaluation
    _, bands = config.segment(evaluation.stage, evaluation.plan)
    if override.score is not None:
        score = round(override.score, 1)
        band = bands.band(score)
    else:
        band = override.band or evaluation.band
        score = evaluation.score
        if band == Band.green:
            score = max(score, bands.green)
        elif band == Band.yellow:
            score = min(max(score, bands.yellow), _below(bands.green))
        else:
            score = min(score, _below(bands.yellow))
        score = round(score, 1)
    applied = Applied(override, evaluation.score, evaluation.band)
    return replace(evaluation, score=score, band=band, override=applied)


def _below(threshold: float) -> float:
    """The highest published score (one decimal) under `threshold`, at least 0."""
    return max(0.0, round(threshold - 0.1, 1))


def override_reason(applied: Applied) -> dict[str, float | str | None]:
    """The override as the first reason: what, who, why, until when, and what the model says."""
    override = applied.override
    target = override.band if override.score is None else f"{override.score:g}"
    return {
        "signal": "override",
        "value": target,
        "baseline": applied.computed_score,
        "message": (
            f"overridden to {target} by {override.author}: {override.reason!r}, until "
            f"{iso(override.expires_at)[:10]} (the model says {applied.computed_score:g}, "
            f"{applied.computed_band})"
        ),
    }


def profile_record(profile: Profile | None) -> dict[str, Any] | None:
    """The `profile` of snapshots and alerts."""
    if profile is None:
        return None
    return {
        "name": profile.name,
        "owner": profile.owner,
        "segment": profile.segment,
        "tier": profile.tier,
        "attributes": dict(profile.attributes),
    }


def override_record(applied: Applied | None) -> dict[str, Any] | None:
    """The `override` of a snapshot (null when none is active)."""
    if applied is None:
        return None
    override = applied.override
    return {
        "band": override.band,
        "score": override.score,
        "reason": override.reason or "",
        "author": override.author,
        "set_at": iso(override.at),
        "expires_at": iso(override.expires_at),
        "computed_score": applied.computed_score,
        "computed_band": applied.computed_band,
    }
