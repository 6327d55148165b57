"""Builders for contract events in tests.

Each builder makes the JSON object a producer would send and decodes it with `decode_event`,
exactly as a worker does, so the tests exercise the real contract. `raw_*` gives the dict.
Times are datetimes or RFC 3339 strings; `at(day, hour)` counts from `T0` (Monday 2024-01-01).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from streamer.contract.decode import decode_event
from streamer.contract.events import Event

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

_ids = itertools.count(1)

When = datetime | str


def at(day: float = 0, hour: float = 0, minute: float = 0) -> datetime:
    """`T0` plus `day` days, `hour` hours and `minute` minutes."""
    return T0 + timedelta(days=day, hours=hour, minutes=minute)


def stamp(when: When) -> str:
    """RFC 3339 text, 'Z' for UTC."""
    if isinstance(when, str):
        return when
    return when.isoformat().replace("+00:00", "Z")


def ms(when: When) -> int:
    """Epoch milliseconds of a datetime or RFC 3339 text (computed without the code under test)."""
    moment = datetime.fromisoformat(when) if isinstance(when, str) else when
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def raw(event_type: str, account: str, when: When, event_id: str | None = None, **fields: Any) -> dict:
    """The JSON object of one event; fields that are None are left out."""
    record = {
        "event_id": event_id or f"{event_type}-{next(_ids)}",
        "event_type": event_type,
        "account_id": account,
        "occurred_at": stamp(when),
    }
    for name, value in fields.items():
        if value is not None:
            record[name] = stamp(value) if isinstance(value, datetime) else value
    return record


def decode(record: dict) -> Event:
    return decode_event(orjson.dumps(record))


def event(event_type: str, account: str, when: When, event_id: str | None = None, **fields: Any) -> Event:
    return decode(raw(event_type, account, when, event_id, **fields))


def _state(
    event_type: str,
    account: str,
    when: When,
    amount: str | int,
    sub: str,
    plan: str,
    currency: str,
    interval: str,
    interval_count: int | None,
    seats: int | None,
    term_end: When | None,
    event_id: str | None,
) -> Event:
    return event(
        event_type,
        account,
        when,
        event_id,
        subscription_id=sub,
        plan=plan,
        amount=amount,
        currency=currency,
        interval=interval,
        interval_count=interval_count,
        seats=seats,
        term_end=term_end,
    )


def started(
    account: str,
    when: When,
    amount: str | int = "100.00",
    *,
    sub: str = "s1",
    plan: str = "pro",
    currency: str = "USD",
    interval: str = "month",
    interval_count: int | None = None,
    seats: int | None = None,
    term_end: When | None = None,
    event_id: str | None = None,
) -> Event:
    return _state(
        "subscription.started",
        account,
        when,
        amount,
        sub,
        plan,
        currency,
        interval,
        interval_count,
        seats,
        term_end,
        event_id,
    )


def changed(
    account: str,
    when: When,
    amount: str | int = "100.00",
    *,
    sub: str = "s1",
    plan: str = "pro",
    currency: str = "USD",
    interval: str = "month",
    interval_count: int | None = None,
    seats: int | None = None,
    term_end: When | None = None,
    event_id: str | None = None,
) -> Event:
    return _state(
        "subscription.changed",
        account,
        when,
        amount,
        sub,
        plan,
        currency,
        interval,
        interval_count,
        seats,
        term_end,
        event_id,
    )


def renewed(
    account: str, when: When, term_end: When, *, sub: str = "s1", event_id: str | None = None
) -> Event:
    return event("subscription.renewed", account, when, event_id, subscription_id=sub, term_end=term_end)


def canceled(
    account: str,
    when: When,
    *,
    sub: str = "s1",
    effective_at: When | None = None,
    event_id: str | None = None,
) -> Event:
    return event(
        "subscription.canceled", account, when, event_id, subscription_id=sub, effective_at=effective_at
    )


def payment_failed(
    account: str, when: When, attempt: int = 1, *, sub: str = "s1", event_id: str | None = None
) -> Event:
    return event("subscription.payment_failed", account, when, event_id, subscription_id=sub, attempt=attempt)


def usage(
    account: str,
    when: When,
    user: str = "u1",
    feature: str = "reports",
    count: int | None = None,
    *,
    event_id: str | None = None,
) -> Event:
    return event("usage.recorded", account, when, event_id, user_id=user, feature=feature, count=count)


def opened(
    account: str, when: When, ticket: str, priority: str = "normal", *, event_id: str | None = None
) -> Event:
    return event("ticket.opened", account, when, event_id, ticket_id=ticket, priority=priority)


def resolved(
    account: str, when: When, ticket: str, contacts: int = 1, *, event_id: str | None = None
) -> Event:
    return event("ticket.resolved", account, when, event_id, ticket_id=ticket, contacts=contacts)


def reopened(account: str, when: When, ticket: str, *, event_id: str | None = None) -> Event:
    return event("ticket.reopened", account, when, event_id, ticket_id=ticket)


def survey(
    account: str,
    when: When,
    kind: str,
    score: int,
    respondent: str = "r1",
    comment: str | None = None,
    *,
    event_id: str | None = None,
) -> Event:
    return event(
        "survey.answered",
        account,
        when,
        event_id,
        survey=kind,
        score=score,
        respondent_id=respondent,
        comment=comment,
    )


def nps(account: str, when: When, score: int, respondent: str = "r1", comment: str | None = None) -> Event:
    return survey(account, when, "nps", score, respondent, comment)


def csat(account: str, when: When, score: int, respondent: str = "r1", comment: str | None = None) -> Event:
    return survey(account, when, "csat", score, respondent, comment)


def ces(account: str, when: When, score: int, respondent: str = "r1", comment: str | None = None) -> Event:
    return survey(account, when, "ces", score, respondent, comment)


def profile(
    account: str,
    when: When,
    name: str | None = None,
    owner: str | None = None,
    segment: str | None = None,
    tier: str | None = None,
    attributes: dict[str, str] | None = None,
    *,
    event_id: str | None = None,
) -> Event:
    """`account.updated`: the whole profile (a field left out is cleared)."""
    return event(
        "account.updated",
        account,
        when,
        event_id,
        name=name,
        owner=owner,
        segment=segment,
        tier=tier,
        attributes=attributes,
    )


def override(
    account: str,
    when: When,
    expires_at: When,
    *,
    band: str | None = None,
    score: float | None = None,
    reason: str = "exec sponsor left",
    author: str = "ana@example.com",
    event_id: str | None = None,
) -> Event:
    """`health.override`: a band or a score until `expires_at`."""
    return event(
        "health.override",
        account,
        when,
        event_id,
        band=band,
        score=score,
        reason=reason,
        author=author,
        expires_at=expires_at,
    )


def override_cleared(
    account: str, when: When, author: str = "ana@example.com", *, event_id: str | None = None
) -> Event:
    """`health.override_cleared`: removes an override set before `when`."""
    return event("health.override_cleared", account, when, event_id, author=author)
