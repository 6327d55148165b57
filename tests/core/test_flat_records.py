"""The flat layouts of tickets, survey answers and per-feature counters behave as the dicts and
tuples they replaced (issue 11): each is run against its former implementation, kept here as a
reference model, on random sequences of events in any order, with the caps reached."""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.core.clock import DAY, HOUR, bucket_of
from streamer.core.sentiment import Sentiment
from streamer.core.support import (
    DAY_FIELDS,
    HORIZON_DAYS,
    MAX_RESOLUTIONS,
    OPEN_FLAG,
    PRIORITIES,
    PRIORITY_BITS,
    RESOLVED_FLAG,
    Support,
)
from streamer.core.usage import HORIZON_DAYS as USAGE_DAYS
from streamer.core.usage import Usage

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE_DAY = 20_000

# -- support: the former dict of Ticket objects and dict of day stats ------------------------------


@dataclass
class RefTicket:
    priority: str = "normal"
    opened_at: int | None = None
    status: str = "open"
    status_at: tuple[int, str] = (-1, "")
    resolutions: dict[int, int] = field(default_factory=dict)


@dataclass
class RefSupport:
    tickets: dict[str, RefTicket] = field(default_factory=dict)
    open_ids: dict[str, None] = field(default_factory=dict)
    days: dict[int, list[int]] = field(default_factory=dict)  # day -> opened, resolved, ms, fcr, reopened
    horizon_day: int = 0

    def _day(self, at: int) -> list[int] | None:
        day = bucket_of(at)
        if day < self.horizon_day:
            return None
        return self.days.setdefault(day, [0, 0, 0, 0, 0])

    def _ticket(self, ticket_id: str, max_tickets: int) -> RefTicket:
        if ticket_id not in self.tickets:
            if len(self.tickets) >= max_tickets:
                resolved = [tid for tid, t in self.tickets.items() if t.status == "resolved"]
                pool = resolved or list(self.tickets)
                gone = min(pool, key=lambda tid: self.tickets[tid].status_at)
                del self.tickets[gone]
                self.open_ids.pop(gone, None)
            self.tickets[ticket_id] = RefTicket()
        return self.tickets[ticket_id]

    def _set_status(self, ticket_id: str, ticket: RefTicket, status: str, at: int, event_id: str) -> None:
        if not ticket.status_at[1] or (at, event_id) > ticket.status_at:  # an opening is no status
            ticket.status, ticket.status_at = status, (at, event_id)
            if status == "open" and ticket.opened_at is not None:
                self.open_ids[ticket_id] = None
            else:
                self.open_ids.pop(ticket_id, None)

    def _count(self, opened_at: int, resolved_at: int, contacts: int) -> None:
        stats = self._day(resolved_at)
        if stats is not None:
            stats[1] += 1
            stats[2] += max(0, resolved_at - opened_at)
            stats[3] += contacts == 1

    def opened(self, ticket_id: str, at: int, priority: str, max_tickets: int) -> None:
        ticket = self._ticket(ticket_id, max_tickets)
        if ticket.opened_at is None or at < ticket.opened_at:  # counted once, on its first opening
            ticket.priority = priority  # the first opening's
            earlier, late = ticket.opened_at, ticket.opened_at is None and ticket.resolutions
            ticket.opened_at = at
            if late:
                for resolved_at, contacts in ticket.resolutions.items():
                    self._count(at, resolved_at, contacts)
            if earlier is not None and bucket_of(earlier) in self.days:
                self.days[bucket_of(earlier)][0] -= 1
            if earlier is not None:  # resolutions counted against the later opening move to this one
                for resolved_at in ticket.resolutions:
                    if bucket_of(resolved_at) in self.days:
                        moved = max(0, resolved_at - at) - max(0, resolved_at - earlier)
                        self.days[bucket_of(resolved_at)][2] += moved
            stats = self._day(at)
            if stats is not None:
                stats[0] += 1
        elif at == ticket.opened_at and PRIORITIES.index(priority) > PRIORITIES.index(ticket.priority):
            ticket.priority = priority  # the most urgent of the first openings
        if not ticket.status_at[1]:  # no resolution or reopen yet: its status is its opening
            ticket.status_at = (ticket.opened_at, "")
        if ticket.status == "open":  # a reopen that arrived before this opening now counts
            self.open_ids.setdefault(ticket_id, None)

    def resolved(self, ticket_id: str, at: int, event_id: str, contacts: int, max_tickets: int) -> None:
        ticket = self._ticket(ticket_id, max_tickets)
        if at not in ticket.resolutions:
            ticket.resolutions[at] = contacts
            if ticket.opened_at is not None:
                self._count(ticket.opened_at, at, contacts)
            if len(ticket.resolutions) > MAX_RESOLUTIONS:  # the latest are kept
                del ticket.resolutions[min(ticket.resolutions)]
        elif contacts < ticket.resolutions[at]:  # one instant: the fewest contacts
            before, ticket.resolutions[at] = ticket.resolutions[at], contacts
            if ticket.opened_at is not None and bucket_of(at) in self.days:
                self.days[bucket_of(at)][3] += (contacts == 1) - (before == 1)
        self._set_status(ticket_id, ticket, "resolved", at, event_id)

    def reopened(self, ticket_id: str, at: int, event_id: str, max_tickets: int) -> None:
        ticket = self._ticket(ticket_id, max_tickets)
        stats = self._day(at)
        if stats is not None:
            stats[4] += 1
        self._set_status(ticket_id, ticket, "open", at, event_id)

    def expire(self, today: int) -> None:
        horizon = today - HORIZON_DAYS + 1
        if horizon > self.horizon_day:
            self.horizon_day = horizon
            self.days = {day: stats for day, stats in self.days.items() if day >= horizon}


