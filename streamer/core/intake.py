"""One rule for every input message, in the worker and offline: an event, or why not.

`admit` turns a raw message (value, key, topic family, publication time) into a validated event
within the configured input bounds, or a `Refused` with a reason a producer can act on; `apply`
runs `PartitionEngine.process` so that an error becomes a rejection of that one message. The
worker (`streamer.stream.scorer`) and the file runner (`streamer.offline.runner`, which
`streamer backtest` uses too) call both, so a bad message has the same fate everywhere: it is
dead-lettered with a reason and processing goes on.

Everything here is pure: "published" is an argument (the Kafka message timestamp in the worker,
the start of the run offline), never a clock read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from streamer.contract.dead_letter import safe_text
from streamer.contract.decode import JSON_WHITESPACE, MAX_EVENT_BYTES, Rejected, decode_event
from streamer.contract.events import (
    AccountUpdated,
    Event,
    HealthOverridden,
    PaymentFailed,
    SubscriptionCanceled,
    SubscriptionChanged,
    SubscriptionRenewed,
    SubscriptionStarted,
    TicketResolved,
    UsageRecorded,
)
from streamer.core.clock import DAY, iso, to_ms
from streamer.core.config import Input, ScoreConfig
from streamer.core.engine import ACCEPTED, REJECTED, Outcome, PartitionEngine


@dataclass(frozen=True, slots=True)
class Refused:
    """A message that is not admitted; `reason` goes into its dead letter."""

    reason: str


def admit(
    value: bytes | None,
    *,
    key: bytes | None,
    family: str | None,
    published_ms: int,
    config: ScoreConfig,
) -> Event | Refused:
    """Decode one message value and check it against the contract and `[input]` bounds.

    `key` and `family` are checked when given (the worker gives both; a file has neither).
    Never raises: an unexpected error is a refusal naming the error's class and text.
    """
    if value is None:
        return Refused("the message has no value (null): send one JSON event per message")
    if len(value) <= MAX_EVENT_BYTES and not value.strip(JSON_WHITESPACE):  # no copy of a huge one
        return Refused("the message value is empty: send one JSON event per message")
    try:
        event = decode_event(value, key=key, family=family)
    except Rejected as rejected:
        return Refused(rejected.reason)
    except Exception as exc:  # the safety net: nothing a producer sends may stop the stream
        return Refused(unexpected("decode", exc))
    try:
        problem = out_of_bounds(event, config.input, published_ms)
    except Exception as exc:
        return Refused(unexpected("check", exc))
    return Refused(problem) if problem is not None else event


def apply(engine: PartitionEngine, event: Event) -> Outcome:
    """`engine.process(event)`, with an error turned into a rejection of this one event.

    The engine checks and converts everything that can fail (currency, money, times) before it
    changes any state, and admitted events are bounded, so this is the safety net for the
    unforeseen: the message is dead-lettered with the error and the stream goes on.
    """
    refused = check(engine, event)
    return refused if refused is not None else apply_checked(engine, event)


def check(engine: PartitionEngine, event: Event) -> Outcome | None:
    """`engine.check(event)`: the outcome of a duplicate or rejected event, or None (apply it)."""
    try:
        return engine.check(event)
    except Exception as exc:
        return Outcome(REJECTED, unexpected("apply", exc))


def run_ticks(engine: PartitionEngine, at: int, budget: int) -> Outcome:
    """`engine.run_ticks(at, budget)` between `check` and `apply_checked`: its alerts, or the
    event's rejection when a re-scoring failed."""
    try:
        return Outcome(ACCEPTED, alerts=engine.run_ticks(at, budget))
    except Exception as exc:
        return Outcome(REJECTED, unexpected("apply", exc))


def pass_time(engine: PartitionEngine, at: int) -> Outcome:
    """`engine.pass_time(at)`: its alerts, or REJECTED with the error when a re-scoring failed."""
    try:
        return Outcome(ACCEPTED, alerts=engine.pass_time(at))
    except Exception as exc:
        return Outcome(REJECTED, unexpected("apply", exc))


