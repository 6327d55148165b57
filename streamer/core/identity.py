"""Who an account is (its profile) and a person's override of its health, with expiry: the
records (how an override changes a score is `streamer.core.overrides`).

Both are "latest wins by event time": each keeps the (event time, event id) of the event that
set it, and an event replaces it only when its own pair is greater, so the result does not
depend on the order events arrive in. A cleared override is kept as a marker for the same
reason: an older override arriving after the clear must not bring it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamer.contract.vocabulary import Band


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
