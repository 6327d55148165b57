"""Subscription rows (active on [start, end), with MRR) -> subscription contract events (pure).

An account's rows are grouped into lines: one plan line (whatever the plan) and one line per
add-on product. Within a line, rows are taken in start order: a row that starts where the
previous one ended (or inside it) continues the subscription (`subscription.renewed` when
nothing but the dates changed, `subscription.changed` otherwise); a row that starts after a gap
begins a new subscription, the old one being canceled at its end. The last row's end is a
cancellation unless it is at or after the end of the data (the export date): then the
subscription is simply still running. A cancellation is published when it takes effect (the
tables do not say when the customer decided), so a backtest cannot see it coming.

An open-ended row that continues a term renews at the end of each billing period until the end
of the data (`billing_terms`): no event takes a term end back.

Rows that cannot be chained so (`conflicts`: two rows of one product at once, two plans from
the same day, a plan row inside another) must be taken out before the events are made: the
caller reports them as bad rows.
"""

from __future__ import annotations

import hashlib
from calendar import monthrange
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from enum import StrEnum
from functools import lru_cache
from itertools import groupby
from typing import Any

from pydantic import TypeAdapter, ValidationError

from streamer.contract.events import Id

PLAN_LINE = "plan"
ADDON_MARK = "addon="  # in front of an add-on's line name that could be taken for another's
HASHED_MARK = ADDON_MARK + "#"  # in front of the hash of an add-on's name that is no part of an id
CONTRACT_ID: TypeAdapter[str] = TypeAdapter(Id)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_DAY = timedelta(days=1)


def addon_line(product: str) -> str:
    """The line name of add-on `product` (in line keys and subscription ids): the product, or
    `addon=` and the product for one named `plan` (the plan line's name: both lines merged into
    one subscription) or already starting with `addon=`, so that no two lines share a name and
    the ids of every other add-on stay as they were."""
    return ADDON_MARK + product if product == PLAN_LINE or product.startswith(ADDON_MARK) else product


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
        return addon_line(self.product) if self.addon else PLAN_LINE

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
    # cancellations at a gap of exactly one day before the line's next row: end dates written
    # inclusive (the last day paid) read so, every renewal as a churn and a new subscription
    next_day: int = 0


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
    """A deterministic id from what makes the event: importing the same rows again gives the same id.

    The parts are joined with "|", each with its own "|" and "\\" escaped: unescaped, user
    "u|login" with feature "x" and user "u" with feature "login|x" (Auth0's ids hold a "|") made
    one id, and the second event was counted as a duplicate. A part without either character is
    written as before: only rows holding one get another id than an earlier release gave them."""
    joined = "|".join(str(part).replace("\\", "\\\\").replace("|", "\\|") for part in parts)
    digest = hashlib.blake2b(joined.encode(), digest_size=12).hexdigest()
    return f"imp-{digest}"


# Exact for any amount and count the importer reads (their size is bounded when parsed).
EXACT = Context(prec=80, traps=[InvalidOperation, Overflow, Inexact])


AMOUNT_PLACES = 6  # the contract's decimal places in an amount


def _amount(row: SubscriptionRow) -> str:
    """The charge per billing interval: MRR x months in the interval (exact, so MRR comes back
    exact), as a plain decimal (`300`, never `3E+2`). Trailing zeros past the contract's six
    decimal places are dropped (`100.00000000` from a NUMERIC(18,8) column is `100`); the
    places of an amount within them are kept as written (`29.00`)."""
    text = format(EXACT.multiply(row.mrr, Decimal(row.months)), "f")
    whole, _, places = text.partition(".")
    if len(places) > AMOUNT_PLACES:
        places = places.rstrip("0")  # more places than that still: the contract refuses it
        text = f"{whole}.{places}" if places else whole
    return text


def _subscription_id(row: SubscriptionRow, number: int) -> str:
    """`ACCOUNT:LINE:N`; for an add-on whose name cannot be part of an id there (a no-break
    space, a variation selector, not in NFC form, too long), `ACCOUNT:addon=#HASH:N`."""
    readable = f"{row.account}:{row.line}:{number}"
    if not row.addon or _is_id(readable):
        return readable
    return f"{row.account}:{hashed_line(row.product)}:{number}"


def hashed_line(product: str) -> str:
    """The line name of add-on `product` in ids when its own cannot be: a hash of it, the same on
    every run, marked so that it cannot be another add-on's line name (`addon_line`)."""
    return HASHED_MARK + hashlib.blake2b(product.encode(), digest_size=6).hexdigest()


def _is_id(text: str) -> bool:
    """Whether the contract takes `text` as an id."""
    try:
        CONTRACT_ID.validate_python(text)
    except ValidationError:
        return False
    return True


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
    rows: Iterable[SubscriptionRow],
    data_end: datetime,
    currency: str,
    counts: SubscriptionCounts,
    renew_until: datetime | None = None,
) -> Iterator[Imported]:
    """The contract events of all rows (any order), per account and line, in time order per line.
    `renew_until`: the latest instant an open-ended row's renewals are written for (the time the
    events count as published, when the end of the data is later: a renewal after it has not
    happened yet, and would be refused as dated in the future)."""
    ordered = sorted(rows, key=lambda row: (row.account, row.line, row.start, row.end or data_end))
    until = data_end if renew_until is None else min(data_end, renew_until)
    for (account, line), group in groupby(ordered, key=lambda row: (row.account, row.line)):
        yield from _line_events(account, line, list(group), data_end, currency, counts, until)


