"""Support-ticket state per account: open tickets by priority, resolution windows, reopens.

A ticket is open from its opening until it is resolved; from its first resolution or reopen on,
its status is that of the latest of them by event time (the event id breaks a tie). An opening
never reopens a resolved ticket (`ticket.reopened` does), so a ticket resolved in the second it
was opened, or stamped a little before it by another system's clock, is resolved whatever the
event ids and the order the events arrive in. Windowed figures (ART, FCR, reopens, volume) live
in day buckets of `HORIZON_DAYS`.

Layout (issue 11, resident bytes per account): flat records, not an object per ticket and per
day. Ticket i is `tickets[i]` (its id), `status_ids[i]` (the event id of its latest resolution
or reopen, "" while none) and `TICKET_FIELDS` numbers at `facts[TICKET_FIELDS * i:]` (flags:
priority, resolved, open; the opening time; the latest status time); its resolutions are
(ticket, resolved_at, contacts) triples in `resolutions`, in the order they arrived; a day's
counters are `DAY_FIELDS` numbers in `days`, days in the order they first got a ticket. About
40 bytes a ticket and 48 a day beside the ids, where a `Ticket` object with its tuple, dict and
int objects took 400-500.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Final

from streamer.core.clock import HOUR, bucket_of
from streamer.core.usage import Pairs

HORIZON_DAYS = 120  # ART/FCR/reopens over 90 days; volume over 30 days vs the 90 before
# Resolutions remembered per ticket, the latest by event time (the older ones stay counted in
# their day): a ticket resolved again and again must not grow the account's record without end.
MAX_RESOLUTIONS = 16
# The contract's `Priority` values, lowest first; stored state keeps a ticket's index in it, so
# the order is fixed (tests/core/test_support.py pins it to the contract's).
PRIORITIES = ("low", "normal", "high", "urgent")

OPEN, RESOLVED = "open", "resolved"

# A ticket's numbers: flags, opened_at (`NEVER` until its opening is known), its latest status time.
TICKET_FIELDS = 3
_FLAGS, _OPENED_AT, _STATUS_AT = range(TICKET_FIELDS)
PRIORITY_BITS = 3  # flags & PRIORITY_BITS: the index of the priority in `PRIORITIES`
RESOLVED_FLAG = 4  # the latest status is resolved (else open)
OPEN_FLAG = 8  # counted open: the latest status is open and the opening is known
NEVER = -(1 << 63)  # opened_at of a ticket whose opening has not arrived
_NORMAL = PRIORITIES.index("normal")
# A day's numbers: the day, then its counters in the order of `DayStats` (at these offsets;
# Final: mypyc compiles them as literals).
DAY_FIELDS = 6
_DAY_OPENED: Final = 1
_DAY_RESOLVED: Final = 2
_DAY_RESOLUTION_MS: Final = 3
_DAY_FIRST_CONTACT: Final = 4
_DAY_REOPENED: Final = 5
NUMBERS = "q"  # typecode of `facts`, `resolutions` and `days`: signed 64-bit


@dataclass(slots=True)
class DayStats:
    opened: int = 0
    resolved: int = 0
    resolution_ms: int = 0
    first_contact: int = 0
    reopened: int = 0


_NO_WINDOWS: dict[tuple[int, int], DayStats] = {}


@dataclass(slots=True)
class Support:
    # Tickets in the order first seen (evicted ones removed): see the module docstring.
    tickets: list[str] = field(default_factory=list)
    status_ids: list[str] = field(default_factory=list)
    facts: Pairs = field(default_factory=lambda: array(NUMBERS))
    resolutions: Pairs = field(default_factory=lambda: array(NUMBERS))  # (ticket, resolved_at, contacts)
    days: Pairs = field(default_factory=lambda: array(NUMBERS))  # (day, opened, ..., reopened)
    open_count: int = 0  # tickets with `OPEN_FLAG`
    ever: bool = False
    horizon_day: int = 0
    version: int = 0  # bumped on every change; keys the window memo
    _memo_version: int = -1
    # Starts as one empty dict shared by all (never read nor written: no version is -1, and
    # `window` replaces the memo whole when the version changes).
    _memo: dict[tuple[int, int], DayStats] = field(default_factory=lambda: _NO_WINDOWS)

    # -- tickets ----------------------------------------------------------------------------------

    def ticket_count(self) -> int:
        return len(self.tickets)

    def add_ticket(self, ticket_id: str, flags: int, opened_at: int, status_at: int, status_id: str) -> int:
        """Append a ticket not yet there (the codec's decoder; the event methods for events);
        returns its index."""
        self.tickets.append(ticket_id)
        self.status_ids.append(status_id)
        self.facts.extend((flags, opened_at, status_at))
        if flags & OPEN_FLAG:
            self.open_count += 1
        return len(self.tickets) - 1

    def flags(self, i: int) -> int:
        return self.facts[TICKET_FIELDS * i + _FLAGS]

    def opened_at(self, i: int) -> int | None:
        """When ticket i was opened, None if its opening has not arrived."""
        at = self.facts[TICKET_FIELDS * i + _OPENED_AT]
        return None if at == NEVER else at

    def status_at(self, i: int) -> tuple[int, str]:
        """The (event time, event id) of ticket i's latest resolution or reopen; (its earliest
        opening, "") while it has none, (-1, "") before any event."""
        return self.facts[TICKET_FIELDS * i + _STATUS_AT], self.status_ids[i]

    def ticket_resolutions(self, i: int) -> list[tuple[int, int]]:
        """Ticket i's (resolved_at, contacts), in the order they arrived."""
        found = self.resolutions
        return [(found[j + 1], found[j + 2]) for j in self._resolutions_of(i)]

    def _resolutions_of(self, i: int) -> list[int]:
        """The positions in `resolutions` of ticket i's (a search in C: there can be thousands)."""
        tickets = self.resolutions[::3]
        positions: list[int] = []
        start = 0
        while True:
            try:
                start = tickets.index(i, start)
            except ValueError:
                return positions
            positions.append(3 * start)
            start += 1

    def add_resolution(self, i: int, resolved_at: int, contacts: int) -> None:
        self.resolutions.extend((i, resolved_at, contacts))

    def _ticket(self, ticket_id: str, max_tickets: int) -> int:
        try:
            return self.tickets.index(ticket_id)
        except ValueError:
            pass
        if len(self.tickets) >= max_tickets:
            self._evict()
        return self.add_ticket(ticket_id, _NORMAL, NEVER, -1, "")

    def _evict(self) -> None:
        """Forget the resolved ticket with the oldest status change (or the oldest ticket)."""
        facts = self.facts
        pool = [i for i in range(len(self.tickets)) if facts[TICKET_FIELDS * i] & RESOLVED_FLAG]
        if not pool:
            pool = list(range(len(self.tickets)))
        gone = pool[0]
        for i in pool[1:]:
            if self.status_at(i) < self.status_at(gone):
                gone = i
        if facts[TICKET_FIELDS * gone] & OPEN_FLAG:
            self.open_count -= 1
        del self.tickets[gone]
        del self.status_ids[gone]
        del facts[TICKET_FIELDS * gone : TICKET_FIELDS * (gone + 1)]
        kept: list[int] = []
        found = self.resolutions
        for j in range(0, len(found), 3):
            ticket = found[j]
            if ticket != gone:
                kept += (ticket - (ticket > gone), found[j + 1], found[j + 2])
        self.resolutions = array(NUMBERS, kept)

    def _set_status(self, i: int, resolved: bool, at: int, event_id: str) -> None:
        self.version += 1
        base = TICKET_FIELDS * i
        facts = self.facts
        latest = self.status_ids[i]  # "": none yet, whatever the opening's time
        if not latest or (at, event_id) > (facts[base + _STATUS_AT], latest):
            facts[base + _STATUS_AT] = at
            self.status_ids[i] = event_id
            flags = facts[base] & PRIORITY_BITS
            if resolved:
                flags |= RESOLVED_FLAG
            elif facts[base + _OPENED_AT] != NEVER:
                flags |= OPEN_FLAG
            self.open_count += bool(flags & OPEN_FLAG) - bool(facts[base] & OPEN_FLAG)
            facts[base] = flags

    def opened(self, ticket_id: str, at: int, priority: str, max_tickets: int) -> None:
        """The first opening (by event time) counts the ticket and sets its priority (the most
        urgent of several at that instant), so the result does not depend on arrival order."""
        self.ever = True
        i = self._ticket(ticket_id, max_tickets)
        base = TICKET_FIELDS * i
        facts = self.facts
        rank = PRIORITIES.index(priority)
        opened_at = facts[base + _OPENED_AT]
        if opened_at == NEVER or at < opened_at:  # a ticket is counted once, on its first opening
            facts[base] = facts[base] & ~PRIORITY_BITS | rank
            facts[base + _OPENED_AT] = at
            resolutions = self.ticket_resolutions(i)
            if opened_at == NEVER:  # resolutions arrived before the opening: count them now
                for resolved_at, contacts in resolutions:
                    self._count_resolution(at, resolved_at, contacts)
            else:  # an earlier opening of the same ticket arrived late: it moves the counts
                self._uncount_opening(opened_at)
                for resolved_at, _ in resolutions:
                    self._move_resolution_time(resolved_at, opened_at, at)
            day = self._day(at)
            if day >= 0:
                self.days[day + _DAY_OPENED] += 1
        elif at == opened_at and rank > facts[base] & PRIORITY_BITS:
            facts[base] = facts[base] & ~PRIORITY_BITS | rank
        if not self.status_ids[i]:  # no resolution or reopen yet: its status is its opening
            facts[base + _STATUS_AT] = facts[base + _OPENED_AT]
        self.version += 1
        self._count_open(i)

    def _count_open(self, i: int) -> None:
        """Count ticket i open, its opening known, when its latest status is open: a reopen that
        arrived before the (older) opening it follows left it uncounted."""
        base = TICKET_FIELDS * i
        flags = self.facts[base]
        if not flags & (OPEN_FLAG | RESOLVED_FLAG):
            self.facts[base] = flags | OPEN_FLAG
            self.open_count += 1

    def _uncount_opening(self, opened_at: int) -> None:
        i = self._find_day(bucket_of(opened_at))
        if i >= 0:
            self.days[i + _DAY_OPENED] -= 1

    def resolved(self, ticket_id: str, at: int, event_id: str, contacts: int, max_tickets: int) -> None:
        self.ever = True
        i = self._ticket(ticket_id, max_tickets)
        found = self.resolutions
        mine = self._resolutions_of(i)
        same = [j for j in mine if found[j + 1] == at]
        if same:  # two resolutions at one instant: the fewest contacts, in any arrival order
            self._fewer_contacts(i, same[0], contacts)
        else:
            self.add_resolution(i, at, contacts)
            opened_at = self.facts[TICKET_FIELDS * i + _OPENED_AT]
            if opened_at != NEVER:
                self._count_resolution(opened_at, at, contacts)
            if len(mine) >= MAX_RESOLUTIONS:  # forget the earliest (it stays counted in its day)
                oldest = min(mine, key=lambda j: found[j + 1])
                if found[oldest + 1] < at:
                    del found[oldest : oldest + 3]
                else:
                    del found[len(found) - 3 :]
        self._set_status(i, True, at, event_id)

    def _fewer_contacts(self, i: int, j: int, contacts: int) -> None:
        """Keep the fewer contacts of two resolutions of ticket i at one instant (at `j` in
        `resolutions`), moving its first-contact count if it is counted already."""
        found = self.resolutions
        before = found[j + 2]
        if contacts >= before:
            return
        found[j + 2] = contacts
        if self.facts[TICKET_FIELDS * i + _OPENED_AT] != NEVER:
            day = self._find_day(bucket_of(found[j + 1]))
            if day >= 0:
                self.days[day + _DAY_FIRST_CONTACT] += (contacts == 1) - (before == 1)

    def reopened(self, ticket_id: str, at: int, event_id: str, max_tickets: int) -> None:
        self.ever = True
        i = self._ticket(ticket_id, max_tickets)
        day = self._day(at)
        if day >= 0:
            self.days[day + _DAY_REOPENED] += 1
        self._set_status(i, False, at, event_id)

    # -- day buckets ------------------------------------------------------------------------------

    def day_count(self) -> int:
        return len(self.days) // DAY_FIELDS

    def _day(self, at: int) -> int:
        """The position in `days` of the day of `at` (added if new), -1 before the horizon."""
        day = bucket_of(at)
        if day < self.horizon_day:
            return -1
        found = self._find_day(day)
        if found >= 0:
            return found
        days = self.days
        days.extend((day, 0, 0, 0, 0, 0))
        return len(days) - DAY_FIELDS

    def _find_day(self, day: int) -> int:
        """The position in `days` of day bucket `day`, or -1 when it has none."""
        days = self.days
        for i in range(len(days) - DAY_FIELDS, -1, -DAY_FIELDS):  # recent days are last
            if days[i] == day:
                return i
        return -1

    def _move_resolution_time(self, resolved_at: int, before: int, after: int) -> None:
        """A resolution counted against the opening at `before` now counts against `after`."""
        i = self._find_day(bucket_of(resolved_at))
        if i >= 0:
            self.days[i + _DAY_RESOLUTION_MS] += max(0, resolved_at - after) - max(0, resolved_at - before)

    def _count_resolution(self, opened_at: int, resolved_at: int, contacts: int) -> None:
        i = self._day(resolved_at)
        if i < 0:
            return
        days = self.days
        days[i + _DAY_RESOLVED] += 1
        days[i + _DAY_RESOLUTION_MS] += max(0, resolved_at - opened_at)
        days[i + _DAY_FIRST_CONTACT] += contacts == 1

    def expire(self, today: int) -> None:
        horizon = today - HORIZON_DAYS + 1
        if horizon <= self.horizon_day:
            return
        self.horizon_day = horizon
        self.version += 1
        days = self.days
        if any(days[i] < horizon for i in range(0, len(days), DAY_FIELDS)):
            self.days = array(
                NUMBERS,
                [
                    value
                    for i in range(0, len(days), DAY_FIELDS)
                    if days[i] >= horizon
                    for value in days[i : i + DAY_FIELDS]
                ],
            )

    # -- queries ----------------------------------------------------------------------------------

    def _open(self) -> list[int]:
        """Indexes of the tickets counted open (latest status open, opening known)."""
        facts = self.facts
        return [i for i in range(len(self.tickets)) if facts[TICKET_FIELDS * i] & OPEN_FLAG]

    def open_by_priority(self) -> dict[str, int]:
        counts = dict.fromkeys(PRIORITIES, 0)
        if self.open_count:
            for i in self._open():
                counts[PRIORITIES[self.facts[TICKET_FIELDS * i] & PRIORITY_BITS]] += 1
        return counts

    def oldest_open_hours(self, now: int) -> float | None:
        if not self.open_count:
            return None
        oldest = min(self.facts[TICKET_FIELDS * i + _OPENED_AT] for i in self._open())
        return max(0, now - oldest) / HOUR

    def urgent_open_over(self, now: int, hours: float) -> list[str]:
        if not self.open_count:
            return []
        limit = hours * HOUR
        urgent = PRIORITIES.index("urgent")
        facts = self.facts
        return sorted(
            self.tickets[i]
            for i in self._open()
            if facts[TICKET_FIELDS * i] & PRIORITY_BITS == urgent
            and now - facts[TICKET_FIELDS * i + _OPENED_AT] > limit
        )

    def window(self, end: int, days: int) -> DayStats:
        """Sums over the `days` days ending with day `end` (memoised until the next change)."""
        if self._memo_version != self.version or len(self._memo) > 16:
            self._memo_version, self._memo = self.version, {}
        memo = self._memo.get((end, days))
        if memo is None:
            memo = self._memo[(end, days)] = self._window(end, days)
        return memo

    def _window(self, end: int, days: int) -> DayStats:
        total = DayStats()
        start = end - days + 1
        found = self.days
        for i in range(0, len(found), DAY_FIELDS):  # sparse: only days with ticket activity
            if start <= found[i] <= end:
                total.opened += found[i + _DAY_OPENED]
                total.resolved += found[i + _DAY_RESOLVED]
                total.resolution_ms += found[i + _DAY_RESOLUTION_MS]
                total.first_contact += found[i + _DAY_FIRST_CONTACT]
                total.reopened += found[i + _DAY_REOPENED]
        return total
