"""Subscription rows (active on [start, end), with MRR) -> subscription contract events (pure).

An account's rows are grouped into lines: one plan line (whatever the plan) and one line per
add-on product. Within a line, rows are taken in start order: a row that starts where the
previous one ended (or inside it) continues the subscription (`subscription.renewed` when
nothing but the dates changed, `subscription.changed` otherwise); a row that starts after a gap
begins a new subscription, the old one being canceled at its end. The last row's end is a
cancellation unless it is at or after the end of the data (the export date): then the
subscription is simply still running. A cancellation is published when it takes effect (the
tables do not say when the customer decided), so a backtest cannot see it coming.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from functools import lru_cache
from itertools import groupby
from typing import Any

PLAN_LINE = "plan"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """One subscription row, parsed; `months` is the billing period in months."""

    account: str
    product: str
    start: datetime
    end: datetime | None  # None: open-ended
    mrr: Decimal
    seats: int | None
    months: int
    addon: bool
    source: tuple[str, int] = ("", 0)  # file and line, for messages

    @property
    def line(self) -> str:
        return self.product if self.addon else PLAN_LINE

    @property
    def state(self) -> tuple[str, Decimal, int | None, int]:
        """What a `subscription.changed` would carry apart from the dates."""
        return self.product, self.mrr, self.seats, self.months


@dataclass(frozen=True, slots=True)
class Imported:
    """A contract event and its event time (epoch ms), ready to be sorted and written."""

    at: int
    event: dict[str, Any]
    source: tuple[str, int] = ("", 0)  # file and line of the (first) row it comes from
    rows: int = 1  # rows it stands for


@dataclass
class SubscriptionCounts:
    by_type: Counter[str] = field(default_factory=Counter)
    after_end: int = 0  # rows starting after the end of the data, left out
    subscriptions: int = 0


def rfc3339(moment: datetime) -> str:
    """UTC, whole seconds or milliseconds: `2024-03-05T14:03:00Z`."""
    return rfc3339_ms(epoch_ms(moment))


@lru_cache(maxsize=4096)
def _day_text(day: int) -> str:
    moment = EPOCH + timedelta(days=day)
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"  # strftime drops a year's zeros


def rfc3339_ms(ms: int) -> str:
    """`rfc3339` of an epoch-ms instant, without a datetime per call (millions of usage events)."""
    seconds, milli = divmod(ms, 1000)
    day, rest = divmod(seconds, 86_400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    fraction = f".{milli:03d}" if milli else ""
    return f"{_day_text(day)}T{hour:02d}:{minute:02d}:{second:02d}{fraction}Z"


def epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def event_id(*parts: object) -> str:
    """A deterministic id from what makes the event: importing the same rows again gives the same id."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return f"imp-{digest}"


# Exact for any amount and count the importer reads (their size is bounded when parsed).
EXACT = Context(prec=80, traps=[InvalidOperation, Overflow, Inexact])


def _amount(row: SubscriptionRow) -> str:
    """The charge per billing interval: MRR x months in the interval (exact, so MRR comes back
    exact), as a plain decimal (`300`, never `3E+2`)."""
    return format(EXACT.multiply(row.mrr, Decimal(row.months)), "f")


def _subscription_id(row: SubscriptionRow, number: int) -> str:
    return f"{row.account}:{row.line}:{number}"


def _event(kind: str, subscription_id: str, at: datetime, row: SubscriptionRow, **fields: Any) -> Imported:
    ident = event_id(row.account, subscription_id, kind, at.isoformat(), *row.state, row.end)
    event = {
        "event_id": ident,
        "event_type": kind,
        "account_id": row.account,
        "occurred_at": rfc3339(at),
        "subscription_id": subscription_id,
        **fields,
    }
    return Imported(epoch_ms(at), event, row.source)


def _state_event(kind: str, subscription_id: str, row: SubscriptionRow, currency: str) -> Imported:
    """A `subscription.started` or `.changed` carrying the row's plan, amount, seats and term."""
    fields: dict[str, Any] = {
        "plan": row.product,
        "amount": _amount(row),
        "currency": currency,
        "interval": "month",
        "interval_count": row.months,
    }
    if row.seats is not None:
        fields["seats"] = row.seats
    if row.end is not None:
        fields["term_end"] = rfc3339(row.end)
    return _event(kind, subscription_id, row.start, row, **fields)


def started_event(row: SubscriptionRow, currency: str) -> dict[str, Any]:
    """The `subscription.started` the row would begin: every value of the row in one event, to
    check it as the consumers will before the rows are joined into subscriptions."""
    return _state_event("subscription.started", _subscription_id(row, 1), row, currency).event


def subscription_events(
    rows: Iterable[SubscriptionRow], data_end: datetime, currency: str, counts: SubscriptionCounts
) -> Iterator[Imported]:
    """The contract events of all rows (any order), per account and line, in time order per line."""
    ordered = sorted(rows, key=lambda row: (row.account, row.line, row.start, row.end or data_end))
    for (account, line), group in groupby(ordered, key=lambda row: (row.account, row.line)):
        yield from _line_events(account, line, list(group), data_end, currency, counts)


def _line_events(
    account: str,
    line: str,
    rows: list[SubscriptionRow],
    data_end: datetime,
    currency: str,
    counts: SubscriptionCounts,
) -> Iterator[Imported]:
    number = 0
    current: SubscriptionRow | None = None
    subscription_id = ""

    def make(kind: str, at: datetime, row: SubscriptionRow, **fields: Any) -> Imported:
        counts.by_type[kind] += 1
        return _event(kind, subscription_id, at, row, **fields)

    def state(kind: str, row: SubscriptionRow) -> Imported:
        counts.by_type[kind] += 1
        return _state_event(kind, subscription_id, row, currency)

    for row in rows:
        if row.start > data_end:
            counts.after_end += 1
            continue
        if current is not None and current.end is not None and row.start > current.end:
            yield make("subscription.canceled", current.end, current, effective_at=rfc3339(current.end))
            current = None
        if current is None:
            number += 1
            counts.subscriptions += 1
            subscription_id = _subscription_id(row, number)
            yield state("subscription.started", row)
        elif row.state != current.state:
            yield state("subscription.changed", row)
        elif row.end is not None and row.end != current.end:
            yield make("subscription.renewed", row.start, row, term_end=rfc3339(row.end))
        current = row
    if current is not None and current.end is not None and current.end < data_end:
        yield make("subscription.canceled", current.end, current, effective_at=rfc3339(current.end))
