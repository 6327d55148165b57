"""The explicit, versioned encoding of worker state: accounts and partition records.

Nothing here runs code from data (no pickle): each core structure has one encode/decode pair
that writes its fields by name, in a fixed order, as MessagePack arrays of integers, strings and
floats. A record is one format-version byte followed by the MessagePack body.

Compact by construction: arrays instead of maps, day numbers relative to the structure's
horizon, event times of sorted lists as differences, dedupe ids and usage users as 64-bit keys
packed 8 bytes each, and ids that start with the account id (`acct-0042-t0007`) stored as their
suffix (a MessagePack `bin` value; a `str` value is a whole id).

Memo fields (caches keyed by a version counter) are not stored: they start empty after a
decode and are recomputed from the stored fields on first use. `COVERED` lists, per class,
the fields the codec writes and the ones it rebuilds; a test fails on any field it does not name.
Event times in sorted lists are differences in whole seconds where exact (see `_time_deltas`).

Versioning: `VERSION` is the first byte. A reader keeps one decoder per version it can read
(`_DECODERS`); a change that adds a field appends it to the structure's array and bumps the
version, with the old decoder filling the default. See README "State encoding".
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Sequence
from functools import partial
from itertools import pairwise
from typing import Any, TypeVar

import msgpack

from streamer.contract.vocabulary import Band
from streamer.core.account import Account, SeenIds
from streamer.core.alerts import AlertMemory
from streamer.core.clock import DAY, HOUR, iso
from streamer.core.config import MAX_DAYS
from streamer.core.engine import Clock
from streamer.core.identity import Override, Profile
from streamer.core.intake import LATEST_EVENT_MS
from streamer.core.keys import KEY_BYTES
from streamer.core.peers import PeerReference
from streamer.core.revenue import (
    CANCELED,
    CHANGED,
    MAX_EARLIER,
    MAX_PAYMENT_FAILURES,
    MAX_TERM_ENDS,
    STARTED,
    Point,
    Revenue,
    State,
    Subscription,
    Term,
)
from streamer.core.sentiment import Sentiment
from streamer.core.support import (
    DAY_FIELDS,
    NEVER,
    NUMBERS,
    OPEN_FLAG,
    PRIORITIES,
    PRIORITY_BITS,
    RESOLVED_FLAG,
    DayStats,
    Support,
)
from streamer.core.totals import FIELDS
from streamer.core.usage import DAYS, MASKS, Pairs, Usage, counts, user_key
from streamer.state.copies import Handled, HandledCopies
from streamer.state.partition import MAX_ABOVE, AppliedOffsets, PartitionRecord

# 2: account profile and override (version 1 records read with neither); 3: events per feature;
# 4: the alert memory's pending band change (version 1-3 records read with none); 5: the events
# per feature name their feature by its index among `usage.features` (not the name again); 6: the
# usage users are their 8-byte keys packed (`usage.user_key` of the id; versions 1-5 stored the
# ids, which the decoder hashes); 7: a ticket whose only status is its opening stores an empty
# status id and its earliest opening as the status time (an opening no longer outranks a
# resolution: `streamer.core.support`); a record of formats 1-6 is read that way for every
# ticket never resolved whose status is dated at its opening; 8: each subscription step and state
# carries its rank at one instant (started, changed, canceled: `streamer.core.revenue.Point`) in
# a list appended to the subscription; a record of formats 1-7 reads every step as a change; 9: a
# profile carries the segments of its earlier versions a peer reference may still read
# (`Profile.earlier`; a record of formats 2-8 reads with none); 10: a partition record lists the
# re-routed copies it handled (`streamer.state.copies`; a record of formats 1-9 lists none); 11: a
# subscription carries the states and term ends its latest superseded that a read at an earlier
# instant may still ask for (`Subscription.earlier_states`, `earlier_terms`; a record of formats
# 1-10 reads with none), and no longer the latest effective instant of its cancellations (derived
# from its steps as known at an instant: `Subscription.canceled_by`)
VERSION = 11
_PICKLE_PROTOCOL_2_PLUS = 0x80  # what every pickle of protocol >= 2 starts with

# Per class: (fields encoded, fields rebuilt on decode: caches, and state a record does not keep).
COVERED: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Account: (
        (
            "account_id",
            "first_seen",
            "revenue",
            "usage",
            "support",
            "sentiment",
            "alerts",
            "seen",
            "now",
            "last_event_at",
            "score",
            "band",
            "terms",
            "profile",
            "override",
        ),
        (),
    ),
    SeenIds: (("keys", "times"), ("_index",)),
    Profile: (("at", "event_id", "name", "owner", "segment", "tier", "attributes", "earlier"), ()),
    Override: (("at", "event_id", "author", "reason", "band", "score", "expires_at", "cleared"), ()),
    Revenue: (("subscriptions", "timeline", "first_start", "payment_failures", "version"), ("_active_memo",)),
    Subscription: (
        (
            "points",
            "plan",
            "seats",
            "state_at",
            "term_end",
            "term_end_at",
            "started_at",
            "term_ends",
            "earlier_states",
            "earlier_terms",
        ),
        ("_steps",),
    ),
    Usage: (
        (
            "user_keys",
            "user_last",
            "user_masks",
            "bucket_days",
            "bucket_activity",
            "bucket_users",
            "last_days",
            "last_day_users",
            "features",
            "feature_names",
            "feature_pairs",
            "feature_ends",
            "first_use",
            "first_key_use",
            "last_use",
            "horizon_day",
            "_sums_end",
            "_sums",
        ),
        (),
    ),
    Support: (
        (
            "tickets",
            "status_ids",
            "facts",
            "resolutions",
            "days",
            "open_count",
            "ever",
            "horizon_day",
            "version",
        ),
        ("_memo_version", "_memo"),
    ),
    DayStats: (("opened", "resolved", "resolution_ms", "first_contact", "reopened"), ()),
    Sentiment: (
        ("ids", "numbers", "respondents", "nps_count", "csat_count", "comments", "version"),
        ("_memo_key", "_memo"),
    ),
    AlertMemory: (("raised", "episodes", "daily_max", "scored_on", "band", "pending"), ()),
    Clock: (("stream_time", "next_tick"), ()),
    AppliedOffsets: (("next", "above"), ()),
    PartitionRecord: (("clock", "offsets", "copies"), ()),
    HandledCopies: (("sources",), ("waiting", "listed")),
    Handled: (("floor", "origins", "digests"), ()),
    PeerReference: (("tick", "window_end", "groups", "sizes", "committed"), ("features", "ranks")),
}


class StateDecodeError(ValueError):
    """A stored state record that this version cannot read (corrupt, or another format)."""


T = TypeVar("T")

# -- framing --------------------------------------------------------------------------------------


def _frame(body: Any) -> bytes:
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return bytes((VERSION,)) + packed


# A first byte this far past the newest version known is taken for data that is no state record
# (random bytes read as "format version 215: run a worker that knows version 215").
FUTURE_VERSIONS = 20


def _unframe(raw: bytes, what: str, decoders: dict[int, Callable[[Any], T]]) -> T:
    if not raw:
        raise StateDecodeError(f"empty {what} record; the changelog record is corrupt: {_REBUILD}")
    version = raw[0]
    if version == _PICKLE_PROTOCOL_2_PLUS:
        raise StateDecodeError(
            f"{what} record is a pickle written by a version before the state codec; "
            f"it is not read (unpickling runs code from data): {_REBUILD}"
        )
    decode = decoders.get(version)
    if decode is None and version > max(decoders) + FUTURE_VERSIONS:
        raise StateDecodeError(
            f"{what} record is not a state record (its first byte, {version}, is no format "
            f"version this project has written or is near writing): written by another program, "
            f"or corrupt: {_REBUILD}"
        )
    if decode is None:
        raise StateDecodeError(
            f"{what} record has format version {version}; this worker reads "
            f"{', '.join(map(str, sorted(decoders)))}: run a worker that knows version {version}, "
            f"or {_REBUILD}"
        )
    try:
        body = msgpack.unpackb(raw[1:], raw=False, use_list=True, strict_map_key=True)
        return decode(body)
    except StateDecodeError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, struct.error, msgpack.UnpackException) as exc:
        raise StateDecodeError(
            f"{what} record (format version {version}, {len(raw)} bytes) is corrupt: "
            f"{type(exc).__name__}: {exc}; {_REBUILD}"
        ) from exc


_REBUILD = (
    "rebuild the state from the input (stop the workers, delete the accounts and clocks changelog "
    "topics, the workers' data dirs and the group's committed offsets, then start them again), "
    "or restore the changelog from a backup"
)

# -- checked primitives ---------------------------------------------------------------------------


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise StateDecodeError(f"{what}: expected an integer, got {type(value).__name__} {value!r:.40}")
    return value


def _opt_int(value: Any, what: str) -> int | None:
    return None if value is None else _int(value, what)


# The instants a record may hold (epoch ms, [EARLIEST_INSTANT, LATEST_INSTANT)): every event time
# admitted is after `input.earliest` (itself after 1970-01-01T00:00:00Z) and before
# `LATEST_EVENT_MS` (9000-01-01); a term end or effective date at most `input.max_term_years` (at
# most `MAX_TERM_YEARS`) after its event; an override's expiry and a tick at most `MAX_DAYS` days
# after one. Within these bounds every month and term the core derives is before the year 9999;
# past them a record decoded and the engine's recovery raised ValueError (`month_of`).
MAX_TERM_YEARS = 100  # the upper bound of `input.max_term_years`
EARLIEST_INSTANT = 0
LATEST_INSTANT = LATEST_EVENT_MS + int(MAX_TERM_YEARS * 365.25 * DAY) + MAX_DAYS * DAY
# The longest rescore interval (`time.rescore_interval_hours`): a partition's next tick is at most
# this far past its stream time (the first tick after it; the decoder knows no interval).
MAX_TICK_AHEAD = 24 * MAX_DAYS * HOUR
MAX_COUNTER = 1 << 63  # a version counter below it: its increments stay within the encoder's 64 bits


def _time(value: Any, what: str) -> int:
    """An instant (epoch ms) the core can compute with (see `LATEST_INSTANT`)."""
    number = _int(value, what)
    if not EARLIEST_INSTANT <= number < LATEST_INSTANT:
        raise StateDecodeError(
            f"{what}: instant {number} is outside {EARLIEST_INSTANT}..{LATEST_INSTANT - 1} "
            f"(epoch ms, 1970-01-01 to {iso(LATEST_INSTANT - 1)})"
        )
    return number


def _opt_time(value: Any, what: str) -> int | None:
    return None if value is None else _time(value, what)


def _at_most(items: Sequence[T], most: int, what: str) -> Sequence[T]:
    """`items`, refused when there are more than the `most` a worker keeps of them."""
    if len(items) > most:
        raise StateDecodeError(f"{what}: {len(items)} items, more than the {most} kept")
    return items


def _times(values: Sequence[int], what: str, most: int | None = None) -> list[int]:
    """Instants decoded from differences (`_untime_deltas`), the lowest and highest checked; at
    most `most` of them."""
    if most is not None:
        _at_most(values, most, what)
    if values:  # (a check of the two ends: an account remembers up to 250,000 dedupe times)
        _time(min(values), what)
        _time(max(values), what)
    return list(values)


def _counter(value: Any, what: str) -> int:
    """A version counter: 0 on, and far enough below 2^64 that its next increment encodes."""
    number = _int(value, what)
    if not 0 <= number < MAX_COUNTER:
        raise StateDecodeError(f"{what}: version counter {number} is outside 0..{MAX_COUNTER - 1}")
    return number


def _str(value: Any, what: str) -> str:
    if type(value) is not str:
        raise StateDecodeError(f"{what}: expected a string, got {type(value).__name__} {value!r:.40}")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _word(value: Any, what: str) -> str:
    """A string of the state's vocabulary (rule, band, plan, feature, survey kind; a profile's
    owner, segment, tier and attributes): one shared object for all decoded accounts instead of
    a copy in each (`sys.intern`)."""
    return sys.intern(_str(value, what))


def _opt_word(value: Any, what: str) -> str | None:
    return None if value is None else _word(value, what)


_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}  # see `_shared`


def _shared(words: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object for all decoded accounts with the same tuple of vocabulary words (a
    handful of distinct ones: the components an account has data for)."""
    return _TUPLES.setdefault(words, words)