def support_picture(support: Support) -> Any:
    tickets = [
        (
            ticket_id,
            PRIORITIES[support.flags(i) & PRIORITY_BITS],
            support.opened_at(i),
            "resolved" if support.flags(i) & RESOLVED_FLAG else "open",
            support.status_at(i),
            support.ticket_resolutions(i),
        )
        for i, ticket_id in enumerate(support.tickets)
    ]
    opened = {tid for i, tid in enumerate(support.tickets) if support.flags(i) & OPEN_FLAG}
    days = [list(support.days[i : i + DAY_FIELDS]) for i in range(0, len(support.days), DAY_FIELDS)]
    return tickets, opened, days


def ref_support_picture(ref: RefSupport) -> Any:
    tickets = [
        (tid, t.priority, t.opened_at, t.status, t.status_at, list(t.resolutions.items()))
        for tid, t in ref.tickets.items()
    ]
    return tickets, set(ref.open_ids), [[day, *stats] for day, stats in ref.days.items()]


ticket_events = st.lists(
    st.tuples(
        st.sampled_from(("opened", "resolved", "reopened", "expire")),
        st.sampled_from([f"t{n}" for n in range(6)]),
        st.integers(0, 200 * 24),  # hours after BASE_DAY: spans the 120-day horizon
        st.sampled_from([f"e{n}" for n in range(5)]),  # few event ids: ties on (time, id)
        st.sampled_from(PRIORITIES),
        st.integers(1, 3),
    ),
    max_size=60,
)


@SETTINGS
@given(ticket_events, st.integers(1, 4))
def test_flat_tickets_keep_what_the_ticket_objects_kept(events: list[Any], max_tickets: int) -> None:
    support, ref = Support(), RefSupport()
    for kind, ticket_id, hours, event_id, priority, contacts in events:
        at = BASE_DAY * DAY + hours * HOUR
        if kind == "opened":
            support.opened(ticket_id, at, priority, max_tickets)
            ref.opened(ticket_id, at, priority, max_tickets)
        elif kind == "resolved":
            support.resolved(ticket_id, at, event_id, contacts, max_tickets)
            ref.resolved(ticket_id, at, event_id, contacts, max_tickets)
        elif kind == "reopened":
            support.reopened(ticket_id, at, event_id, max_tickets)
            ref.reopened(ticket_id, at, event_id, max_tickets)
        else:
            support.expire(bucket_of(at))
            ref.expire(bucket_of(at))
        assert support_picture(support) == ref_support_picture(ref)
        assert support.open_count == len(ref.open_ids)
        now = at + 100 * HOUR
        counts = dict.fromkeys(PRIORITIES, 0)
        for tid in ref.open_ids:
            counts[ref.tickets[tid].priority] += 1
        assert support.open_by_priority() == counts
        opened = [ref.tickets[tid].opened_at or 0 for tid in ref.open_ids]
        assert support.oldest_open_hours(now) == (max(0, now - min(opened)) / HOUR if opened else None)
        urgent = sorted(
            tid
            for tid in ref.open_ids
            if ref.tickets[tid].priority == "urgent" and now - (ref.tickets[tid].opened_at or 0) > 72 * HOUR
        )
        assert support.urgent_open_over(now, 72) == urgent
        end = bucket_of(at)
        window = support.window(end, 90)
        sums = [0] * 5
        for day, stats in ref.days.items():
            if end - 89 <= day <= end:
                sums = [a + b for a, b in zip(sums, stats, strict=True)]
        found = [window.opened, window.resolved, window.resolution_ms, window.first_contact, window.reopened]
        assert found == sums


# -- sentiment: the former dict of NPS answers and sorted lists of tuples ------------------------


@dataclass
class RefSentiment:
    nps: dict[str, tuple[int, str, int]] = field(default_factory=dict)
    csat: list[tuple[int, str, int]] = field(default_factory=list)
    ces: list[tuple[int, str, int]] = field(default_factory=list)

    def answered(
        self,
        kind: str,
        at: int,
        event_id: str,
        respondent: str,
        score: int,
        max_respondents: int,
        max_answers: int,
    ) -> None:
        if kind == "nps":
            latest = self.nps.get(respondent)
            if latest is None and len(self.nps) >= max_respondents:
                oldest = min(self.nps, key=self.nps.__getitem__)
                if (at, event_id, score) < self.nps[oldest]:
                    return
                del self.nps[oldest]
            if latest is None or (at, event_id) > latest[:2]:
                self.nps[respondent] = (at, event_id, score)
        else:
            answers = self.csat if kind == "csat" else self.ces
            insort(answers, (at, event_id, score))
            if len(answers) > max_answers:
                del answers[0]