def apply_checked(engine: PartitionEngine, event: Event) -> Outcome:
    """`engine.apply_checked(event)` for an event `check` let through."""
    try:
        return engine.apply_checked(event)
    except Exception as exc:
        return Outcome(REJECTED, unexpected("apply", exc))


def unexpected(stage: str, exc: BaseException) -> str:
    """The reason for an unforeseen error: its class and text (never raises)."""
    try:
        text = str(exc)
    except Exception:
        text = "(no text)"
    return safe_text(f"could not {stage} the message: {type(exc).__name__}: {text}")


# No event time from here on, whatever the publication time: far enough from the year 9999, past
# which a date cannot be written, for every month and term end a score computes from it.
LATEST_EVENT_MS = to_ms(datetime(9000, 1, 1, tzinfo=UTC))


def out_of_bounds(event: Event, bounds: Input, published_ms: int) -> str | None:
    """Why `event` is outside the configured input bounds, or None when it is within them."""
    at = to_ms(event.occurred_at)
    problem = event_time_problem(at, bounds, published_ms)
    if problem is not None:
        return problem
    check = _FIELD_CHECKS.get(type(event))
    return check(event, bounds, at) if check is not None else None


def event_time_problem(at: int, bounds: Input, published_ms: int) -> str | None:
    """Why the event time `at` (epoch ms) is outside the input bounds, or None when it is within."""
    earliest = bounds.earliest_ms
    if at < earliest:
        return (
            f"occurred_at {iso(at)} is before {iso(earliest)}, the earliest event time accepted "
            "(input.earliest)"
        )
    latest = bounds.latest_ms(published_ms)
    if at > latest:
        return (
            f"occurred_at {iso(at)} is more than {bounds.max_skew_hours:g} hours after the message "
            f"was published ({iso(published_ms)}): event time must not be in the future "
            "(input.max_skew_hours)"
        )
    if at >= LATEST_EVENT_MS:  # reachable with `--now` that late; terms and months past 9999 fail
        return f"occurred_at {iso(at)} is not before {iso(LATEST_EVENT_MS)}, the latest event time accepted"
    return None


def _subscription_state(event: Event, bounds: Input, at: int) -> str | None:
    assert isinstance(event, SubscriptionStarted | SubscriptionChanged)
    return (
        _amount(event, bounds)
        or _at_most("seats", event.seats, bounds.max_seats, "input.max_seats")
        or _at_most(
            "interval_count", event.interval_count, bounds.max_interval_count, "input.max_interval_count"
        )
        or _term("term_end", event.term_end, at, bounds)
    )


def _started(event: Event, bounds: Input, at: int) -> str | None:
    assert isinstance(event, SubscriptionStarted)
    return _subscription_state(event, bounds, at) or _ended_before("started", event.term_end, at)


def _renewed(event: Event, bounds: Input, at: int) -> str | None:
    assert isinstance(event, SubscriptionRenewed)
    return _term("term_end", event.term_end, at, bounds) or _ended_before("renewed", event.term_end, at)


def _ended_before(what: str, term_end: datetime | None, at: int) -> str | None:
    """A subscription cannot start or renew into a term that is already over: its account would
    read as at its renewal for good (a change may report a term that ended, awaiting renewal)."""
    if term_end is None or to_ms(term_end) > at:
        return None
    return (
        f"term_end {iso(to_ms(term_end))} is not after occurred_at {iso(at)}: "
        f"a subscription {what} into a term already over"
    )


def _canceled(event: Event, bounds: Input, at: int) -> str | None:
    assert isinstance(event, SubscriptionCanceled)
    return _term("effective_at", event.effective_at, at, bounds) or _backdated(event.effective_at, at, bounds)


def _backdated(effective_at: datetime | None, at: int, bounds: Input) -> str | None:
    """A cancellation may take effect a little before it was recorded, not months before."""
    if effective_at is None:
        return None
    effective = to_ms(effective_at)
    if effective >= at - int(bounds.max_backdate_days * DAY):
        return None
    return (
        f"effective_at {iso(effective)} is more than {bounds.max_backdate_days:g} days before occurred_at "
        f"{iso(at)} (input.max_backdate_days): it would rewrite months already closed"
    )