_SCORES: dict[float, float] = {}  # score -> one shared float object (see `_score`)
_MAX_SCORES = 4096


def _score(value: Any, what: str) -> float:
    """A score (finite, 0-100) as one float object shared by all decoded accounts: scores are
    kept to one decimal, so the highest-score-per-day memory of every account repeats a few
    hundred values (24 bytes each per copy). Bounded: past `_MAX_SCORES` distinct values, not
    shared."""
    number = _float(value, what)
    if not 0.0 <= number <= 100.0:  # NaN too
        raise StateDecodeError(f"{what}: expected a score 0-100, got {number!r}")
    if len(_SCORES) < _MAX_SCORES:
        return _SCORES.setdefault(number, number)
    return _SCORES.get(number, number)


_DAYS: dict[int, int] = {}  # day number -> one shared int object (see `_day`)


def _day(number: int) -> int:
    """A day number as one int object shared by all decoded accounts.

    Day numbers (~20,000) are not among CPython's cached small ints, so each bucket key of each
    account would otherwise be an int object of its own (28 bytes); the days a worker sees are
    a few thousand at most.
    """
    return _DAYS.setdefault(number, number)


def _float(value: Any, what: str) -> float:
    if type(value) is not float:
        raise StateDecodeError(f"{what}: expected a float, got {type(value).__name__} {value!r:.40}")
    return value


