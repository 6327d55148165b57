"""The account page's answers, pure: history rows, MRR movements and the timeline of what happened,
inferred from consecutive history points (see `streamer.projection.history`).

The timeline says what changed between two points, at the later point's `as_of`: an MRR movement,
a cancellation scheduled or withdrawn, a renewal, a failed payment, tickets opened, resolved or
reopened, survey answers, usage stopping or resuming, a band change. Where points are a day apart
(older than three days) changes of the same day are netted: the timeline is as fine as the history.
Survey comments come with their own time from the snapshot, alerts from the alert list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Any

from streamer.core.clock import iso
from streamer.core.revenue import MOVEMENTS, classify
from streamer.projection.history import Point


class Kind(StrEnum):
    """What a timeline entry is about (one bounded list each)."""

    subscription = "subscription"
    tickets = "tickets"
    surveys = "surveys"
    usage = "usage"
    health = "health"
    alerts = "alerts"


SILENT_DAYS = 7  # usage "stopped" once the last use is this many days back


def history_rows(points: Sequence[Point]) -> list[dict[str, Any]]:
    """The points as the API gives them, oldest first."""
    return [
        {
            "as_of": iso(p.as_of),
            "score": p.score,
            "band": p.band,
            "lifecycle_stage": p.stage,
            "mrr": p.mrr,
            "components": dict(p.components),
            "override_band": p.override_band,
        }
        for p in points
    ]


def movements(points: Sequence[Point], since: int | None = None) -> list[dict[str, Any]]:
    """Each MRR change between consecutive points, classified as the portfolio's monthly
    movements are (`streamer.core.revenue.classify`), oldest first; those at `since` or after
    only, when given (classified over every point all the same: whether the account paid before
    tells a reactivation from new revenue)."""
    found: list[dict[str, Any]] = []
    paid = False
    for before, after in pairwise(points):
        paid = paid or Decimal(before.mrr) > 0
        old, new = Decimal(before.mrr), Decimal(after.mrr)
        kind = classify(_micros(old), _micros(new), paid)
        if kind is None or (since is not None and after.as_of < since):
            continue
        found.append(
            {
                "at": iso(after.as_of),
                "kind": MOVEMENTS[kind],
                "from": before.mrr,
                "to": after.mrr,
                "change": f"{new - old:.2f}",
            }
        )
    return found


def _micros(mrr: Decimal) -> int:
    return int(mrr.scaleb(6).to_integral_value())


def _count(value: int | float | None) -> int:
    return int(value or 0)


def _changes(before: Point, after: Point) -> Iterable[tuple[Kind, str]]:
    """What happened between two consecutive points, in plain words."""
    if (
        after.scheduled_cancellation_at
        and after.scheduled_cancellation_at != before.scheduled_cancellation_at
    ):
        yield Kind.subscription, f"cancellation scheduled for {iso(after.scheduled_cancellation_at)[:10]}"
    elif before.scheduled_cancellation_at and not after.scheduled_cancellation_at and Decimal(after.mrr) > 0:
        yield Kind.subscription, "scheduled cancellation withdrawn"
    if after.renewal_at and before.renewal_at and after.renewal_at > before.renewal_at:
        yield Kind.subscription, f"renewed: next renewal {iso(after.renewal_at)[:10]}"
    failures = _count(after.payment_failures_30d) - _count(before.payment_failures_30d)
    if failures > 0:
        yield Kind.subscription, f"payment failed ({_count(after.payment_failures_30d)} in 30 days)"
    opened = _count(after.open_tickets) - _count(before.open_tickets)
    if opened > 0:
        yield (
            Kind.tickets,
            f"{opened} ticket{'s' if opened > 1 else ''} opened ({_count(after.open_tickets)} open)",
        )
    elif opened < 0:
        yield (
            Kind.tickets,
            f"{-opened} ticket{'s' if opened < -1 else ''} resolved ({_count(after.open_tickets)} open)",
        )
    if _count(after.reopens_90d) > _count(before.reopens_90d):
        yield Kind.tickets, "a ticket was reopened"
    answers = _count(after.nps_respondents) - _count(before.nps_respondents)
    if answers > 0:
        yield (
            Kind.surveys,
            f"{answers} new NPS respondent{'s' if answers > 1 else ''} "
            f"({_count(after.nps_respondents)} in 180 days)",
        )
    idle_before, idle_after = before.days_since_last_use, after.days_since_last_use
    if idle_before is not None and idle_after is not None:
        if idle_after < idle_before and idle_before >= SILENT_DAYS:
            yield Kind.usage, f"usage resumed after {idle_before:.0f} days without use"
        elif idle_before < SILENT_DAYS <= idle_after:
            yield Kind.usage, f"no product usage for {idle_after:.0f} days"
    events_before, events_after = before.events_28d, after.events_28d
    if (
        events_before
        and events_after is not None
        and abs(events_after - events_before) >= 0.25 * events_before
    ):
        change = (events_after - events_before) / events_before
        yield (
            Kind.usage,
            f"usage {'up' if change > 0 else 'down'} {abs(change):.0%}: {events_after:.0f} events in 28 days",
        )
    if after.band != before.band:
        yield Kind.health, f"band {before.band} → {after.band} (score {before.score:.1f} → {after.score:.1f})"
    if after.override_band != before.override_band:
        yield (
            Kind.health,
            (f"override set: {after.override_band}" if after.override_band else "override ended"),
        )


def timeline(
    points: Sequence[Point],
    movement_list: Sequence[dict[str, Any]],
    comments: Sequence[dict[str, Any]],
    alerts: Sequence[dict[str, Any]],
    per_kind: int,
) -> list[dict[str, Any]]:
    """The newest `per_kind` entries of each kind, newest first: {at, kind, text}."""
    entries: list[tuple[int | str, Kind, str]] = []
    for move in movement_list:
        entries.append((move["at"], Kind.subscription, f"MRR {move['kind']}: {move['from']} → {move['to']}"))
    for before, after in pairwise(points):
        entries += [(iso(after.as_of), kind, text) for kind, text in _changes(before, after)]
    for comment in comments:
        entries.append(
            (comment["at"], Kind.surveys, f"{comment['survey']} {comment['score']}: “{comment['comment']}”")
        )
    for alert in alerts:
        first = alert["reasons"][0]["message"] if alert.get("reasons") else ""
        entries.append(
            (alert["raised_at"], Kind.alerts, f"{alert['severity']} {alert['rule']}: {first}".strip(": "))
        )
    kept: dict[Kind, int] = {}
    answer: list[dict[str, Any]] = []
    for at, kind, text in sorted(entries, key=lambda entry: str(entry[0]), reverse=True):
        if kept.get(kind, 0) >= per_kind:
            continue
        kept[kind] = kept.get(kind, 0) + 1
        answer.append({"at": at, "kind": kind.value, "text": text})
    return answer
