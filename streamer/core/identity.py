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
from streamer.core.clock import DAY, bucket_of

# (event time, event id, segment) of a profile version other than the latest, kept while a peer
# reference may still ask for the segment at an instant before the latest one (`segment_at`).
Version = tuple[int, str, str | None]


@dataclass(slots=True)
class Profile:
    """The latest `account.updated` (the whole profile: a field it left out is cleared).

    `earlier`: the segments of other versions a peer reference may still read (grouped by
    segment, it places an account in the segment it had at the reference's instant, a week and
    more back; see `with_version`), oldest first. Empty for most accounts."""

    at: int
    event_id: str
    name: str | None = None
    owner: str | None = None
    segment: str | None = None
    tier: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    earlier: list[Version] = field(default_factory=list)

    def segment_at(self, instant: int) -> str | None:
        """The segment of the latest version dated at or before `instant` (None: none was)."""
        if self.at <= instant:
            return self.segment
        found: str | None = None
        for at, _, segment in self.earlier:
            if at > instant:
                break
            found = segment
        return found


def with_version(current: Profile | None, version: Profile, span: int) -> Profile:
    """The profile after an `account.updated` (`version`, its `earlier` empty): the latest by
    (event time, event id) wins, whatever the arrival order, and the segments of the others are
    kept in `earlier` as far as `segment_at` can still be asked about them.

    References ask at midnights (a day bucket's closing instant), so within a day bucket only
    the latest version matters; and never more than `span` before the latest version (the
    caller's bound: the allowed lateness and the peer grid, behind an event time the partition
    has seen), so of the versions dated at or before that horizon only the latest matters. Both
    rules drop versions, never a needed one: `earlier` holds at most one version per day bucket
    within the span, plus one. The horizon (a midnight) moves only with the latest version, so
    the result is the same set for every arrival order (a version dropped on the way would be
    dropped at the end too).
    """
    versions: list[Version] = [(version.at, version.event_id, version.segment)]
    if current is not None:
        versions += [*current.earlier, (current.at, current.event_id, current.segment)]
    latest = current if current is not None and not newer(version.at, version.event_id, current) else version
    # the first midnight a reference may ask at: aligned with the day buckets, so that the
    # versions dropped on the way are those dropped at the end, in any arrival order
    horizon = -(-(latest.at - span) // DAY) * DAY
    versions.sort(key=lambda item: (item[0], item[1]))  # the segment never decides (None or text)
    kept: dict[int, Version] = {}  # day bucket -> its latest version
    for item in versions:
        kept[bucket_of(item[0])] = item
    ordered = list(kept.values())
    before = [i for i, item in enumerate(ordered) if item[0] <= horizon]
    if before:
        ordered = ordered[before[-1] :]
    earlier = [item for item in ordered if (item[0], item[1]) != (latest.at, latest.event_id)]
    return Profile(
        latest.at,
        latest.event_id,
        latest.name,
        latest.owner,
        latest.segment,
        latest.tier,
        latest.attributes,
        earlier,
    )


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