def _list(value: Any, what: str, length: int | None = None, step: int = 1) -> list[Any]:
    if type(value) is not list:
        raise StateDecodeError(f"{what}: expected an array, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise StateDecodeError(f"{what}: expected {length} items, got {len(value)}")
    if len(value) % step:
        raise StateDecodeError(f"{what}: expected groups of {step} items, got {len(value)}")
    return value


def _ints(value: Any, what: str) -> list[int]:
    return [_int(item, what) for item in _list(value, what)]


def _deltas(values: Sequence[int]) -> list[int]:
    """Differences to the previous value (the first to 0): small numbers for sorted times."""
    previous, out = 0, []
    for value in values:
        out.append(value - previous)
        previous = value
    return out


def _undeltas(value: Any, what: str) -> list[int]:
    total, out = 0, []
    for delta in _ints(value, what):
        total += delta
        out.append(total)
    return out


def _time_deltas(times: Sequence[int]) -> list[int]:
    """Differences of epoch-ms times, tagged in the lowest bit: whole seconds (most event times)
    as 2 x seconds, others as 2 x ms + 1, so an hour apart takes 3 bytes instead of 5."""
    return [(d // 1000) << 1 if d % 1000 == 0 else (d << 1) | 1 for d in _deltas(times)]


def _untime_deltas(value: Any, what: str) -> list[int]:
    total, out = 0, []
    for tagged in _ints(value, what):
        total += (tagged >> 1) if tagged & 1 else (tagged >> 1) * 1000
        out.append(total)
    return out


class _Ids:
    """Ids that start with the account id are stored as their suffix in a `bin` value."""

    def __init__(self, account_id: str) -> None:
        self.prefix = account_id
        # One string object per id within the account: the same event id is stored in a
        # subscription's points, state and term end, and was decoded as three copies.
        self._seen: dict[str, str] = {}
        # Likewise one int object per value within the account: an instant stored as a point's
        # effective and occurred time, the state's and term end's time, the start and the MRR
        # timeline was decoded as up to six int objects of 32 bytes.
        self._numbers: dict[int, int] = {}
        self._pairs: dict[tuple[int, str], tuple[int, str]] = {}

    def encode(self, text: str) -> str | bytes:
        if self.prefix and text.startswith(self.prefix):
            return text[len(self.prefix) :].encode()
        return text

    def decode(self, value: Any, what: str) -> str:
        text = self.prefix + value.decode() if type(value) is bytes else _str(value, what)
        return self._seen.setdefault(text, text)

    def number(self, value: Any, what: str) -> int:
        number = _int(value, what)
        return self._numbers.setdefault(number, number)

    def opt_number(self, value: Any, what: str) -> int | None:
        return None if value is None else self.number(value, what)

    def time(self, value: Any, what: str) -> int:
        """`number` of an instant (`_time`)."""
        return self.number(_time(value, what), what)

    def opt_time(self, value: Any, what: str) -> int | None:
        return None if value is None else self.time(value, what)

    def pair(self, at: Any, event_id: Any, what: str) -> tuple[int, str]:
        """An (instant, event id) pair, one tuple object per value within the account."""
        # -1: none yet (a subscription's state or term end not described)
        instant = self.number(at, what) if type(at) is int and at == -1 else self.time(at, what)
        pair = (instant, self.decode(event_id, what))
        return self._pairs.setdefault(pair, pair)


def _unflat_days(value: Any, base: int, what: str) -> dict[int, int]:
    items = _list(value, what, step=2)
    days: dict[int, int] = {}
    for i in range(0, len(items), 2):
        days[_once(_day(_int(items[i], what) + base), days, f"{what} day")] = _int(items[i + 1], what)
    return days


def _flat_pairs(pairs: Pairs, base: int) -> list[int]:
    """Flat (day, count) pairs, days relative to `base`."""
    return [value - base if i % 2 == 0 else value for i, value in enumerate(pairs)]


def _unflat_pairs(value: Any, base: int, what: str) -> Pairs:
    items = _list(value, what, step=2)
    try:
        return counts(_int(item, what) + (base if i % 2 == 0 else 0) for i, item in enumerate(items))
    except OverflowError as exc:
        raise StateDecodeError(f"{what}: a day or count out of the 64-bit range") from exc


def _mask(value: int) -> int:
    if not 0 <= value < 1 << 64:
        raise StateDecodeError(f"usage.users mask: expected 64 bits, got {value}")
    return value


# -- accounts -------------------------------------------------------------------------------------


def encode_account(account: Account, offsets: AppliedOffsets | None = None) -> bytes:
    """The account as a state record of format `VERSION`, with the input offsets its state
    contains (see `AppliedOffsets`; a worker skips a re-read message of the account listed there)."""
    ids = _Ids(account.account_id)
    return _frame(
        [
            account.account_id,
            account.first_seen,
            _encode_revenue(account.revenue, ids),
            _encode_usage(account.usage, ids),
            _encode_support(account.support, ids),
            _encode_sentiment(account.sentiment, ids),
            _encode_alerts(account.alerts),
            _encode_seen(account.seen),
            account.now,
            account.last_event_at,
            None if account.score is None else float(account.score),
            account.band,
            list(account.terms),
            _encode_offsets(offsets or AppliedOffsets()),
            _encode_profile(account.profile, ids),
            _encode_override(account.override, ids),
        ]
    )


def decode_account(raw: bytes) -> Account:
    """An account from its state record; `StateDecodeError` says what is wrong with it."""
    return decode_account_record(raw)[0]


def decode_account_record(raw: bytes) -> tuple[Account, AppliedOffsets]:
    """An account and the input offsets its state contains."""
    return _unframe(raw, "account", _ACCOUNT_DECODERS)


def _decode_account_record(body: Any, version: int) -> tuple[Account, AppliedOffsets]:
    """Format 1: the account and its offsets; 2 on: then its profile and override."""
    fields = _list(body, "account", 14 if version == 1 else 16)
    account = _decode_account(fields[:13], version)
    if version >= 2:
        ids = _Ids(account.account_id)
        account.profile = _decode_profile(fields[14], ids, version)
        account.override = _decode_override(fields[15], ids)
    return account, _decode_offsets(fields[13])


# Each format version's record is read by one decoder that asks the version where a structure
# changed (see `VERSION`): 3 appended usage.feature_days and 4 the alert memory's pending band
# change (those decoders read both lengths). Built once: recovery decodes every account.
_ACCOUNT_DECODERS: dict[int, Callable[[Any], tuple[Account, AppliedOffsets]]] = {
    version: partial(_decode_account_record, version=version) for version in range(1, VERSION + 1)
}


def _decode_account(body: Any, version: int) -> Account:
    fields = _list(body, "account", 13)
    account_id = _str(fields[0], "account.account_id")
    ids = _Ids(account_id)
    score = fields[10]
    return Account(
        account_id=account_id,
        first_seen=ids.time(fields[1], "account.first_seen"),
        revenue=_decode_revenue(fields[2], ids, version),
        usage=_decode_usage(fields[3], ids, feature_refs=version >= 5, user_keys=version >= 6),
        support=_decode_support(fields[4], ids, opening_status=version >= 7),
        sentiment=_decode_sentiment(fields[5], ids),
        alerts=_decode_alerts(fields[6]),
        seen=_decode_seen(fields[7]),
        now=_time(fields[8], "account.now"),
        last_event_at=_time(fields[9], "account.last_event_at"),
        score=None if score is None else _score(score, "account.score"),
        band=None if fields[11] is None else _band_word(fields[11], "account.band"),
        terms=_terms(fields[12]),
    )


def _terms(value: Any) -> tuple[int, ...]:
    """The account's share of the totals: none yet, or one number per totals field."""
    terms = tuple(_ints(value, "account.terms"))
    if terms and len(terms) != len(FIELDS):
        raise StateDecodeError(f"account.terms: expected none or {len(FIELDS)} numbers, got {len(terms)}")
    return terms


def _encode_seen(seen: SeenIds) -> list[Any]:
    """Keys packed 8 bytes each (the digest bytes: little-endian as the 64-bit keys before),
    times as differences, both in arrival order."""
    return [bytes(seen.keys), _time_deltas(seen.at_list())]


def _decode_seen(value: Any) -> SeenIds:
    packed, times = _list(value, "account.seen", 2)
    if type(packed) is not bytes or len(packed) % KEY_BYTES:
        raise StateDecodeError("account.seen: expected 8-byte keys")
    ats = _times(_untime_deltas(times, "account.seen times"), "account.seen times")
    if len(ats) != len(packed) // KEY_BYTES:
        raise StateDecodeError(f"account.seen: {len(packed) // KEY_BYTES} keys but {len(ats)} times")
    return SeenIds(bytearray(packed), bytearray(struct.pack(f"<{len(ats)}q", *ats)))


# -- profile and override -----------------------------------------------------------------------


def _encode_profile(profile: Profile | None, ids: _Ids) -> list[Any] | None:
    if profile is None:
        return None
    attributes = [item for key, value in profile.attributes.items() for item in (key, value)]
    return [
        profile.at,
        ids.encode(profile.event_id),
        profile.name,
        profile.owner,
        profile.segment,
        profile.tier,
        attributes,
        [item for at, event_id, segment in profile.earlier for item in (at, ids.encode(event_id), segment)],
    ]


def _decode_profile(value: Any, ids: _Ids, version: int = VERSION) -> Profile | None:
    if value is None:
        return None
    fields = _list(value, "profile", 8 if version >= 9 else 7)
    at, event_id, name, owner, segment, tier, raw_attributes = fields[:7]
    attributes = _list(raw_attributes, "profile.attributes", step=2)
    keys: dict[Any, None] = {}
    for key in attributes[0::2]:
        keys[_once(_word(key, "profile attribute"), keys, "profile attribute")] = None
    raw_earlier = _list(fields[7], "profile.earlier", step=3) if version >= 9 else []
    earlier = [
        (
            _time(raw_earlier[i], "profile.earlier"),
            ids.decode(raw_earlier[i + 1], "profile.earlier"),
            _opt_word(raw_earlier[i + 2], "profile.earlier"),
        )
        for i in range(0, len(raw_earlier), 3)
    ]
    latest = (_time(at, "profile.at"), ids.decode(event_id, "profile.event_id"))
    _check_order([(at, event_id) for at, event_id, _ in earlier], latest, "profile.earlier")
    return Profile(
        at=latest[0],
        event_id=latest[1],
        name=_opt_str(name, "profile.name"),
        owner=_opt_word(owner, "profile.owner"),
        segment=_opt_word(segment, "profile.segment"),
        tier=_opt_word(tier, "profile.tier"),
        attributes=_attributes(
            tuple(
                (_word(attributes[i], "profile attribute"), _word(attributes[i + 1], "attribute value"))
                for i in range(0, len(attributes), 2)
            )
        ),
        earlier=earlier,
    )


def _check_order(keys: Sequence[tuple[int | str, ...]], latest: tuple[int | str, ...], what: str) -> None:
    """Earlier versions are read in time order, all before the latest (`Profile.segment_at`,
    `Subscription.state_by`): a record that says otherwise would answer wrongly without a word."""
    if list(keys) != sorted(set(keys)) or (keys and keys[-1] >= latest):
        raise StateDecodeError(f"{what}: versions out of order, repeated or not before the latest")


_ATTRIBUTES: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}  # see `_attributes`
_MAX_ATTRIBUTES = 4096


def _attributes(items: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """A profile's attributes as one dict object shared by all decoded accounts with the same
    ones (a region or a plan repeat across accounts; a dict of one item takes 184 bytes). Never
    written: a new profile gets a new dict, the snapshot copies it. Bounded: past
    `_MAX_ATTRIBUTES` distinct ones, not shared."""
    found = _ATTRIBUTES.get(items)
    if found is None:
        found = dict(items)
        if len(_ATTRIBUTES) < _MAX_ATTRIBUTES:
            _ATTRIBUTES[items] = found
    return found


_BAND_NAMES = frozenset(band.value for band in Band)


def _band_word(value: Any, what: str) -> str:
    """A band's name as the account and its alert memory keep it (a string of the vocabulary)."""
    name = _word(value, what)
    if name not in _BAND_NAMES:
        raise StateDecodeError(f"{what}: {name!r:.40} is not a band")
    return name


def _opt_band(value: Any, what: str) -> Band | None:
    name = _opt_str(value, what)
    if name is None:
        return None
    try:
        return Band(name)
    except ValueError:
        raise StateDecodeError(f"{what}: {name!r:.40} is not a band") from None


def _encode_override(override: Override | None, ids: _Ids) -> list[Any] | None:
    if override is None:
        return None
    return [
        override.at,
        ids.encode(override.event_id),
        override.author,
        override.reason,
        override.band,
        None if override.score is None else float(override.score),
        override.expires_at,
        override.cleared,
    ]


def _decode_override(value: Any, ids: _Ids) -> Override | None:
    if value is None:
        return None
    at, event_id, author, reason, band, score, expires_at, cleared = _list(value, "override", 8)
    if type(cleared) is not bool:
        raise StateDecodeError(f"override.cleared: expected true or false, got {cleared!r:.40}")
    return Override(
        at=_time(at, "override.at"),
        event_id=ids.decode(event_id, "override.event_id"),
        author=_str(author, "override.author"),
        reason=_opt_str(reason, "override.reason"),
        band=_opt_band(band, "override.band"),
        score=None if score is None else _score(score, "override.score"),
        expires_at=_time(expires_at, "override.expires_at"),
        cleared=cleared,
    )


# -- revenue --------------------------------------------------------------------------------------


def _encode_revenue(revenue: Revenue, ids: _Ids) -> list[Any]:
    return [
        [
            item
            for sid, sub in revenue.subscriptions.items()
            for item in (ids.encode(sid), _encode_sub(sub, ids))
        ],
        [item for point in revenue.timeline for item in point],
        revenue.first_start,
        _time_deltas(revenue.payment_failures),
        revenue.version,
    ]


def _decode_revenue(value: Any, ids: _Ids, format_version: int) -> Revenue:
    subs, timeline, first_start, failures, version = _list(value, "revenue", 5)
    subs = _list(subs, "revenue.subscriptions", step=2)
    timeline = [
        (ids.time if i % 2 == 0 else ids.number)(item, "revenue.timeline")
        for i, item in enumerate(_list(timeline, "revenue.timeline"))
    ]
    if len(timeline) % 2:
        raise StateDecodeError("revenue.timeline: expected (time, mrr) pairs")
    subscriptions: dict[str, Subscription] = {}
    for i in range(0, len(subs), 2):
        sid = _once(ids.decode(subs[i], "subscription id"), subscriptions, "subscription id")
        subscriptions[sid] = _decode_sub(subs[i + 1], ids, format_version)
    return Revenue(
        subscriptions=subscriptions,
        timeline=[(timeline[i], timeline[i + 1]) for i in range(0, len(timeline), 2)],
        first_start=ids.opt_time(first_start, "revenue.first_start"),
        payment_failures=_times(
            _untime_deltas(failures, "revenue.payment_failures"),
            "revenue.payment_failures",
            MAX_PAYMENT_FAILURES,
        ),
        version=_counter(version, "revenue.version"),
    )


def _encode_sub(sub: Subscription, ids: _Ids) -> list[Any]:
    # points: (effective_at, occurred_at - effective_at, event id, mrr); their ranks (and the
    # state's) in the last field
    points = [item for eff, occ, _, eid, mrr in sub.points for item in (eff, occ - eff, ids.encode(eid), mrr)]
    return [
        points,
        sub.plan,
        sub.seats,
        sub.state_at[0],
        ids.encode(sub.state_at[2]),
        sub.term_end,
        sub.term_end_at[0],
        ids.encode(sub.term_end_at[1]),
        sub.started_at,
        sub.term_ends,
        [sub.state_at[1], *(point[2] for point in sub.points)],
        [
            item
            for at, rank, eid, plan, seats in sub.earlier_states
            for item in (at, rank, ids.encode(eid), plan, seats)
        ],
        [item for at, eid, end in sub.earlier_terms for item in (at, ids.encode(eid), end)],
    ]


def _decode_sub(value: Any, ids: _Ids, format_version: int) -> Subscription:
    """Formats 1-7 store no ranks: every step and state reads as a change; formats 1-10 no
    earlier states or term ends, and the latest effective instant of any cancellation (field 9,
    derived from the steps since: `Subscription.canceled_by`)."""
    ranked = format_version >= 8
    fields = _list(value, "subscription", 13 if format_version >= 11 else 12 if ranked else 11)
    if format_version < 11:
        fields = [*fields[:9], *fields[10:]]
    raw_points = _list(fields[0], "subscription.points", step=4)
    ranks = _ints(fields[10], "subscription.ranks") if ranked else [CHANGED] * (len(raw_points) // 4 + 1)
    if len(ranks) != len(raw_points) // 4 + 1 or not all(STARTED <= rank <= CANCELED for rank in ranks):
        raise StateDecodeError(
            f"subscription.ranks: expected a rank 0-2 for the state and each step, got {ranks!r:.60}"
        )
    points: list[Point] = []
    for i in range(0, len(raw_points), 4):
        eff = ids.time(raw_points[i], "point.effective_at")
        points.append(
            (
                eff,
                ids.time(eff + _int(raw_points[i + 1], "point.occurred_at"), "point.occurred_at"),
                ranks[i // 4 + 1],
                ids.decode(raw_points[i + 2], "point.event_id"),
                ids.number(raw_points[i + 3], "point.mrr"),
            )
        )
    state_at, state_id = ids.pair(fields[3], fields[4], "subscription.state_at")
    term_end_at = ids.pair(fields[6], fields[7], "subscription.term_end_at")
    earlier_states, earlier_terms = _decode_earlier(fields[11:], ids)
    _check_order(
        [state[:3] for state in earlier_states], (state_at, ranks[0], state_id), "subscription.earlier_states"
    )
    _check_order([term[:2] for term in earlier_terms], term_end_at, "subscription.earlier_terms")
    return Subscription(
        points=points,
        plan=_opt_word(fields[1], "subscription.plan"),
        seats=_opt_int(fields[2], "subscription.seats"),
        state_at=(state_at, ranks[0], state_id),
        term_end=ids.opt_time(fields[5], "subscription.term_end"),
        term_end_at=term_end_at,
        started_at=ids.opt_time(fields[8], "subscription.started_at"),
        term_ends=[
            ids.time(item, "subscription.term_ends")
            for item in _at_most(
                _list(fields[9], "subscription.term_ends"), MAX_TERM_ENDS, "subscription.term_ends"
            )
        ],
        earlier_states=earlier_states,
        earlier_terms=earlier_terms,
    )


def _decode_earlier(fields: list[Any], ids: _Ids) -> tuple[list[State], list[Term]]:
    """A subscription's earlier states and term ends (none before format 11)."""
    if not fields:
        return [], []
    raw_states = _list(fields[0], "subscription.earlier_states", step=5)
    raw_terms = _list(fields[1], "subscription.earlier_terms", step=3)
    if len(raw_states) > 5 * MAX_EARLIER or len(raw_terms) > 3 * MAX_EARLIER:
        raise StateDecodeError(f"subscription: more than {MAX_EARLIER} earlier states or term ends")
    states: list[State] = []
    for i in range(0, len(raw_states), 5):
        rank = _int(raw_states[i + 1], "subscription.earlier_states")
        if not STARTED <= rank <= CHANGED:
            raise StateDecodeError(f"subscription.earlier_states: expected a rank 0-1, got {rank!r}")
        states.append(
            (
                ids.time(raw_states[i], "subscription.earlier_states"),
                rank,
                ids.decode(raw_states[i + 2], "subscription.earlier_states"),
                _opt_word(raw_states[i + 3], "subscription.earlier_states"),
                _opt_int(raw_states[i + 4], "subscription.earlier_states"),
            )
        )
    terms = [
        (
            ids.time(raw_terms[i], "subscription.earlier_terms"),
            ids.decode(raw_terms[i + 1], "subscription.earlier_terms"),
            ids.time(raw_terms[i + 2], "subscription.earlier_terms"),
        )
        for i in range(0, len(raw_terms), 3)
    ]
    return states, terms


# -- usage ----------------------------------------------------------------------------------------


def _encode_usage(usage: Usage, ids: _Ids) -> list[Any]:
    base = usage.horizon_day
    buckets = list(zip(usage.bucket_days, usage.bucket_activity, usage.bucket_users, strict=True))
    return [
        base,
        bytes(usage.user_keys),
        [day - base for day in usage.user_last],
        list(usage.user_masks),
        [item for day, _, users in buckets if users for item in (day - base, users)],
        [
            item
            for pair in zip(usage.last_days, usage.last_day_users, strict=True)
            for item in (pair[0] - base, pair[1])
        ],
        [item for day, events, _ in buckets for item in (day - base, events)],
        [item for name, day in usage.features.items() for item in (name, day - base)],
        usage.first_use,
        usage.first_key_use,
        usage.last_use,
        usage._sums_end,
        usage._sums,
        _encode_feature_days(usage),
    ]


def _encode_feature_days(usage: Usage) -> list[Any]:
    """Per tracked feature: its index among `usage.features` (every feature with counters is
    there) and its (day, count) pairs."""
    index = {name: i for i, name in enumerate(usage.features)}
    missing = set(usage.feature_names) - index.keys()
    if missing:
        raise ValueError(f"usage.feature_names counts features usage.features lacks: {sorted(missing)[:3]}")
    base = usage.horizon_day
    pairs, found, start = usage.feature_pairs, [], 0
    for name, stop in zip(usage.feature_names, usage.feature_ends, strict=True):
        found += [index[name], _flat_pairs(pairs[start:stop], base)]
        start = stop
    return found


def _decode_usage(value: Any, ids: _Ids, feature_refs: bool = False, user_keys: bool = False) -> Usage:
    """`feature_refs`: the events per feature name their feature by index (format 5 on);
    `user_keys`: the users are their packed 8-byte keys (format 6 on), not their ids."""
    fields = _list(value, "usage")
    if len(fields) not in (13, 14):  # 13: format versions 1 and 2, before events per feature
        raise StateDecodeError(f"usage: expected 13 or 14 items, got {len(fields)}")
    volumes = _list(fields[13], "usage.feature_days", step=2) if len(fields) == 14 else []
    base = _int(fields[0], "usage.horizon_day")
    if user_keys:
        keys = fields[1]
        if type(keys) is not bytes or len(keys) % KEY_BYTES:
            raise StateDecodeError("usage.users: expected 8-byte keys")
    else:
        keys = b"".join(
            user_key(ids.decode(item, "usage user id")) for item in _list(fields[1], "usage.users")
        )
    last_days = _ints(fields[2], "usage.users last day")
    masks = [_mask(mask) for mask in _ints(fields[3], "usage.users mask")]
    if not len(keys) // KEY_BYTES == len(last_days) == len(masks):
        raise StateDecodeError(
            f"usage.users: {len(keys) // KEY_BYTES} users, {len(last_days)} days, {len(masks)} masks"
        )
    features = _list(fields[7], "usage.features", step=2)
    if feature_refs:
        names = features[0::2]
        for i in range(0, len(volumes), 2):
            ref = _int(volumes[i], "usage.feature_days feature index")
            if not 0 <= ref < len(names):
                raise StateDecodeError(
                    f"usage.feature_days: feature index {ref} out of range ({len(names)} features)"
                )
            volumes[i] = names[ref]
    sums = _ints(fields[12], "usage window sums")
    if len(sums) != 5:
        raise StateDecodeError(f"usage window sums: expected 5, got {len(sums)}")
    named: dict[str, None] = {}
    for i in range(0, len(features), 2):
        named[_once(_word(features[i], "usage feature"), named, "usage feature")] = None
    feature_words = list(named)
    daily_users = _unflat_days(fields[4], base, "usage.daily_users")
    last_day_users = _unflat_days(fields[5], base, "usage.last_day_users")
    daily_activity = _unflat_days(fields[6], base, "usage.daily_activity")
    if not daily_users.keys() <= daily_activity.keys():
        raise StateDecodeError("usage.daily_users: a day with users but no events")
    days = sorted(daily_activity)
    last = sorted(last_day_users)
    try:
        usage = Usage(
            user_keys=bytearray(keys),
            user_last=array(DAYS, [day + base for day in last_days]),
            user_masks=array(MASKS, masks),
            bucket_days=array(DAYS, days),
            bucket_activity=counts(daily_activity[day] for day in days),
            bucket_users=array(DAYS, [daily_users.get(day, 0) for day in days]),
            last_days=array(DAYS, last),
            last_day_users=array(DAYS, [last_day_users[day] for day in last]),
            features={
                name: _day(_int(features[2 * n + 1], "usage feature day") + base)
                for n, name in enumerate(feature_words)
            },
            first_use=_opt_time(fields[8], "usage.first_use"),
            first_key_use=_opt_time(fields[9], "usage.first_key_use"),
            last_use=_opt_time(fields[10], "usage.last_use"),
            horizon_day=base,
        )
        for i in range(0, len(volumes), 2):
            feature = _word(volumes[i], "usage feature")
            if feature in usage.feature_names:
                raise StateDecodeError(f"usage.feature_days: feature {feature!r:.40} counted twice")
            if feature not in usage.features:  # formats 3-4 name it (5 on index usage.features)
                raise StateDecodeError(f"usage.feature_days: feature {feature!r:.40} not in usage.features")
            usage.add_feature_counts(feature, _unflat_pairs(volumes[i + 1], base, "usage.feature_days"))
    except OverflowError as exc:
        raise StateDecodeError(f"usage: a day or count out of range: {exc}") from exc
    usage._sums_end = _int(fields[11], "usage sums end")
    usage._sums = sums
    return usage


# -- support --------------------------------------------------------------------------------------


def _encode_support(support: Support, ids: _Ids) -> list[Any]:
    base = support.horizon_day
    tickets: list[Any] = []
    for i, ticket_id in enumerate(support.tickets):
        flags = support.flags(i)
        at, event_id = support.status_at(i)
        tickets += [
            ids.encode(ticket_id),
            flags & PRIORITY_BITS,
            support.opened_at(i),
            (1 if flags & RESOLVED_FLAG else 0) | (2 if flags & OPEN_FLAG else 0),
            at,
            ids.encode(event_id),
            [item for pair in support.ticket_resolutions(i) for item in pair],
        ]
    days = list(support.days)
    for i in range(0, len(days), DAY_FIELDS):
        days[i] -= base
    return [base, tickets, days, support.ever, support.version]


def _decode_support(value: Any, ids: _Ids, opening_status: bool) -> Support:
    try:
        return _decode_support_numbers(value, ids, opening_status)
    except OverflowError as exc:
        raise StateDecodeError(f"support: a time or count out of the 64-bit range: {exc}") from exc


def _decode_support_numbers(value: Any, ids: _Ids, opening_status: bool) -> Support:
    """`opening_status` False (formats 1-6): a ticket never resolved whose status is dated at its
    opening took the opening's event id as its status; it is read as format 7 writes it (no status
    but its opening), so that a resolution stamped at or before that opening resolves it."""
    base, raw_tickets, raw_days, ever, version = _list(value, "support", 5)
    base = _int(base, "support.horizon_day")
    raw_tickets = _list(raw_tickets, "support.tickets", step=7)
    support = Support()
    for i in range(0, len(raw_tickets), 7):
        ticket_id = ids.decode(raw_tickets[i], "ticket id")
        priority = _int(raw_tickets[i + 1], "ticket priority")
        flags = _int(raw_tickets[i + 3], "ticket status")
        if not 0 <= priority < len(PRIORITIES) or not 0 <= flags < 4:
            raise StateDecodeError(
                f"ticket {ticket_id!r}: priority {priority} or status {flags} out of range"
            )
        resolutions = _ints(raw_tickets[i + 6], "ticket resolutions")
        if len(resolutions) % 2:
            raise StateDecodeError(f"ticket {ticket_id!r}: resolutions are not (time, contacts) pairs")
        _times(resolutions[0::2], "ticket resolution time")
        if ticket_id in support.tickets:
            raise StateDecodeError(f"ticket {ticket_id!r} stored twice")
        opened_at = _opt_time(raw_tickets[i + 2], "ticket opened_at")
        status_at = _time(raw_tickets[i + 4], "ticket status_at")
        status_id = ids.decode(raw_tickets[i + 5], "ticket")
        if not opening_status and status_at == opened_at and not flags & 1 and not resolutions:
            status_id = ""  # its status was its opening (a reopen cannot come at the same instant)
        index = support.add_ticket(
            ticket_id,
            priority | (RESOLVED_FLAG if flags & 1 else 0) | (OPEN_FLAG if flags & 2 else 0),
            NEVER if opened_at is None else opened_at,
            status_at,
            status_id,
        )
        for j in range(0, len(resolutions), 2):
            support.add_resolution(index, resolutions[j], resolutions[j + 1])
    days = _ints(raw_days, "support.days")
    if len(days) % DAY_FIELDS:
        raise StateDecodeError(f"support.days: expected groups of {DAY_FIELDS} numbers")
    for i in range(0, len(days), DAY_FIELDS):
        days[i] += base
    if type(ever) is not bool:
        raise StateDecodeError(f"support.ever: expected a boolean, got {ever!r:.40}")
    support.days = array(NUMBERS, days)
    support.ever = ever
    support.horizon_day = base
    support.version = _counter(version, "support.version")
    return support


# -- sentiment ------------------------------------------------------------------------------------


def _encode_sentiment(sentiment: Sentiment, ids: _Ids) -> list[Any]:
    def answers(rows: list[tuple[int, str, int]]) -> list[Any]:
        times = _time_deltas([at for at, _, _ in rows])
        return [
            item
            for dt, (_, eid, score) in zip(times, rows, strict=True)
            for item in (dt, ids.encode(eid), score)
        ]

    nps = [
        item
        for respondent, (at, eid, score) in zip(sentiment.respondents, sentiment.answers("nps"), strict=True)
        for item in (ids.encode(respondent), at, ids.encode(eid), score)
    ]
    comments = [
        item
        for at, eid, kind, score, text in sentiment.comments
        for item in (at, ids.encode(eid), kind, score, text)
    ]
    return [
        nps,
        answers(sentiment.answers("csat")),
        answers(sentiment.answers("ces")),
        comments,
        sentiment.version,
    ]


def _decode_sentiment(value: Any, ids: _Ids) -> Sentiment:
    try:
        return _decode_sentiment_numbers(value, ids)
    except OverflowError as exc:
        raise StateDecodeError(f"sentiment: a time or score out of the 64-bit range: {exc}") from exc


def _decode_sentiment_numbers(value: Any, ids: _Ids) -> Sentiment:
    raw_nps, raw_csat, raw_ces, raw_comments, version = _list(value, "sentiment", 5)
    sentiment = Sentiment()

    def answers(kind: str, raw: Any, what: str) -> None:
        items = _list(raw, what, step=3)
        times = _times(_untime_deltas(items[0::3], what), what)
        for n, at in enumerate(times):
            sentiment.add_answer(kind, at, ids.decode(items[3 * n + 1], what), _int(items[3 * n + 2], what))

    nps = _list(raw_nps, "sentiment.nps", step=4)
    for i in range(0, len(nps), 4):
        respondent = ids.decode(nps[i], "nps respondent")
        if respondent in sentiment.respondents:
            raise StateDecodeError(f"sentiment.nps: respondent {respondent!r:.40} stored twice")
        sentiment.add_answer(
            "nps",
            _time(nps[i + 1], "nps at"),
            ids.decode(nps[i + 2], "nps event id"),
            _int(nps[i + 3], "nps score"),
            respondent,
        )
    answers("csat", raw_csat, "sentiment.csat")
    answers("ces", raw_ces, "sentiment.ces")
    comments = _list(raw_comments, "sentiment.comments", step=5)
    sentiment.comments = [
        (
            _time(comments[i], "comment at"),
            ids.decode(comments[i + 1], "comment event id"),
            _word(comments[i + 2], "comment kind"),
            _int(comments[i + 3], "comment score"),
            _str(comments[i + 4], "comment text"),
        )
        for i in range(0, len(comments), 5)
    ]
    sentiment.version = _counter(version, "sentiment.version")
    return sentiment


# -- alert memory ---------------------------------------------------------------------------------


def _encode_alerts(memory: AlertMemory) -> list[Any]:
    return [
        [item for rule, (at, level, key) in memory.raised.items() for item in (rule, at, level, key)],
        [item for rule, (start, level) in memory.episodes.items() for item in (rule, start, level)],
        [item for day, score in memory.daily_max.items() for item in (day, float(score))],
        list(memory.scored_on),
        [] if memory.band is None else [memory.band[0], float(memory.band[1])],
        [] if memory.pending is None else list(memory.pending),
    ]


def _decode_alerts(value: Any) -> AlertMemory:
    items = _list(value, "alerts")
    if len(items) == 5:  # written before version 4: no pending band change
        items = [*items, []]
    raw_raised, raw_episodes, raw_daily, scored_on, raw_band, raw_pending = _list(items, "alerts", 6)
    band = _list(raw_band, "alerts.band")
    if len(band) not in (0, 2):
        raise StateDecodeError(f"alerts.band: expected [] or [band, score], got {len(band)} items")
    pending = _list(raw_pending, "alerts.pending")
    if len(pending) not in (0, 2) or (pending and pending[0] not in (1, -1)):
        raise StateDecodeError(
            f"alerts.pending: expected [] or [direction 1 or -1, since], got {pending!r:.60}"
        )
    flat_raised = _list(raw_raised, "alerts.raised", step=4)
    flat_episodes = _list(raw_episodes, "alerts.episodes", step=3)
    daily = _list(raw_daily, "alerts.daily_max", step=2)
    raised: dict[str, tuple[int, int, str]] = {}
    for i in range(0, len(flat_raised), 4):
        rule = _once(_word(flat_raised[i], "alert rule"), raised, "alert rule")
        raised[rule] = (
            _time(flat_raised[i + 1], "alert at"),
            _int(flat_raised[i + 2], "alert level"),
            _str(flat_raised[i + 3], "alert key"),
        )
    episodes: dict[str, tuple[int, int]] = {}
    for i in range(0, len(flat_episodes), 3):
        rule = _once(_word(flat_episodes[i], "episode rule"), episodes, "episode rule")
        episodes[rule] = (
            _time(flat_episodes[i + 1], "episode start"),
            _int(flat_episodes[i + 2], "episode level"),
        )
    daily_max: dict[int, float] = {}
    for i in range(0, len(daily), 2):
        day = _once(_day(_int(daily[i], "daily_max day")), daily_max, "daily_max day")
        daily_max[day] = _score(daily[i + 1], "daily_max score")
    return AlertMemory(
        raised=raised,
        episodes=episodes,
        daily_max=daily_max,
        scored_on=_shared(tuple(_word(name, "scored_on") for name in _list(scored_on, "alerts.scored_on"))),
        band=(_band_word(band[0], "alerts.band name"), _score(band[1], "alerts.band score"))
        if band
        else None,
        pending=(int(pending[0]), _time(pending[1], "alerts.pending since")) if pending else None,
    )


K = TypeVar("K")


def _once(key: K, found: dict[K, Any], what: str) -> K:
    """`key`, refused when `found` has it already (a dict would keep the last without a word)."""
    if key in found:
        raise StateDecodeError(f"{what} {key!r:.40} stored twice")
    return key


# -- partition records ----------------------------------------------------------------------------


def encode_partition(record: PartitionRecord) -> bytes:
    """A partition's clock, applied input offsets and handled copies as a state record."""
    offsets = record.offsets
    return _frame(
        [
            record.clock.stream_time,
            record.clock.next_tick,
            _encode_offsets(offsets),
            _encode_copies(record.copies),
        ]
    )


def _encode_copies(copies: HandledCopies) -> list[Any]:
    """Per source: topic, partition, floor, origins as differences, digests packed 8 bytes each."""
    return [
        item
        for (topic, partition), handled in sorted(copies.sources.items())
        for item in (
            topic,
            partition,
            handled.floor,
            _deltas(handled.origins),
            struct.pack(f">{len(handled.digests)}Q", *handled.digests),
        )
    ]


def _decode_copies(value: Any) -> HandledCopies:
    items = _list(value, "copies", step=5)
    copies = HandledCopies()
    for i in range(0, len(items), 5):
        topic, partition = _word(items[i], "copies topic"), _int(items[i + 1], "copies partition")
        origins, packed = _undeltas(items[i + 3], "copies origins"), items[i + 4]
        if type(packed) is not bytes or len(packed) != 8 * len(origins):
            raise StateDecodeError(f"copies digests: {len(origins)} origins need {8 * len(origins)} bytes")
        if any(later <= earlier for earlier, later in pairwise(origins)):
            raise StateDecodeError("copies origins: not ascending")
        digests = list(struct.unpack(f">{len(origins)}Q", packed))
        if (topic, partition) in copies.sources or not origins:
            raise StateDecodeError(f"copies of {topic}[{partition}]: listed twice, or with no origin")
        copies.sources[(topic, partition)] = Handled(_int(items[i + 2], "copies floor"), origins, digests)
        copies.listed += len(origins)
    return copies


def _encode_offsets(offsets: AppliedOffsets) -> list[Any]:
    return [
        item
        for topic in sorted(offsets.next)
        for item in (topic, offsets.next[topic], _deltas(offsets.above.get(topic, [])))
    ]


def _decode_offsets(value: Any) -> AppliedOffsets:
    items = _list(value, "offsets", step=3)
    offsets = AppliedOffsets()
    for i in range(0, len(items), 3):
        topic = _once(_word(items[i], "offsets topic"), offsets.next, "offsets topic")
        mark = offsets.next[topic] = _int(items[i + 1], "offsets next")
        above = _undeltas(items[i + 2], "offsets above")
        _at_most(above, MAX_ABOVE, f"offsets above of {topic!r:.40}")
        # `AppliedOffsets.advance` keeps them ascending and past the mark (the one at it joins it)
        if any(later <= earlier for earlier, later in pairwise([mark, *above])):
            raise StateDecodeError(f"offsets above of {topic!r:.40}: not ascending past the mark {mark}")
        if above:
            offsets.above[topic] = above
    return offsets


def decode_partition(raw: bytes) -> PartitionRecord:
    """A partition record; `StateDecodeError` says what is wrong with it."""
    return _unframe(raw, "partition", _PARTITION_DECODERS)


def _decode_partition_v1(body: Any) -> PartitionRecord:
    stream_time, next_tick, raw_offsets = _list(body, "partition", 3)
    return PartitionRecord(_decode_clock(stream_time, next_tick), _decode_offsets(raw_offsets))


def _decode_clock(raw_stream_time: Any, raw_next_tick: Any) -> Clock:
    """A partition's clock as the engine leaves it: both -1 (no event yet), or a stream time
    (an admitted event's time, before `LATEST_EVENT_MS`) and a next tick after it, at most one
    rescore interval later (`MAX_TICK_AHEAD`). Past that, a recovery stepped back from the tick
    towards a midnight for hours, a late event re-scored each day up to it, and a stream time
    past the year 9999 failed every date."""
    stream_time = _int(raw_stream_time, "clock.stream_time")
    next_tick = _int(raw_next_tick, "clock.next_tick")
    if not -1 <= stream_time < LATEST_EVENT_MS:
        raise StateDecodeError(
            f"clock.stream_time: {stream_time} is neither -1 nor an event time before {iso(LATEST_EVENT_MS)}"
        )
    if stream_time < 0 and next_tick != -1:
        raise StateDecodeError(f"clock.next_tick: {next_tick} with no stream time (expected -1)")
    if stream_time >= 0 and not stream_time < next_tick <= stream_time + MAX_TICK_AHEAD:
        raise StateDecodeError(
            f"clock.next_tick: {next_tick} is not after the stream time {stream_time} "
            f"by at most the longest rescore interval ({MAX_TICK_AHEAD // DAY} days)"
        )
    return Clock(stream_time, next_tick)


def _decode_partition_v10(body: Any) -> PartitionRecord:
    *before, raw_copies = _list(body, "partition", 4)
    record = _decode_partition_v1(before)
    record.copies = _decode_copies(raw_copies)
    return record


# The partition record was the same from format 1 to 9; format 10 appends the handled copies
# (format 11 changed the account record only).
_PARTITION_DECODERS: dict[int, Callable[[Any], PartitionRecord]] = {
    **dict.fromkeys(range(1, 10), _decode_partition_v1),
    **dict.fromkeys(range(10, VERSION + 1), _decode_partition_v10),
}


# -- peer references ------------------------------------------------------------------------------

PEERS_VERSION = 2  # the first byte of a peer-references record (a record kind of its own)
# 2: with the committed accounts per group (the bands read their share); a version-1 record
# decodes with none, as if no peer were committed, until the next daily refresh replaces it


def encode_peers(references: Sequence[PeerReference]) -> bytes:
    """A partition's recent peer references (oldest first), stored so that a recovering worker
    does not rebuild each of them from every account. Summaries are packed as little-endian
    doubles: the same floats come back, bit for bit."""
    body = [
        [
            reference.tick,
            reference.window_end,
            [
                item
                for (group, signal), values in reference.groups.items()
                for item in (group, signal, struct.pack(f"<{len(values)}d", *values))
            ],
            [item for group, size in reference.sizes.items() for item in (group, size)],
            [item for group, count in reference.committed.items() for item in (group, count)],
        ]
        for reference in references
    ]
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return bytes((PEERS_VERSION,)) + packed


def encode_peers_within(references: Sequence[PeerReference], limit: int) -> tuple[bytes, int] | None:
    """`encode_peers` of the newest references whose record fits in `limit` bytes, and how many
    it holds; None when not even the newest one fits. A recovery rebuilds the references a record
    lacks, so leaving the oldest out costs time, never an answer."""
    for start in range(len(references)):
        raw = encode_peers(references[start:])
        if len(raw) <= limit:
            return raw, len(references) - start
    return None


def decode_peers(raw: bytes) -> list[PeerReference]:
    """Peer references from their record; `StateDecodeError` says what is wrong with it."""
    return _unframe(raw, "peer references", {1: _decode_peers_v1, PEERS_VERSION: _decode_peers_v2})


def _decode_peers_v1(body: Any) -> list[PeerReference]:
    return _decode_peers(body, with_committed=False)


def _decode_peers_v2(body: Any) -> list[PeerReference]:
    return _decode_peers(body, with_committed=True)


def _decode_peers(body: Any, with_committed: bool) -> list[PeerReference]:
    references = []
    for item in _list(body, "peer references"):
        fields = _list(item, "peer reference", 5 if with_committed else 4)
        tick, window_end, raw_groups, raw_sizes = fields[:4]
        groups: dict[tuple[str, str], tuple[float, ...]] = {}
        flat = _list(raw_groups, "peer reference groups", step=3)
        for i in range(0, len(flat), 3):
            packed = flat[i + 2]
            if type(packed) is not bytes or len(packed) % 8:
                raise StateDecodeError("peer reference values: expected packed 8-byte floats")
            key = (_word(flat[i], "peer group"), _word(flat[i + 1], "peer signal"))
            groups[key] = struct.unpack(f"<{len(packed) // 8}d", packed)
        flat_sizes = _list(raw_sizes, "peer reference sizes", step=2)
        sizes = {
            _word(flat_sizes[i], "peer group"): _int(flat_sizes[i + 1], "group size")
            for i in range(0, len(flat_sizes), 2)
        }
        flat_committed = _list(fields[4], "peer reference committed", step=2) if with_committed else []
        committed = {
            _word(flat_committed[i], "peer group"): _int(flat_committed[i + 1], "committed accounts")
            for i in range(0, len(flat_committed), 2)
        }
        references.append(
            PeerReference(
                tick=_int(tick, "peer reference tick"),
                window_end=_int(window_end, "peer reference window_end"),
                groups=groups,
                sizes=sizes,
                committed=committed,
            )
        )
    return references
