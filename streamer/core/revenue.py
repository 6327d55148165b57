"""An account's subscriptions, its MRR timeline and its daily-netted MRR movements.

Each subscription is a step function of event time (a started/changed event sets its MRR from
`occurred_at` on, a cancellation sets 0 from `effective_at`), so events may arrive in any order.
The account's MRR is the sum of those steps; a movement is the net change of one UTC day.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from streamer.core.clock import DAY, bucket_of

MAX_TERM_ENDS = 40  # term ends remembered per subscription
# Superseded states (and term ends) a subscription keeps for reads at earlier instants, each, at
# most one per day (`_reachable`). Bounds the record: with 8, the largest record valid input can
# build passed the room its changelog leaves. The price: a subscription described anew on more
# than 4 days between a peer reference's membership instant and its midnight (8 days by
# default) is read at that instant by the oldest version it kept, so that reference can still
# depend on the order its events arrived in.
MAX_EARLIER = 4
# Payment failures remembered per account, the latest (their score curve is 0 from 3 on): a
# producer retrying a charge without end must not grow the account's record without end.
MAX_PAYMENT_FAILURES = 64

_FOREVER = 1 << 62  # beyond any instant in epoch ms

# Movement kinds, in the order the portfolio keeps their sums.
MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")
NEW, EXPANSION, CONTRACTION, CHURN, REACTIVATION = range(5)

# (effective_at ms, occurred_at ms, rank, event_id, MRR micros from then on): at the same
# effective instant the later-occurring event wins; at the same occurring instant too, a change
# follows a start and a cancellation both (`STARTED`, `CHANGED`, `CANCELED`): a subscription
# started and changed, or started and canceled, in one second ends as its last step says,
# whatever the event ids. The larger event id breaks what is left (two changes at one instant).
Point = tuple[int, int, int, str, int]
STARTED, CHANGED, CANCELED = 0, 1, 2
# (occurred_at ms, rank, event_id, plan, seats): the description a start or change gave its
# subscription from its event time on (the latest by the first three wins, as for `Point`).
State = tuple[int, int, str, str | None, int | None]
# (occurred_at ms, event_id, term end ms): the term end a start, change or renewal set.
Term = tuple[int, str, int]
V = TypeVar("V", State, Term)
# Step lists up to this long are scanned from the end instead of bisected with a key function
# (the same index on a list sorted by instant; the bisection called the key at every step).
_SCAN = 8


def renews_beyond(renewal_at: float | int | None, now: int, window: int) -> bool:
    """Whether a term renewing at `renewal_at` runs on more than `window` (ms) past `now`: the
    account is committed, it cannot leave before a renewal further off than the window."""
    return renewal_at is not None and renewal_at - now > window


@dataclass(slots=True)
class Subscription:
    """One subscription: its MRR steps and its descriptive state (plan, seats, term end; the
    latest by event time wins), read as it was at an instant (`state_by`, `term_end_by`,
    `canceled_by`): `earlier_states` and `earlier_terms` keep the versions the latest superseded
    that a read may still ask for (`_reachable`), oldest first: empty until a subscription is
    described anew, then at least the version before the latest."""

    points: list[Point] = field(default_factory=list)
    plan: str | None = None
    seats: int | None = None
    state_at: tuple[int, int, str] = (-1, STARTED, "")  # (occurred_at, rank, event id) of the state
    term_end: int | None = None
    term_end_at: tuple[int, str] = (-1, "")
    started_at: int | None = None
    term_ends: list[int] = field(default_factory=list)  # every term end seen, sorted (renewal rate)
    earlier_states: list[State] = field(default_factory=list)
    earlier_terms: list[Term] = field(default_factory=list)
    # `points` as they are read: derived, not stored (None: derive again; `steps`)
    _steps: list[Point] | None = field(default=None, compare=False, repr=False)

    def changed(self) -> None:
        """`points` or `started_at` changed: the steps are derived again on next use."""
        self._steps = None

    def steps(self) -> list[Point]:
        """The MRR steps in effect: `points` as the events dated them, except that a cancellation
        recorded at or after the first start and dated before it ("signed up by mistake", the
        day before) ends it at that start (left before it, the start would win and the
        subscription pay for good). One recorded before the start stays where it is dated: moved
        to a start that came later, it let a change dated with it pay from then, so a start
        rewrote months the allowed lateness had closed (a peer reference built meanwhile held
        the account as not paying, and arrival order changed the scores).

        Derived when read, from the earliest start known then: clamped once when it arrived, a
        cancellation stayed at a later start when an earlier one arrived after it, and the
        subscription's MRR depended on the order the events came in."""
        steps = self._steps
        if steps is None:
            steps = self._steps = _in_effect(self.points, self.started_at)
        return steps

    def state_by(self, now: int) -> tuple[str | None, int | None, tuple[int, int, str]]:
        """(plan, seats, its (event time, rank, event id)) as the latest start or change dated
        at or before `now` set them; the oldest known when none was (not yet described)."""
        if self.state_at[0] <= now or not self.earlier_states:
            return self.plan, self.seats, self.state_at
        found = self.earlier_states[0]
        for state in self.earlier_states:
            if state[0] > now:
                break
            found = state
        return found[3], found[4], found[:3]

    def canceled_by(self, now: int) -> int | None:
        """The latest instant a cancellation recorded by `now` takes effect at (None: none was
        recorded by then). Read at its latest, one recorded after a peer reference's instant
        moved a renewal out of that reference, and arrival order changed the scores."""
        for point in reversed(self.points):  # in effective order: the first found is the latest
            if point[2] == CANCELED and point[1] <= now:
                return point[0]
        return None

    def term_end_by(self, now: int) -> int | None:
        """The term end the latest event dated at or before `now` set (None: none had)."""
        if self.term_end_at[0] <= now:
            return self.term_end
        found = None
        for at, _, end in self.earlier_terms:
            if at > now:
                break
            found = end
        return found

    def renewal_by(self, now: int) -> int | None:
        """The end of its term after `now`, as known at `now`, unless a cancellation known
        then ends it before (None: no such term end)."""
        end = self.term_end_by(now)
        if end is None or end <= now:
            return None
        cancel_at = self.canceled_by(now)
        return end if cancel_at is None or cancel_at < now or cancel_at > end else None

    def mrr_known_at(self, ts: int) -> int:
        """`mrr_at(ts)` as the events recorded by `ts` set it: a step recorded later is left out
        even when dated before (a backdated cancellation), and a cancellation dated before the
        first start known then ends it at that start (as in `steps`)."""
        recorded = [point for point in self.points if point[1] <= ts]
        start = min((point[0] for point in recorded if point[2] == STARTED), default=None)
        return _mrr_in(_in_effect(recorded, start), ts)

    def mrr_at(self, ts: int) -> int:
        """MRR in effect at instant `ts`, counting changes effective exactly at `ts`."""
        return _mrr_in(self.steps(), ts)