def _line_events(
    account: str,
    line: str,
    rows: list[SubscriptionRow],
    data_end: datetime,
    currency: str,
    counts: SubscriptionCounts,
    renew_until: datetime,
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
            if row.start - current.end == ONE_DAY:
                counts.next_day += 1
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
        if row.end is None and current is not None and current.end is not None:
            if not terms_end_by_9999(current.end, row.months, data_end):  # before any event is made
                raise TermsPastYear9999(row, current.end)
            terms = billing_terms(current.end, row.months, renew_until)
            yield from (make("subscription.renewed", at, row, term_end=rfc3339(end)) for at, end in terms)
        current = row
    if current is not None and current.end is not None and current.end < data_end:
        yield make("subscription.canceled", current.end, current, effective_at=rfc3339(current.end))


def billing_terms(start: datetime, months: int, data_end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """(renewed at, term end) for each billing period from `start` until one runs past the end of
    the data: the terms of an open-ended row that continues a term ending at `start`. No event
    takes a term end back, so without them the account read as past that renewal for good; with
    them it renews at each period end, as the same history written one row per period would."""
    at = start
    while at <= data_end:
        try:
            end = add_months(at, months)
        except ValueError:  # year 10000
            raise TermsPastYear9999() from None
        yield at, end
        at = end


def terms_end_by_9999(start: datetime, months: int, data_end: datetime) -> bool:
    """Whether `billing_terms(start, months, data_end)` ends before year 10000, reckoned without
    making the terms (each a month or more: a far end of the data made millions of them first)."""
    passed = (data_end.year - start.year) * 12 + data_end.month - start.month  # months, about
    periods = max(0, passed // months - 1)  # terms that end by the end of the data, at most
    while True:  # the first term to end past the end of the data: two or three steps
        try:
            end = add_months(start, periods * months)
        except ValueError:  # year 10000
            return False
        if end > data_end:
            return True
        periods += 1


class TermsPastYear9999(ValueError):
    """Billing terms of an open-ended `row` (continuing a term that ended at `since`) that would
    run past 9999-12-31, the last day a date can have, before reaching the end of the data."""

    def __init__(self, row: SubscriptionRow | None = None, since: datetime | None = None) -> None:
        super().__init__("a billing term would end after year 9999")
        self.row, self.since = row, since


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` `months` calendar months later, on the same day or the month's last (01-31 + 1
    month: 02-29 in a leap year)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, monthrange(year, month)[1]))


class Conflict(StrEnum):
    """Why a row cannot be chained into its line: the events would say something else."""

    same_product = "same-product"  # starts while a row of its product runs: a second licence
    same_start = "same-start"  # a plan row from the day another plan's row starts: two plans at once
    nested = "nested"  # a plan row ending before the plan row it starts in: that plan would resume


@dataclass(frozen=True, slots=True)
class Refusal:
    """A row that conflicts with an `earlier` row of its account (`Conflict`)."""

    row: SubscriptionRow
    earlier: SubscriptionRow
    conflict: Conflict


def conflicts(rows: list[SubscriptionRow], data_end: datetime | None) -> list[Refusal]:
    """The rows that `subscription_events` cannot chain into their line, each with the row it
    conflicts with (the first in start order is kept). `data_end`: the export date when known,
    after which a row is left out and so chains with nothing."""
    refused = list(_product_overlaps(rows))
    taken = {id(refusal.row) for refusal in refused}
    kept = [row for row in rows if id(row) not in taken and (data_end is None or row.start <= data_end)]
    return refused + list(_line_conflicts(kept))


def _product_overlaps(rows: list[SubscriptionRow]) -> Iterator[Refusal]:
    """Each row that starts while an earlier row of the same account and product still runs. The
    rows of a line chain into one subscription, a row starting inside the previous one read as
    a change of it: two concurrent rows of one product (a second licence) lost the first one's
    MRR, silently."""
    by_product = sorted(rows, key=lambda row: (row.account, row.product, row.start))
    for _, group in groupby(by_product, key=lambda row: (row.account, row.product)):
        running: SubscriptionRow | None = None  # the row that ends last so far
        for row in group:
            if running is not None and (running.end is None or row.start < running.end):
                yield Refusal(row, running, Conflict.same_product)
                continue
            running = row


def _line_conflicts(rows: list[SubscriptionRow]) -> Iterator[Refusal]:
    """The rows of a line that do not continue, change or follow the row before them (the one
    ending last of those kept): `_line_conflict`."""
    ordered = sorted(rows, key=lambda row: (row.account, row.line, row.start, row.source))
    for _, group in groupby(ordered, key=lambda row: (row.account, row.line)):
        running: SubscriptionRow | None = None
        for row in group:
            conflict = _line_conflict(running, row)
            if running is not None and conflict is not None:
                yield Refusal(row, running, conflict)
            else:
                running = row


def _line_conflict(running: SubscriptionRow | None, row: SubscriptionRow) -> Conflict | None:
    """Why `row` (starting at or after `running` in its line) cannot follow it: None when it
    starts after a gap (a new subscription), where `running` ends (a renewal or a change) or,
    on the plan line, inside it and runs at least as long (a change of plan mid-term)."""
    if running is None or (running.end is not None and row.start > running.end):
        return None
    if running.end is not None and row.start == running.end:
        return None
    if row.start == running.start:
        return Conflict.same_start
    if row.end is not None and (running.end is None or row.end < running.end):
        return Conflict.nested
    return None
