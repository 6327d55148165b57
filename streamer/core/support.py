"""Support-ticket state per account: open tickets by priority, resolution windows, reopens.

Per-ticket status is last-writer-by-event-time, so opened/resolved/reopened may arrive in any
order. Windowed figures (ART, FCR, reopens, volume) live in day buckets of `HORIZON_DAYS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamer.core.clock import HOUR, bucket_of

HORIZON_DAYS = 120  # ART/FCR/reopens over 90 days; volume over 30 days vs the 90 before
PRIORITIES = ("low", "normal", "high", "urgent")

OPEN, RESOLVED = "open", "resolved"


@dataclass(slots=True)
class Ticket:
    priority: str = "normal"
    opened_at: int | None = None
    status: str = OPEN
    status_at: tuple[int, str] = (-1, "")
    resolutions: dict[int, int] = field(default_factory=dict)  # resolved_at -> contacts


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
    tickets: dict[str, Ticket] = field(default_factory=dict)
    # Tickets whose latest status is open, as the keys of a dict (an empty dict is 64 bytes, an
    # empty set 216, and most accounts have no open ticket; nothing depends on the order).
    open_ids: dict[str, None] = field(default_factory=dict)
    days: dict[int, DayStats] = field(default_factory=dict)
    ever: bool = False
    horizon_day: int = 0
    version: int = 0  # bumped on every change; keys the window memo
    _memo_version: int = -1
    # Starts as one empty dict shared by all (never read nor written: no version is -1, and
    # `window` replaces the memo whole when the version changes).
    _memo: dict[tuple[int, int], DayStats] = field(default_factory=lambda: _NO_WINDOWS)

    def _day(self, at: int) -> DayStats | None:
        day = bucket_of(at)
        if day < self.horizon_day:
            return None
        stats = self.days.get(day)
        if stats is None:
            stats = self.days[day] = DayStats()
        return stats

    def _ticket(self, ticket_id: str, max_tickets: int) -> Ticket:
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            if len(self.tickets) >= max_tickets:
                self._evict()
            ticket = self.tickets[ticket_id] = Ticket()
        return ticket

    def _evict(self) -> None:
        """Forget the resolved ticket with the oldest status change (or the oldest ticket)."""
        resolved = [tid for tid, t in self.tickets.items() if t.status == RESOLVED]
        pool = resolved or list(self.tickets)
        gone = min(pool, key=lambda tid: self.tickets[tid].status_at)
        del self.tickets[gone]
        self.open_ids.pop(gone, None)

    def _set_status(self, ticket_id: str, ticket: Ticket, status: str, at: int, event_id: str) -> None:
        self.version += 1
        if (at, event_id) > ticket.status_at:
            ticket.status, ticket.status_at = status, (at, event_id)
            if status == OPEN and ticket.opened_at is not None:
                self.open_ids[ticket_id] = None
            else:
                self.open_ids.pop(ticket_id, None)

    def opened(self, ticket_id: str, at: int, event_id: str, priority: str, max_tickets: int) -> None:
        self.ever = True
        ticket = self._ticket(ticket_id, max_tickets)
        ticket.priority = priority
        if ticket.opened_at is None or at < ticket.opened_at:
            late_resolutions = ticket.opened_at is None and ticket.resolutions
            ticket.opened_at = at
            if late_resolutions:  # resolutions arrived before the opening: count them now
                for resolved_at, contacts in ticket.resolutions.items():
                    self._count_resolution(at, resolved_at, contacts)
        stats = self._day(at)
        if stats is not None:
            stats.opened += 1
        self._set_status(ticket_id, ticket, OPEN, at, event_id)

    def resolved(self, ticket_id: str, at: int, event_id: str, contacts: int, max_tickets: int) -> None:
        self.ever = True
        ticket = self._ticket(ticket_id, max_tickets)
        if at not in ticket.resolutions:
            ticket.resolutions[at] = contacts
            if ticket.opened_at is not None:
                self._count_resolution(ticket.opened_at, at, contacts)
        self._set_status(ticket_id, ticket, RESOLVED, at, event_id)

    def reopened(self, ticket_id: str, at: int, event_id: str, max_tickets: int) -> None:
        self.ever = True
        ticket = self._ticket(ticket_id, max_tickets)
        stats = self._day(at)
        if stats is not None:
            stats.reopened += 1
        self._set_status(ticket_id, ticket, OPEN, at, event_id)

    def _count_resolution(self, opened_at: int, resolved_at: int, contacts: int) -> None:
        stats = self._day(resolved_at)
        if stats is None:
            return
        stats.resolved += 1
        stats.resolution_ms += max(0, resolved_at - opened_at)
        stats.first_contact += contacts == 1

    def expire(self, today: int) -> None:
        horizon = today - HORIZON_DAYS + 1
        if horizon <= self.horizon_day:
            return
        self.horizon_day = horizon
        self.version += 1
        for day in [d for d in self.days if d < horizon]:
            del self.days[day]

    # -- queries ----------------------------------------------------------------------------------

    def open_tickets(self) -> list[Ticket]:
        """Tickets whose latest status is open (the latest folded in, whatever its time)."""
        return [self.tickets[tid] for tid in self.open_ids]

    def open_by_priority(self) -> dict[str, int]:
        counts = dict.fromkeys(PRIORITIES, 0)
        for ticket in self.open_tickets():
            counts[ticket.priority] += 1
        return counts

    def oldest_open_hours(self, now: int) -> float | None:
        opened = [t.opened_at for t in self.open_tickets() if t.opened_at is not None]
        return max(0, now - min(opened)) / HOUR if opened else None

    def urgent_open_over(self, now: int, hours: float) -> list[str]:
        limit = hours * HOUR
        return sorted(
            tid
            for tid in self.open_ids
            if (t := self.tickets[tid]).priority == "urgent"
            and t.opened_at is not None
            and now - t.opened_at > limit
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
        for day, stats in self.days.items():  # sparse: only days with ticket activity
            if start <= day <= end:
                total.opened += stats.opened
                total.resolved += stats.resolved
                total.resolution_ms += stats.resolution_ms
                total.first_contact += stats.first_contact
                total.reopened += stats.reopened
        return total