survey_events = st.lists(
    st.tuples(
        st.sampled_from(("nps", "csat", "ces")),
        st.integers(0, 300),  # days after BASE_DAY: spans the 180-day window
        st.sampled_from([f"e{n}" for n in range(5)]),
        st.sampled_from([f"r{n}" for n in range(6)]),
        st.integers(0, 10),
    ),
    max_size=60,
)


@SETTINGS
@given(survey_events, st.integers(1, 4), st.integers(1, 4))
def test_flat_answers_keep_what_the_tuples_kept(
    events: list[Any], max_respondents: int, max_answers: int
) -> None:
    sentiment, ref = Sentiment(), RefSentiment()
    for kind, day, event_id, respondent, score in events:
        at = (BASE_DAY + day) * DAY
        sentiment.answered(
            kind,
            at,
            event_id,
            respondent,
            score,
            None,
            max_respondents=max_respondents,
            max_answers=max_answers,
            max_comments=0,
        )
        ref.answered(kind, at, event_id, respondent, score, max_respondents, max_answers)
        assert list(zip(sentiment.respondents, sentiment.answers("nps"), strict=True)) == list(
            ref.nps.items()
        )
        assert sentiment.answers("csat") == ref.csat
        assert sentiment.answers("ces") == ref.ces
        end = BASE_DAY + day
        horizon, since = (end + 1) * DAY, (end + 1 - 180) * DAY
        figures = sentiment.figures(end)
        nps = [s for at, _, s in ref.nps.values() if since < at <= horizon]
        csat = [s for at, _, s in ref.csat if since < at <= horizon]
        ces = [s for at, _, s in ref.ces if since < at <= horizon]
        assert figures.get("nps_respondents", 0) == len(nps)
        assert figures.get("csat_answers", 0) == len(csat)
        assert figures.get("ces_sum", 0) == sum(ces)


# -- usage: the former dict of per-feature (day, count) arrays -----------------------------------


def ref_record(
    features: dict[str, int],
    counters: dict[str, list[int]],
    day: int,
    feature: str,
    count: int,
    max_features: int,
) -> None:
    last = features.get(feature)
    if last is None:
        if len(features) >= max_features:
            for gone in sorted(features, key=lambda f: (features[f], f))[: max(1, len(features) // 8)]:
                del features[gone]
                counters.pop(gone, None)
        features[feature] = day
    elif day > last:
        features[feature] = day
    pairs = counters.setdefault(feature, [])
    for i in range(len(pairs) - 2, -1, -2):
        if pairs[i] == day:
            pairs[i + 1] += count
            return
    pairs += (day, count)


usage_events = st.lists(
    st.tuples(
        st.sampled_from(("use", "use", "use", "expire")),
        st.integers(0, 150),  # days after BASE_DAY: spans the 64-day horizon
        st.sampled_from(("post", "like", "share", "api", "export")),
        st.sampled_from((1, 2, 7, 1 << 31, 1 << 40)),  # past 32 bits: the array widens
    ),
    max_size=60,
)


@SETTINGS
@given(usage_events, st.integers(1, 6))
def test_one_array_of_feature_counters_keeps_what_an_array_per_feature_kept(
    events: list[Any], max_features: int
) -> None:
    usage = Usage()
    features: dict[str, int] = {}
    counters: dict[str, list[int]] = {}
    horizon = 0
    for kind, day, feature, count in events:
        day += BASE_DAY
        if kind == "expire":
            usage.expire(day)
            if day - USAGE_DAYS + 1 > horizon:
                horizon = day - USAGE_DAYS + 1
                for name in list(counters):
                    kept = [
                        x
                        for i in range(0, len(counters[name]), 2)
                        if counters[name][i] >= horizon
                        for x in counters[name][i : i + 2]
                    ]
                    if kept:
                        counters[name] = kept
                    else:
                        del counters[name]
            continue
        at = day * DAY + 12 * HOUR
        usage.record(at, "u1", feature, count, key_feature=False, max_users=10, max_features=max_features)
        if day >= horizon:
            ref_record(features, counters, day, feature, count, max_features)
        assert usage.features == features
        assert usage.feature_names == list(counters)
        for name, pairs in counters.items():
            assert usage.feature_counts(name) == {pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)}
        window = {
            name: total
            for name, pairs in counters.items()
            if (total := sum(pairs[i + 1] for i in range(0, len(pairs), 2) if day - 27 <= pairs[i] <= day))
        }
        assert usage.feature_volume(day, 28) == window
