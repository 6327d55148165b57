"""Records that decoded and then crashed or hung the worker later (at every restart, since the
record stays in the changelog): each is a real account or partition record with one field
altered, and each is now refused on decode with a `StateDecodeError` that names the field."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from streamer.core.clock import DAY, HOUR
from streamer.core.config import Input, Time
from streamer.core.engine import PartitionEngine
from streamer.core.intake import LATEST_EVENT_MS
from streamer.core.revenue import MAX_PAYMENT_FAILURES, MAX_TERM_ENDS
from streamer.core.totals import FIELDS
from streamer.state import codec
from streamer.state.codec import (
    StateDecodeError,
    decode_account,
    decode_account_record,
    decode_partition,
    encode_account,
    encode_partition,
)
from streamer.state.partition import MAX_ABOVE, AppliedOffsets, PartitionRecord

from .golden_state import golden_engine
from .histories import CONFIG, fixed_history

Body = list[Any]
BIG = 2**64 - 1
I63 = 2**63 - 1
NAN, INF = float("nan"), float("inf")


@functools.cache
def _engine() -> PartitionEngine:
    return golden_engine()


@functools.cache
def _account_raw() -> bytes:
    """acct-1 of the golden state: a subscription with term ends, an MRR timeline, payment
    failures, alerts with a band, a score and a band of its own."""
    return encode_account(_engine().accounts["acct-1"])


@functools.cache
def _full_raw() -> bytes:
    """acct-1 after the whole fixed history: with a profile and an override."""
    engine = PartitionEngine(CONFIG, {})
    for event in fixed_history():
        engine.process(event)
    return encode_account(engine.accounts["acct-1"])


def altered(change: Callable[[Body], Any], raw: bytes | None = None) -> bytes:
    """The record with `change` applied to its MessagePack body (same format version)."""
    raw = raw or _account_raw()
    body = msgpack.unpackb(raw[1:], raw=False)
    change(body)
    return raw[:1] + msgpack.packb(body, use_bin_type=True)


def sub(body: Body) -> Body:
    """The account's first subscription's array."""
    return body[2][0][1]  # type: ignore[no-any-return]


def refused(raw: bytes, field: str) -> None:
    with pytest.raises(StateDecodeError, match=field):
        decode_account_record(raw)


def test_the_unaltered_records_decode() -> None:
    for raw in (_account_raw(), _full_raw()):
        assert encode_account(decode_account(raw)) == raw


# -- 1. the partition clock -------------------------------------------------------------------


def partition_raw(stream_time: int, next_tick: int) -> bytes:
    clock = _engine().clock
    raw = encode_partition(PartitionRecord(type(clock)(clock.stream_time, clock.next_tick)))
    body = msgpack.unpackb(raw[1:], raw=False)
    body[0], body[1] = stream_time, next_tick
    return raw[:1] + msgpack.packb(body, use_bin_type=True)


def _stream_time() -> int:
    return _engine().clock.stream_time


@pytest.mark.parametrize(
    ("stream_time", "next_tick", "field"),
    [
        # rebuild stepped back from it ~10^11 times looking for a midnight (a hang)
        (lambda t: t, lambda t: 2**62 + 1, r"clock\.next_tick"),
        # on a midnight, 400,000 days ahead: a late event's catch-up scored every day (minutes)
        (lambda t: t, lambda t: (t // DAY + 400_000) * DAY, r"clock\.next_tick"),
        # ValueError: year 292278994 is out of range
        (lambda t: I63, lambda t: (t // DAY + 1) * DAY, r"clock\.stream_time"),
        (lambda t: LATEST_EVENT_MS, lambda t: LATEST_EVENT_MS + DAY, r"clock\.stream_time"),
        (lambda t: -2, lambda t: -1, r"clock\.stream_time"),
        (lambda t: t, lambda t: -(2**63), r"clock\.next_tick"),
        (lambda t: t, lambda t: t, r"clock\.next_tick"),  # a tick not after stream time
        (lambda t: t, lambda t: -1, r"clock\.next_tick"),  # stream time without a next tick
        (lambda t: -1, lambda t: (t // DAY + 1) * DAY, r"clock\.next_tick"),  # and the reverse
    ],
    ids=[
        "tick-2^62+1",
        "tick-400000-days-ahead",
        "time-2^63-1",
        "time-at-latest",
        "time-below-minus-1",
        "tick-minus-2^63",
        "tick-at-stream-time",
        "tick-unset",
        "time-unset",
    ],
)
def test_a_partition_clock_the_engine_cannot_run_from_is_refused(
    stream_time: Callable[[int], int], next_tick: Callable[[int], int], field: str
) -> None:
    now = _stream_time()
    with pytest.raises(StateDecodeError, match=field):
        decode_partition(partition_raw(stream_time(now), next_tick(now)))


@pytest.mark.parametrize("hours", [1, 1.23456789, 24, 48, 24 * 3660])
def test_clocks_of_every_allowed_rescore_interval_decode(hours: float) -> None:
    """Ticks are at multiples of `time.rescore_interval_hours` (1 hour to 3660 days), not of a
    day: the decoder, which knows no config, accepts a next tick up to one longest interval after
    stream time."""
    interval = int(hours * HOUR)
    for stream_time in (-1, 0, _stream_time(), LATEST_EVENT_MS - 1):
        next_tick = -1 if stream_time < 0 else (stream_time // interval + 1) * interval
        raw = partition_raw(stream_time, next_tick)
        clock = decode_partition(raw).clock
        assert (clock.stream_time, clock.next_tick) == (stream_time, next_tick)


def test_the_longest_rescore_interval_is_the_decoders_bound() -> None:
    le = next(m.le for m in Time.model_fields["rescore_interval_hours"].metadata if hasattr(m, "le"))
    assert int(le * HOUR) == codec.MAX_TICK_AHEAD


# -- 2. instants ---------------------------------------------------------------------------------

INSTANTS: dict[str, Callable[[Body, int], Any]] = {
    r"account\.first_seen": lambda b, v: b.__setitem__(1, v),
    r"account\.now": lambda b, v: b.__setitem__(8, v),
    r"account\.last_event_at": lambda b, v: b.__setitem__(9, v),
    r"revenue\.timeline": lambda b, v: b[2][1].__setitem__(6, v),
    r"revenue\.first_start": lambda b, v: b[2].__setitem__(2, v),
    r"revenue\.payment_failures": lambda b, v: b[2][3].__setitem__(0, v),
    r"subscription\.term_ends": lambda b, v: sub(b)[9].__setitem__(0, v),
    r"subscription\.term_end": lambda b, v: sub(b).__setitem__(5, v),
    r"subscription\.started_at": lambda b, v: sub(b).__setitem__(8, v),
    r"subscription\.state_at": lambda b, v: sub(b).__setitem__(3, v),
    r"subscription\.term_end_at": lambda b, v: sub(b).__setitem__(6, v),
    r"point\.effective_at": lambda b, v: sub(b)[0].__setitem__(0, v),
    r"point\.occurred_at": lambda b, v: sub(b)[0].__setitem__(1, max(-(2**63), v - sub(b)[0][0])),
    r"usage\.first_use": lambda b, v: b[3].__setitem__(8, v),
    r"usage\.last_use": lambda b, v: b[3].__setitem__(10, v),
    r"ticket opened_at": lambda b, v: b[4][1].__setitem__(2, v),
    r"ticket status_at": lambda b, v: b[4][1].__setitem__(4, v),
    r"alert at": lambda b, v: b[6][0].__setitem__(1, v),
    r"episode start": lambda b, v: b[6][1].__setitem__(1, v),
    r"alerts\.pending since": lambda b, v: b[6].__setitem__(5, [1, v]),
    r"account\.seen times": lambda b, v: b[7][1].__setitem__(0, 2 * (v // 1000)),
}
OUT_OF_RANGE = [10**15, -(10**15), BIG, -(2**63), -2]  # -1: "none yet" for state_at, term_end_at


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize("field", list(INSTANTS))
def test_an_instant_outside_the_times_the_core_can_compute_with_is_refused(field: str, value: int) -> None:
    """first_seen, timeline times and term ends at these decoded, and the engine's recovery
    (`_note_members`) or the next scoring raised ValueError in `month_of`."""
    refused(altered(lambda body: INSTANTS[field](body, value)), field)


OVERRIDE = [1708000000000, "ov", "me", None, None, None, 1709000000000, False]


@pytest.mark.parametrize(
    ("index", "field"), [(0, r"override\.at"), (6, r"override\.expires_at")], ids=["at", "expires_at"]
)
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_an_override_instant_out_of_range_is_refused(index: int, field: str, value: int) -> None:
    override = list(OVERRIDE)
    override[index] = value
    refused(altered(lambda body: body.__setitem__(15, override), _full_raw()), field)


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_a_profile_instant_out_of_range_is_refused(value: int) -> None:
    raw = _full_raw()
    assert msgpack.unpackb(raw[1:], raw=False)[14] is not None
    refused(altered(lambda body: body[14].__setitem__(0, value), raw), r"profile\.at")


def test_the_latest_instant_valid_input_makes_decodes() -> None:
    """A term end `input.max_term_years` after the latest event time admitted, and the epoch."""
    le = next(m.le for m in Input.model_fields["max_term_years"].metadata if hasattr(m, "le"))
    latest_term_end = LATEST_EVENT_MS - 1 + int(le * 365.25 * DAY)
    assert latest_term_end < codec.LATEST_INSTANT
    decoded = decode_account(altered(lambda body: sub(body)[9].__setitem__(-1, latest_term_end)))
    assert next(iter(decoded.revenue.subscriptions.values())).term_ends[-1] == latest_term_end
    assert decode_account(altered(lambda body: body[6][1].__setitem__(1, 0))).alerts.episodes


# -- 3. the account's totals terms ---------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 5, len(FIELDS) - 1, len(FIELDS) + 2])
def test_terms_of_another_length_than_the_totals_fields_are_refused(length: int) -> None:
    """5 or 23 items gave IndexError in `Totals.update` / `counted` at recovery."""
    refused(altered(lambda body: body.__setitem__(12, list(range(length)))), r"account\.terms")


def test_no_terms_decode() -> None:
    assert decode_account(altered(lambda body: body.__setitem__(12, []))).terms == ()


# -- 4. band names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Yellow", "bogus", ""])
def test_a_band_name_that_is_no_band_is_refused(name: str) -> None:
    """`'Yellow' is not a valid Band` at the next scoring."""
    refused(altered(lambda body: body[6][4].__setitem__(0, name)), r"alerts\.band")
    refused(altered(lambda body: body.__setitem__(11, name)), r"account\.band")


# -- 5. version counters -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [BIG, 2**63, -1])
@pytest.mark.parametrize(
    ("where", "field"),
    [(2, r"revenue\.version"), (4, r"support\.version"), (5, r"sentiment\.version")],
    ids=["revenue", "support", "sentiment"],
)
def test_a_version_counter_the_next_change_would_overflow_is_refused(
    where: int, field: str, value: int
) -> None:
    """At 2^64-1 the next event's increment made the encoder raise OverflowError at the
    checkpoint."""
    refused(altered(lambda body: body[where].__setitem__(4, value)), field)


# -- 6. scores ----------------------------------------------------------------------------------

BAD_SCORES = [NAN, INF, -INF, 1e9, -50.0, 100.5, -0.1]


@pytest.mark.parametrize("score", BAD_SCORES)
def test_a_score_outside_0_to_100_is_refused(score: float) -> None:
    override = list(OVERRIDE)
    override[5] = score
    refused(altered(lambda body: body.__setitem__(15, override), _full_raw()), r"override\.score")
    refused(altered(lambda body: body.__setitem__(10, score)), r"account\.score")
    refused(altered(lambda body: body[6][2].__setitem__(1, score)), r"daily_max score")
    refused(altered(lambda body: body[6][4].__setitem__(1, score)), r"alerts\.band score")


def test_scores_at_the_ends_of_the_scale_decode() -> None:
    for score in (0.0, 100.0):
        account = decode_account(altered(lambda body, s=score: body.__setitem__(10, s)))
        assert account.score == score


# -- 7. lengths and repeated keys -------------------------------------------------------------------


def test_more_offsets_above_the_mark_than_a_worker_keeps_are_refused() -> None:
    offsets = AppliedOffsets()
    offsets.advance("cs.usage", 5, range(10, 10 + 2 * MAX_ABOVE + 10, 2))
    assert len(offsets.above["cs.usage"]) == MAX_ABOVE
    record = PartitionRecord(_engine().clock, offsets)
    assert decode_partition(encode_partition(record)) == record
    body = msgpack.unpackb(encode_partition(record)[1:], raw=False)
    body[2][2].append(2)
    with pytest.raises(StateDecodeError, match=r"offsets above"):
        decode_partition(encode_partition(record)[:1] + msgpack.packb(body, use_bin_type=True))


@pytest.mark.parametrize("above", [[5], [20, -5], [20, 0]], ids=["at-the-mark", "descending", "repeated"])
def test_offsets_above_not_ascending_past_the_mark_are_refused(above: list[int]) -> None:
    body = msgpack.unpackb(encode_partition(PartitionRecord(_engine().clock))[1:], raw=False)
    body[2] = ["cs.usage", 5, above]
    with pytest.raises(StateDecodeError, match=r"offsets above"):
        decode_partition(bytes((codec.VERSION,)) + msgpack.packb(body, use_bin_type=True))


def test_a_topic_listed_twice_in_the_offsets_is_refused() -> None:
    body = msgpack.unpackb(encode_partition(PartitionRecord(_engine().clock))[1:], raw=False)
    body[2] = ["cs.usage", 5, [], "cs.usage", 7, []]
    with pytest.raises(StateDecodeError, match=r"offsets topic 'cs\.usage'"):
        decode_partition(bytes((codec.VERSION,)) + msgpack.packb(body, use_bin_type=True))


def test_more_payment_failures_or_term_ends_than_the_core_keeps_are_refused() -> None:
    refused(
        altered(lambda body: body[2].__setitem__(3, [3408920880] + [2] * MAX_PAYMENT_FAILURES)),
        r"revenue\.payment_failures",
    )
    refused(
        altered(lambda body: sub(body).__setitem__(9, [1707091200000 + n for n in range(MAX_TERM_ENDS + 1)])),
        r"subscription\.term_ends",
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b[6][0].extend(b[6][0][:4]), r"alert rule"),
        (lambda b: b[6][1].extend(b[6][1][:3]), r"episode rule"),
        (lambda b: b[6][2].extend(b[6][2][:2]), r"daily_max day"),
        (lambda b: b[2][0].extend(b[2][0][:2]), r"subscription id"),
        (lambda b: b[3][7].extend(b[3][7][:2]), r"usage feature"),
        (lambda b: b[3][4].extend(b[3][4][:2]), r"usage\.daily_users"),
        (lambda b: b[3][6].extend(b[3][6][:2]), r"usage\.daily_activity"),
    ],
    ids=["alert-rule", "episode-rule", "daily-max-day", "subscription", "feature", "user-day", "event-day"],
)
def test_a_key_stored_twice_is_refused(change: Callable[[Body], Any], field: str) -> None:
    """The decoder's dicts kept the last of them without a word."""
    refused(altered(change), field)


def test_a_profile_attribute_stored_twice_is_refused() -> None:
    raw = _full_raw()
    assert msgpack.unpackb(raw[1:], raw=False)[14][6]
    refused(altered(lambda body: body[14][6].extend(body[14][6][:2]), raw), r"profile attribute")
