"""Peer references: where an account's usage stands among the paying accounts like it.

A partition refreshes its reference at the midnight ticks of a grid (event time; every midnight
by default, or e.g. the first midnight of each ISO week: `peers.refresh_days`) from usage windows that
END `allowed_lateness + 1 day` before the tick, over the accounts paying at that instant as the
events recorded by then describe them (`membership_instant`, `Revenue.known_at`). No event still
admissible after the tick can touch those windows, nor what was known then (a cancellation
recorded later and dated back is not), so the reference does not depend on the order events
arrived in, and the worker re-derives it from its accounts on recovery exactly as it was. A
reference keeps at most `QUANTILES` values per (peer group, signal): memory and the cost of a
percentile lookup do not grow with the portfolio.

The reference also ranks a composite, `usage_28d`: the weighted mean of an account's
percentiles of the volume signals (`[peers.composite]`), placed in turn among the same peers'
composites. Averaging percentiles bunches them near 50 (the spread of a mean shrinks with the
signals averaged); ranking the mean again spreads it evenly over 0-100, so "bottom 10% of
peers" means the same in any portfolio (the bands read it, see `streamer.core.config.Bands`).

The mix of use, `feature_mix_28d`: each feature's events over 28 days are ranked among the
peers' (every paying account of the group counts, 0 for one that did not use it; a feature
nobody in the group used is left out), and the account's percentiles are averaged
geometrically (each taken as a share plus `MIX_FLOOR`, so a feature left unused counts but does
not zero the mean). The geometric mean rewards all-round use: a feature the peers use and the
account barely does pulls it down more than one used heavily lifts it. It is placed in turn
among the peers' mixes like every other peer signal and counts in the composite (on the
ChurnSim portfolios it ranked 60-day churn above the event count: docs/backtest-rounds.md).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from math import exp, log

from streamer.core.clock import DAY, bucket_of
from streamer.core.identity import Profile
from streamer.core.revenue import Revenue, renews_beyond
from streamer.core.usage import Usage, Volume

QUANTILES = 101  # values kept per (group, signal): the 0th..100th percentiles
ALL = "*"  # the group of every paying account of the partition
WINDOW_DAYS = 28
COMPOSITE = "usage_28d"  # the volume signals' mean percentile, ranked again among peers
MIX = "feature_mix_28d"  # geometric mean of the per-feature percentiles (the mix of use)
FEATURE = "feature:"  # reference key prefix of one feature's events over 28 days
MIX_FLOOR = 0.01  # added to each percentile share in the geometric mean (1 percentile point)
# Features a group's reference keeps: those the most members used. Bounds the partition's stored
# references and the mix's cost per evaluation, whatever event names the producers invent.
MAX_FEATURES = 64

# Signals whose value is a position among peers (their peer value comes from `peer_values`).
PEER_SIGNALS = (
    "events_28d",
    "active_days_28d",
    "user_days_28d",
    "events_per_seat_28d",
    "events_per_user_day_28d",
    MIX,
)


def peer_values(usage: Usage, seats: int | None, end: int, volume: Volume | None = None) -> dict[str, float]:
    """The peer signals of one account over the 28 days ending with day `end`.

    The same definition serves the reference (a past window) and the account's own evaluation
    (the window ending today), so an account is compared like with like. Counts are not scaled
    for an account younger than 28 days: little use in the first weeks is itself a risk (on the
    portfolios measured, scaling young accounts up made the ranking worse).

    `volume`: `usage.volume(end, WINDOW_DAYS)` when the caller has it already.
    """
    if volume is None:
        volume = usage.volume(end, WINDOW_DAYS)
    values: dict[str, float] = {
        "events_28d": volume.events,
        "active_days_28d": volume.active_days,
        "user_days_28d": volume.user_days,
    }
    if seats:
        values["events_per_seat_28d"] = volume.events / seats
    if volume.user_days:
        values["events_per_user_day_28d"] = volume.events / volume.user_days
    return values


def feature_mix(
    counts: dict[str, int],
    groups: dict[tuple[str, str], tuple[float, ...]],
    group: str,
    features: tuple[str, ...],
    ranks: Ranks | None = None,
) -> float | None:
    """Geometric mean 0-100 of an account's percentiles among `group` of its events per feature
    (`features`: those the group used; a feature the account did not use counts as 0 events).
    None when the group used no feature. `ranks`: percentiles remembered for `groups`."""
    if not features:
        return None
    total = 0.0
    if ranks is None:
        for name in features:
            total += _mix_term(percentile(counts.get(name, 0), groups[group, FEATURE + name]))
    else:
        for name, reference, terms in ranks.features_of(group, features, groups):
            value = counts.get(name, 0)
            term = terms.get(value)
            if term is None:
                term = _mix_term(percentile(value, reference))
                if len(terms) < RANKS_KEPT:
                    terms[value] = term
            total += term
    return 100.0 * (exp(total / len(features)) - MIX_FLOOR)


def _mix_term(position: float) -> float:
    """One feature's share of the mix's geometric mean (a log)."""
    return log(position / 100.0 + MIX_FLOOR)


def summarise(values: list[float]) -> tuple[float, ...]:
    """The sorted values, or their `QUANTILES` evenly spaced order statistics when more."""
    values.sort()
    count = len(values)
    if count <= QUANTILES:
        return tuple(values)
    return tuple(values[round(i * (count - 1) / (QUANTILES - 1))] for i in range(QUANTILES))


def percentile(value: float, reference: tuple[float, ...]) -> float:
    """Mid-rank percentile 0-100 of `value` within a sorted reference (ties count half).

    Below every peer gives 0, above every peer 100, equal to all of them 50.
    """
    below = bisect_left(reference, value)
    equal = bisect_right(reference, value, lo=below) - below
    return 100.0 * (below + 0.5 * equal) / len(reference)


# One feature of a group: its name, its reference, and the `feature_mix` terms placed against it.
FeatureRank = tuple[str, tuple[float, ...], dict[float, float]]

RANKS_KEPT = 512  # values remembered per (group, signal) of one reference, at most


class Ranks:
    """Percentiles already placed against the references of one refresh, per (group, signal)
    and value: the accounts of a partition scored against the same reference share most of
    their counts (0 events of a feature, 3 active days), so each is placed once. The answer is
    `percentile`'s (a value and its float compare alike); at most `RANKS_KEPT` values a key."""

    __slots__ = ("features", "found", "resolved")

    def __init__(self) -> None:
        self.found: dict[tuple[str, str], dict[float, float]] = {}
        # group -> (its features, per feature (name, reference, value -> `feature_mix` term))
        self.features: dict[str, tuple[tuple[str, ...], list[FeatureRank]]] = {}
        # (min_peers, group) -> signal -> what `PeerReference.resolve` found
        self.resolved: dict[tuple[int, str | None], dict[str, Resolved | None]] = {}

    def features_of(
        self, group: str, features: tuple[str, ...], groups: dict[tuple[str, str], tuple[float, ...]]
    ) -> list[FeatureRank]:
        """Per feature of `group` (`features`, in order): its name, its reference in `groups`
        and the `feature_mix` terms placed against it so far."""
        found = self.features.get(group)
        if found is None or found[0] is not features:
            ranked: list[FeatureRank] = [(name, groups[group, FEATURE + name], {}) for name in features]
            found = self.features[group] = (features, ranked)
        return found[1]

    def memo(self, key: tuple[str, str]) -> dict[float, float]:
        """The percentiles placed against the reference `key` so far (value -> percentile)."""
        memo = self.found.get(key)
        if memo is None:
            memo = self.found[key] = {}
        return memo

    def of(self, key: tuple[str, str], value: float, reference: tuple[float, ...]) -> float:
        """`percentile(value, reference)`, where `reference` is the references' `key`."""
        return place(self.memo(key), value, reference)