def _in_effect(points: list[Point], start: int | None) -> list[Point]:
    """`points` (sorted) as they take effect when the first start is `start` (`Subscription.steps`:
    a cancellation recorded at or after it and dated before it ends at it)."""
    if start is None or not points or points[0][0] >= start:
        return points
    return sorted(
        (start, *point[1:]) if point[2] == CANCELED and point[0] < start <= point[1] else point
        for point in points
    )


def _mrr_in(steps: list[Point], ts: int) -> int:
    """The MRR of the last of `steps` (sorted) in effect at `ts`, 0 before the first."""
    if len(steps) <= _SCAN:  # a scan from the end, as `Revenue.mrr_at`
        index = len(steps)
        while index and steps[index - 1][0] > ts:
            index -= 1
    else:
        index = bisect_right(steps, ts, key=_effective_at)
    return steps[index - 1][4] if index else 0


def classify(before: int, after: int, had_mrr_before: bool) -> int | None:
    """Movement kind of one day's net change, or None when MRR did not change."""
    if after == before:
        return None
    if before == 0:
        return REACTIVATION if had_mrr_before else NEW
    if after == 0:
        return CHURN
    return EXPANSION if after > before else CONTRACTION


@dataclass(slots=True)
class Revenue:
    """All of an account's subscriptions and the derived account-level MRR timeline."""

    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    timeline: list[tuple[int, int]] = field(default_factory=list)  # (ts, account MRR from ts on)
    first_start: int | None = None
    payment_failures: list[int] = field(default_factory=list)  # recent failure times, sorted
    version: int = 0  # bumped on every change
    # (version, low, high, active): the subscriptions active at every instant of [low, high)
    _active_memo: tuple[int, int, int, list[Subscription]] = (-1, 0, 0, [])

    # -- updates ---------------------------------------------------------------------------------

    def subscription(self, subscription_id: str) -> Subscription:
        sub = self.subscriptions.get(subscription_id)
        if sub is None:
            sub = self.subscriptions[subscription_id] = Subscription()
        return sub

    def set_state(
        self,
        subscription_id: str,
        at: int,
        event_id: str,
        mrr: int,
        plan: str,
        seats: int | None,
        term_end: int | None,
        *,
        started: bool,
        max_points: int,
        max_steps: int,
        span: int,
    ) -> None:
        """A started/changed event: the subscription's full state from `at` on. `span`: how far
        before the latest version a read may still ask for the state (`_reachable`)."""
        self.version += 1
        sub = self.subscription(subscription_id)
        rank = STARTED if started else CHANGED
        _add_point(sub.points, (at, at, rank, event_id, mrr), max_points)
        known = sub.earlier_states
        if sub.state_at[0] >= 0:  # described before
            known = [*known, (*sub.state_at, sub.plan, sub.seats)]
        states = _reachable(known, (at, rank, event_id, plan, seats), _state_key, span, MAX_EARLIER + 1)
        sub.earlier_states = states[:-1]
        latest = states[-1]
        sub.state_at, sub.plan, sub.seats = latest[:3], latest[3], latest[4]
        if term_end is not None:
            self._set_term_end(sub, at, event_id, term_end, span)
        if started:
            sub.started_at = at if sub.started_at is None else min(sub.started_at, at)
            self.first_start = at if self.first_start is None else min(self.first_start, at)
        sub.changed()
        self._trim(max_steps)
        self._rebuild_timeline()

    def renew(self, subscription_id: str, at: int, event_id: str, term_end: int, span: int) -> None:
        self.version += 1
        self._set_term_end(self.subscription(subscription_id), at, event_id, term_end, span)

    def cancel(
        self, subscription_id: str, at: int, event_id: str, effective_at: int, max_points: int, max_steps: int
    ) -> None:
        self.version += 1
        sub = self.subscription(subscription_id)
        _add_point(sub.points, (effective_at, at, CANCELED, event_id, 0), max_points)
        sub.changed()
        self._trim(max_steps)
        self._rebuild_timeline()

    def _trim(self, max_steps: int) -> None:
        """Forget the account's oldest steps past `max_steps` in all, as each subscription does
        past its own cap (its MRR before its first step left reads 0): the timeline is rebuilt
        from every step at every change, so this bounds that cost and the account's record.
        A subscription's latest step is its current price and is never forgotten: a long-lived
        subscription's only step, the oldest of the account, once went and its MRR with it."""
        subscriptions = self.subscriptions.values()
        excess = sum(len(sub.points) for sub in subscriptions) - max_steps
        while excess > 0:
            superseded = [sub for sub in subscriptions if len(sub.points) > 1]
            if not superseded:
                return
            oldest = min(superseded, key=lambda sub: sub.points[0])
            del oldest.points[0]
            oldest.changed()
            excess -= 1

    def payment_failed(self, at: int, keep_after: int) -> None:
        self.version += 1
        failures = self.payment_failures
        insort(failures, at)
        del failures[: max(bisect_left(failures, keep_after), len(failures) - MAX_PAYMENT_FAILURES)]

    @staticmethod
    def _set_term_end(sub: Subscription, at: int, event_id: str, term_end: int, span: int) -> None:
        known = sub.earlier_terms
        if sub.term_end is not None:  # a term end set before
            known = [*known, (*sub.term_end_at, sub.term_end)]
        terms = _reachable(known, (at, event_id, term_end), _term_key, span, MAX_EARLIER + 1)
        sub.earlier_terms = terms[:-1]
        latest = terms[-1]
        sub.term_end_at, sub.term_end = latest[:2], latest[2]
        if term_end not in sub.term_ends:
            insort(sub.term_ends, term_end)
            del sub.term_ends[:-MAX_TERM_ENDS]

    def _rebuild_timeline(self) -> None:
        """Merge the subscriptions' steps into account MRR change points, in one sweep over all
        steps in order: at each instant the account's MRR is the sum of each subscription's
        latest step at or before it (`Subscription.mrr_at`). O(steps log steps): asking every
        subscription at every instant instead made an account with many subscriptions cost the
        cube of their number (2,000 of them took 109 s)."""
        steps = sorted(
            (point, index) for index, sub in enumerate(self.subscriptions.values()) for point in sub.steps()
        )
        current = [0] * len(self.subscriptions)
        timeline: list[tuple[int, int]] = []
        total = last = 0
        for position, (point, index) in enumerate(steps):
            total += point[4] - current[index]
            current[index] = point[4]
            closes = position + 1 == len(steps) or steps[position + 1][0][0] != point[0]
            if closes and total != last:  # the instant's last step: its sum is the MRR from then on
                timeline.append((point[0], total))
                last = total
        self.timeline = timeline

    # -- queries ---------------------------------------------------------------------------------

    def mrr_at(self, ts: int) -> int:
        """Account MRR at instant `ts`, counting changes effective exactly at `ts`."""
        timeline = self.timeline
        if len(timeline) <= _SCAN:  # the usual few steps: a scan from the end, no key calls
            index = len(timeline)
            while index and timeline[index - 1][0] > ts:
                index -= 1
        else:
            index = bisect_right(timeline, ts, key=_effective_at)
        return timeline[index - 1][1] if index else 0

    def mrr_before(self, ts: int) -> int:
        """Account MRR just before instant `ts` (changes effective at `ts` not yet counted)."""
        timeline = self.timeline
        if len(timeline) <= _SCAN:
            index = len(timeline)
            while index and timeline[index - 1][0] >= ts:
                index -= 1
        else:
            index = bisect_left(timeline, ts, key=_effective_at)
        return timeline[index - 1][1] if index else 0

    def ever_paid_by(self, ts: int) -> bool:
        """Whether the account had MRR > 0 at any instant up to `ts`."""
        return any(mrr > 0 for at, mrr in self.timeline if at <= ts)

    def movements(self) -> list[tuple[int, int, int]]:
        """Daily-netted movements as (UTC day, kind, |amount| micros), in day order."""
        result: list[tuple[int, int, int]] = []
        had_mrr = False
        days = sorted({ts // DAY for ts, _ in self.timeline})
        for day in days:
            before = self.mrr_before(day * DAY)
            after = self.mrr_before((day + 1) * DAY)
            kind = classify(before, after, had_mrr)
            if kind is not None:
                result.append((day, kind, abs(after - before)))
            had_mrr = had_mrr or before > 0 or after > 0
        return result

    def term_ends(self) -> list[tuple[int, bool]]:
        """(term end, renewed) for every known term end: renewed when a later term end is known
        (a `subscription.renewed`, or a change with a later term) or the subscription still had
        MRR after it."""
        return [
            (end, index + 1 < len(sub.term_ends) or sub.mrr_at(end) > 0)
            for sub in self.subscriptions.values()
            for index, end in enumerate(sub.term_ends)
        ]

    def active_at(self, ts: int) -> list[Subscription]:
        """Subscriptions with MRR > 0 at `ts` (remembered for the span of instants around `ts`
        with the same answer: an evaluation, a peer reference and the timer ask at different
        instants, mostly between the same two subscription steps)."""
        version, low, high, active = self._active_memo
        if version == self.version and low <= ts < high:
            return active
        return self._remember_active(ts)

    def _remember_active(self, ts: int) -> list[Subscription]:
        # Each subscription's MRR at `ts` is that of its last step at or before `ts`, so the
        # answer is the same between two consecutive steps of any subscription.
        steps = sorted({point[0] for sub in self.subscriptions.values() for point in sub.steps()})
        index = bisect_right(steps, ts)
        low = steps[index - 1] if index else -_FOREVER
        high = steps[index] if index < len(steps) else _FOREVER
        active = self._active_at(ts)
        self._active_memo = (self.version, low, high, active)
        return active

    def _active_at(self, ts: int) -> list[Subscription]:
        return [sub for sub in self.subscriptions.values() if sub.mrr_at(ts) > 0]

    def scheduled_cancellation(self, now: int) -> int | None:
        """Earliest future instant at which MRR falls to 0 with no later recovery already known."""
        if self.mrr_at(now) == 0:
            return None
        future = self.timeline[bisect_right(self.timeline, now, key=_effective_at) :]
        for position, (ts, mrr) in enumerate(future):
            if mrr == 0 and all(later == 0 for _, later in future[position:]):
                return ts
        return None

    def next_renewal(self, now: int) -> int | None:
        """Nearest future term end (as known at `now`) of an active subscription that is not
        canceled before it."""
        return _nearest(self.active_at(now), now)

    def known_at(self, instant: int) -> Known:
        """What a peer reference reads of the account at `instant`: MRR, primary plan, seats
        and next renewal as the events recorded by then describe them. No event still
        admissible once the allowed lateness has passed `instant` can change it, so it does not
        depend on the order the events arrived in (read as known later, a cancellation recorded
        after the reference was built and dated back onto `instant` changed who had been
        paying)."""
        paying = [(mrr, sub) for sub in self.subscriptions.values() if (mrr := sub.mrr_known_at(instant)) > 0]
        subscriptions = [sub for _, sub in paying]
        return Known(
            sum(mrr for mrr, _ in paying),
            _largest_plan(paying, instant),
            _seats(subscriptions, instant),
            _nearest(subscriptions, instant),
        )

    def term_due(self, now: int) -> int | None:
        """The latest end (as known at `now`) of a paying subscription's term that ended at or
        before `now` without a renewal yet (None: none did)."""
        ends = [
            end for sub in self.active_at(now) if (end := sub.term_end_by(now)) is not None and end <= now
        ]
        return max(ends) if ends else None

    def term_before(self, renewal: int, now: int) -> int | None:
        """Length in ms of the term an active subscription ends at `renewal` (from its previous
        term end, else its start); None when no such subscription's start is known."""
        lengths = []
        for sub in self.active_at(now):
            if sub.term_end_by(now) != renewal:
                continue
            earlier = bisect_left(sub.term_ends, renewal)  # term_ends is sorted
            begun = sub.term_ends[earlier - 1] if earlier else sub.started_at
            if begun is not None:
                lengths.append(renewal - begun)
        return max(lengths) if lengths else None

    def primary_plan(self, now: int) -> str | None:
        """Plan (as it was at `now`) of the largest active subscription (of the latest described
        one when none is active)."""
        active = self.active_at(now)
        if len(active) == 1:  # the usual case: no key to compute
            return active[0].state_by(now)[0]
        candidates = active or self.subscriptions.values()
        return _largest_plan([(sub.mrr_at(now), sub) for sub in candidates], now)

    def seats(self, now: int) -> int | None:
        """Seats of the active subscriptions at `now`, as each was described then."""
        return _seats(self.active_at(now), now)


@dataclass(frozen=True, slots=True)
class Known:
    """An account's revenue at an instant as the events recorded by then describe it
    (`Revenue.known_at`)."""

    mrr: int
    plan: str | None  # of the largest paying subscription
    seats: int | None
    renewal: int | None  # the nearest term end ahead (`Subscription.renewal_by`)


def _largest_plan(subscriptions: list[tuple[int, Subscription]], now: int) -> str | None:
    """The plan at `now` of the largest of (MRR, subscription), the latest described first."""
    if not subscriptions:
        return None
    largest = max(subscriptions, key=lambda item: (item[0], item[1].state_by(now)[2]))[1]
    return largest.state_by(now)[0]


def _seats(subscriptions: list[Subscription], now: int) -> int | None:
    """The seats of `subscriptions` as each was described at `now` (None: none had a count)."""
    known = [seats for sub in subscriptions if (seats := sub.state_by(now)[1]) is not None]
    return sum(known) if known else None


def _nearest(subscriptions: list[Subscription], now: int) -> int | None:
    """The nearest renewal ahead of `now` among `subscriptions` (`Subscription.renewal_by`)."""
    ends = [end for sub in subscriptions if (end := sub.renewal_by(now)) is not None]
    return min(ends) if ends else None


def _state_key(state: State) -> tuple[int, int, str]:
    return state[:3]


def _term_key(term: Term) -> tuple[int, str]:
    return term[:2]


def _reachable(
    known: list[V], new: V, key: Callable[[V], tuple[int | str, ...]], span: int, cap: int
) -> list[V]:
    """`known` (oldest first) with `new`, less the versions no read can select; the latest last.

    Versions are ordered by `key` (event time first; one seen again is kept once). Only a peer
    reference reads before the latest version (a scoring reads at or after every event of its
    account), at its membership instant: a midnight, at most `span` before the latest version's
    event time (the caller's bound: the references kept behind an event time the partition has
    seen). So of the versions of one day bucket (midnight, midnight] only the latest can be read,
    and of those dated at or before that horizon only the latest. Then at most `cap` are kept,
    the latest. Each rule drops a version only for one that stays, and the horizon moves only
    with the latest version, so every arrival order ends with the same versions (one dropped on
    the way would be dropped at the end too); the cap's price is said at `MAX_EARLIER`."""
    merged = list(known)
    merged.append(new)
    ordered = sorted({key(version): version for version in merged}.values(), key=key)
    versions = list({bucket_of(version[0]): version for version in ordered}.values())  # a day's latest
    horizon = versions[-1][0] - span
    first = 0
    for index, version in enumerate(versions):
        if version[0] > horizon:
            break
        first = index
    return versions[max(first, len(versions) - cap) :]


def _add_point(points: list[Point], point: Point, max_points: int) -> None:
    if point in points:
        return
    insort(points, point)
    if len(points) > max_points:
        del points[0]


def _effective_at(point: tuple[int, int] | Point) -> int:
    return point[0]