def _payment_failed(event: Event, bounds: Input, at: int) -> str | None:
    assert isinstance(event, PaymentFailed)
    return _at_most("attempt", event.attempt, bounds.max_attempt, "input.max_attempt")


def _usage(event: Event, bounds: Input, at: int) -> str | None:
    assert isinstance(event, UsageRecorded)
    count = event.count
    return (
        None if count <= bounds.max_count else _at_most("count", count, bounds.max_count, "input.max_count")
    )


def _resolved(event: Event, bounds: Input, at: int) -> str | None:
    assert isinstance(event, TicketResolved)
    return _at_most("contacts", event.contacts, bounds.max_contacts, "input.max_contacts")


def _account_updated(event: Event, bounds: Input, at: int) -> str | None:
    assert isinstance(event, AccountUpdated)
    attributes = event.attributes
    if len(attributes) > bounds.max_attributes:
        return (
            f"field 'attributes' has {len(attributes)} entries, above input.max_attributes "
            f"({bounds.max_attributes})"
        )
    for key, value in attributes.items():
        if len(value) > bounds.max_attribute_length:
            return (
                f"attribute {key!r} is {len(value)} characters long, above input.max_attribute_length "
                f"({bounds.max_attribute_length})"
            )
    return None


def _override(event: Event, bounds: Input, at: int) -> str | None:
    assert isinstance(event, HealthOverridden)
    latest = at + int(bounds.max_override_days * DAY)
    expires = to_ms(event.expires_at)
    if expires <= at:  # after occurred_at to the microsecond (the contract), not to the millisecond
        return (
            f"field 'expires_at' {event.expires_at.isoformat()} is within the millisecond of occurred_at "
            f"{iso(at)}: event time counts milliseconds, and the override would never apply"
        )
    if expires > latest:
        return (
            f"field 'expires_at' {iso(expires)} is more than {bounds.max_override_days:g} days after "
            "occurred_at (input.max_override_days): set an earlier expiry and renew it when due"
        )
    return None


# The field checks of each event type (one lookup per event: this runs for every message).
_FIELD_CHECKS: dict[type, Callable[[Event, Input, int], str | None]] = {
    SubscriptionStarted: _started,
    SubscriptionChanged: _subscription_state,
    SubscriptionRenewed: _renewed,
    SubscriptionCanceled: _canceled,
    PaymentFailed: _payment_failed,
    UsageRecorded: _usage,
    TicketResolved: _resolved,
    AccountUpdated: _account_updated,
    HealthOverridden: _override,
}


def _amount(event: SubscriptionStarted | SubscriptionChanged, bounds: Input) -> str | None:
    amount = event.amount
    if amount > bounds.max_amount:
        return f"field 'amount' is {amount}, above input.max_amount ({bounds.max_amount})"
    exponent = amount.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if places > bounds.max_amount_places:
        return (
            f"field 'amount' has {places} decimal places, more than input.max_amount_places "
            f"({bounds.max_amount_places})"
        )
    return None


def _at_most(name: str, value: int | None, limit: int, key: str) -> str | None:
    if value is not None and value > limit:
        return f"field {name!r} is {value}, above {key} ({limit})"
    return None


def _term(name: str, moment: datetime | None, at: int, bounds: Input) -> str | None:
    """A term end or effective date: not before input.earliest, at most max_term_years after."""
    if moment is None:
        return None
    ms = to_ms(moment)
    earliest = bounds.earliest_ms
    if ms < earliest:
        return f"field {name!r} {iso(ms)} is before {iso(earliest)} (input.earliest)"
    latest = at + int(bounds.max_term_years * 365.25 * DAY)
    if ms > latest:
        return (
            f"field {name!r} {iso(ms)} is more than {bounds.max_term_years:g} years after occurred_at "
            "(input.max_term_years)"
        )
    return None