def place(memo: dict[float, float], value: float, reference: tuple[float, ...]) -> float:
    """`percentile(value, reference)`, remembered in `memo` (at most `RANKS_KEPT` values)."""
    position = memo.get(value)
    if position is None:
        position = percentile(value, reference)
        if len(memo) < RANKS_KEPT:
            memo[value] = position
    return position


@dataclass(slots=True, frozen=True)
class Resolved:
    """Where one account's signal is placed: the group used, its reference and the percentiles
    placed against it so far (`PeerReference.resolve`)."""

    group: str
    reference: tuple[float, ...]
    memo: dict[float, float]
    shown: dict[float, float]  # percentile -> to one decimal, as published (see `show`)

    # Written out: mypyc compiles this one, not the interpreted one @dataclass would generate.
    def __init__(self, group: str, reference: tuple[float, ...], memo: dict[float, float]) -> None:
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "reference", reference)
        object.__setattr__(self, "memo", memo)
        object.__setattr__(self, "shown", {})

    def position(self, value: float) -> float:
        """`percentile(value, reference)`, remembered with the others placed against it."""
        return place(self.memo, value, self.reference)

    def show(self, position: float) -> float:
        """`round(position, 1)` for a percentile placed against `reference`, remembered: it takes
        at most 2n + 1 values against n peers, and rounding to a decimal is not cheap."""
        shown = self.shown.get(position)
        if shown is None:
            shown = round(position, 1)
            if len(self.shown) <= 2 * len(self.reference):
                self.shown[position] = shown
        return shown


@dataclass(slots=True, frozen=True)
class PeerReference:
    """One refresh: per (group, signal) the summarised values of the paying accounts."""

    tick: int  # the midnight it was refreshed at
    window_end: int  # the last day bucket of the windows it was built from
    groups: dict[tuple[str, str], tuple[float, ...]]
    sizes: dict[str, int]  # group -> paying accounts in it
    committed: dict[str, int] = field(default_factory=dict)  # group -> of those, committed beyond the window
    # group -> the features its members used (derived from `groups`, not stored)
    features: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)
    # percentiles placed against `groups` so far (derived, not stored)
    ranks: Ranks = field(default_factory=Ranks, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.features:
            found: dict[str, list[str]] = {}
            for group, signal in self.groups:
                if signal.startswith(FEATURE):
                    found.setdefault(group, []).append(signal[len(FEATURE) :])
            object.__setattr__(
                self, "features", {group: tuple(sorted(names)) for group, names in found.items()}
            )

    def committed_share(self, group: str) -> float:
        """Percent of the group's paying accounts whose term ran beyond the renewal window."""
        size = self.sizes.get(group, 0)
        return 100.0 * self.committed.get(group, 0) / size if size else 0.0

    def resolve(self, group: str | None, signal: str, min_peers: int) -> Resolved | None:
        """`lookup`'s answer with the percentiles placed against it, found once per reference."""
        by_signal = self.ranks.resolved.get((min_peers, group))
        if by_signal is None:
            by_signal = self.ranks.resolved[min_peers, group] = {}
        if signal in by_signal:
            return by_signal[signal]
        found = self.lookup(group, signal, min_peers)
        resolved = by_signal[signal] = (
            None if found is None else Resolved(found[0], found[1], self.ranks.memo((found[0], signal)))
        )
        return resolved

    def lookup(self, group: str | None, signal: str, min_peers: int) -> tuple[str, tuple[float, ...]] | None:
        """(group used, reference) for a signal: the account's group if it has `min_peers`,
        else every paying account of the partition if they are that many; None otherwise."""
        for candidate in (group, ALL):
            if candidate is not None and self.sizes.get(candidate, 0) >= min_peers:
                found = self.groups.get((candidate, signal))
                if found:
                    return candidate, found
        return None


def composite(
    values: dict[str, float],
    groups: dict[tuple[str, str], tuple[float, ...]],
    group: str,
    weights: dict[str, float],
    higher_is_healthier: dict[str, bool],
    ranks: Ranks | None = None,
) -> float | None:
    """Weighted mean 0-100 of an account's percentiles among `group` for the signals in
    `weights` that it has a value and the group a reference for (None when there is none).

    The same function serves the reference (each peer against its group) and the evaluation.
    `ranks`: percentiles remembered for `groups`.
    """
    total = weighted = 0.0
    for signal, weight in weights.items():
        value = values.get(signal)
        key = (group, signal)
        reference = groups.get(key)
        if value is None or not reference or weight <= 0:
            continue
        position = percentile(value, reference) if ranks is None else ranks.of(key, value, reference)
        weighted += weight * (position if higher_is_healthier.get(signal, True) else 100.0 - position)
        total += weight
    return weighted / total if total > 0 else None


GRID_ANCHOR_DAY = 4  # 1970-01-05, a Monday: a 7-day grid falls on the first midnight of ISO weeks


def references_kept(lateness: int, refresh_days: int) -> int:
    """How many grid points' references a partition keeps (and rebuilds on recovery): those a
    late event can still reach, the one before it included."""
    return lateness // (refresh_days * DAY) + 2


def history_reach(lateness: int, refresh_days: int) -> int:
    """How far before its partition's stream time a reference may ask what an account looked
    like (its segment, its subscriptions' plans, seats and term ends): the oldest reference kept,
    rebuilt on recovery, stands `references_kept` grid steps behind the last midnight and reads
    the instant the allowed lateness and a day before its own (`membership_instant`); one day
    more for the last midnight and one to spare."""
    return lateness + (references_kept(lateness, refresh_days) * refresh_days + 3) * DAY


def on_grid(tick: int, refresh_days: int) -> bool:
    """Whether a tick is a midnight at which the reference is rebuilt (every `refresh_days`)."""
    return tick % DAY == 0 and (tick // DAY - GRID_ANCHOR_DAY) % refresh_days == 0


def reference_end(tick: int, lateness: int) -> int:
    """Last day bucket of the windows a reference at `tick` may read (no admissible event lands there)."""
    return bucket_of(tick - lateness - DAY)


def membership_instant(tick: int, lateness: int) -> int:
    """When a reference at `tick` reads who was paying and what each one looked like (segment,
    plan, seats, next renewal), as the events recorded by then describe them: the end of its
    windows, a midnight (a profile and a subscription keep one version per day). Read as known
    later, a cancellation recorded after the tick and dated back onto that instant changed who
    had been paying once the reference was built, and a plan change, a seat count or a renewal
    dated between the two what they looked like: arrival order changed the scores. (Read
    `input.max_backdate_days` earlier instead, the reference counted as peers accounts that had
    left since, and red churned 2-18% less often against green on eight ChurnSim portfolios.)"""
    return (reference_end(tick, lateness) + 1) * DAY


def peer_group_at(group_by: str, revenue: Revenue, profile: Profile | None, instant: int) -> str | None:
    """The group an account is compared within at `instant` besides all paying accounts
    (`peers.group_by`): its plan, or its profile's segment, then; None for "all" or none."""
    return peer_group(
        group_by, revenue.primary_plan(instant) if group_by == "plan" else None, profile, instant
    )


def peer_group(group_by: str, plan: str | None, profile: Profile | None, instant: int) -> str | None:
    """`peer_group_at` with the account's plan at `instant` given."""
    if group_by == "plan":
        return plan
    if group_by == "segment" and profile is not None:
        return profile.segment_at(instant)
    return None


def build_reference(
    accounts: Iterable[tuple[Usage, Revenue, Profile | None]],
    tick: int,
    lateness: int,
    group_by: str,
    weights: dict[str, float] | None = None,
    higher_is_healthier: dict[str, bool] | None = None,
    renewal_window: int | None = None,
) -> PeerReference:
    """The reference at `tick` over the accounts paying at its `membership_instant` (as known then).

    With `weights` (per volume signal), each group also gets the summary of its members'
    composites (`COMPOSITE`), computed against the group's own signal references. With
    `renewal_window` (ms), it counts per group the members committed then: a next renewal
    further away than that (the bands read the share).
    """
    end = reference_end(tick, lateness)
    instant = membership_instant(tick, lateness)
    collected: dict[tuple[str, str], list[float]] = {}
    sizes: dict[str, int] = {}
    committed: dict[str, int] = {}
    members: list[tuple[list[str], dict[str, float], dict[str, int]]] = []
    used_by: dict[str, set[str]] = {}  # group -> features its members used
    mix = MIX in (higher_is_healthier or {}) or MIX in (weights or {})
    for usage, revenue, profile in accounts:
        known = revenue.known_at(instant)
        if known.mrr <= 0:
            continue
        groups = [ALL]
        group = peer_group(group_by, known.plan, profile, instant)
        if group is not None and group != ALL:  # a plan or segment named "*" is all of them
            groups.append(group)
        values = peer_values(usage, known.seats, end)
        counts = usage.feature_volume(end, WINDOW_DAYS) if mix else {}
        members.append((groups, values, counts))
        bound = renewal_window is not None and renews_beyond(known.renewal, instant, renewal_window)
        for group in groups:
            sizes[group] = sizes.get(group, 0) + 1
            if bound:
                committed[group] = committed.get(group, 0) + 1
            for signal, value in values.items():
                collected.setdefault((group, signal), []).append(value)
            if counts:
                used_by.setdefault(group, set()).update(counts)
    for group, names in used_by.items():  # every member counts, 0 for one that did not use it
        used_by[group] = names = most_used(group, names, members)
        for name in names:
            collected[group, FEATURE + name] = [
                float(counts.get(name, 0)) for groups, _, counts in members if group in groups
            ]
    groups_summary = {key: summarise(values) for key, values in sorted(collected.items())}
    features = {group: tuple(sorted(names)) for group, names in used_by.items()}
    ranks = Ranks()  # the summaries placed against are final once made: kept for the evaluations
    mixes: dict[tuple[str, str], list[float]] = {}
    member_mixes: list[dict[str, float]] = []  # per member: group -> its mix there
    for groups, _, counts in members:
        mine: dict[str, float] = {}
        for group in groups:
            found = feature_mix(counts, groups_summary, group, features.get(group, ()), ranks)
            if found is not None:
                mixes.setdefault((group, MIX), []).append(found)
                mine[group] = found
        member_mixes.append(mine)
    groups_summary.update((key, summarise(values)) for key, values in sorted(mixes.items()))
    if weights:
        directions = higher_is_healthier or {}
        composites: dict[tuple[str, str], list[float]] = {}
        for (groups, values, _), mine in zip(members, member_mixes, strict=True):
            for group in groups:
                found_mix = mine.get(group)
                with_mix = values if found_mix is None else {**values, MIX: found_mix}
                found = composite(with_mix, groups_summary, group, weights, directions, ranks)
                if found is not None:
                    composites.setdefault((group, COMPOSITE), []).append(found)
        groups_summary.update((key, summarise(values)) for key, values in sorted(composites.items()))
    return PeerReference(
        tick,
        end,
        groups_summary,
        dict(sorted(sizes.items())),
        dict(sorted(committed.items())),
        features,
        ranks,
    )


def most_used(
    group: str, names: set[str], members: list[tuple[list[str], dict[str, float], dict[str, int]]]
) -> set[str]:
    """At most `MAX_FEATURES` of the features `group` used: those used by the most of its members,
    then the first by name."""
    if len(names) <= MAX_FEATURES:
        return names
    users: dict[str, int] = {}
    for groups, _, counts in members:
        if group in groups:
            for name in counts:
                users[name] = users.get(name, 0) + 1
    return set(sorted(names, key=lambda name: (-users[name], name))[:MAX_FEATURES])


@dataclass(slots=True)
class PeerHistory:
    """The references of the recent ticks, enough to re-score any tick a late event reaches."""

    keep: int
    references: list[PeerReference] = field(default_factory=list)  # oldest first

    def add(self, reference: PeerReference) -> None:
        self.references = [r for r in self.references if r.tick < reference.tick]
        self.references.append(reference)
        del self.references[: -self.keep]

    def at(self, now: int) -> PeerReference | None:
        """The latest reference refreshed at or before `now`."""
        for reference in reversed(self.references):
            if reference.tick <= now:
                return reference
        return None
