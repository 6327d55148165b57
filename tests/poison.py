"""A fixed corpus of bad input messages, and how to mix it into a valid stream.

Each entry is built for an event time `when` (the time of the valid event it is placed after),
so an entry that is bad for another reason is never also too late or ahead of stream time.
`reason` is a fragment of the dead-letter reason it must get.

Entries with `in_file=False` only exist as Kafka messages (a null value, a key, a topic).
Messages that are *not* dead-lettered live in `rerouted` (keyless and wrongly partitioned:
re-published keyed by their account) and `reused_id` (an event id reused with another
payload: the duplicate rule applies, it changes nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

ValueMaker = Callable[[str], bytes | None]


@dataclass(frozen=True)
class Poison:
    name: str
    make: ValueMaker  # value for an event time (RFC 3339 text)
    reason: str  # fragment of the dead-letter reason
    family: str = "usage"  # the topic family it is published to
    key: bytes | str | None = "account"  # "account": keyed by its account id; bytes: that key
    in_file: bool = True  # can be a line of a JSON-lines file

    @property
    def account(self) -> str:
        return f"poison-{self.name}"

    def value(self, when: str) -> bytes | None:
        return self.make(when)

    def message_key(self) -> bytes | None:
        if self.key == "account":
            return self.account.encode()
        return self.key if isinstance(self.key, bytes) else None


def usage(account: str, when: str, event_id: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": event_id,
        "event_type": "usage.recorded",
        "account_id": account,
        "occurred_at": when,
        "user_id": "u1",
        "feature": "reports",
    }
    return _change(record, changes)


def started(account: str, when: str, event_id: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": event_id,
        "event_type": "subscription.started",
        "account_id": account,
        "occurred_at": when,
        "subscription_id": f"{account}-s1",
        "plan": "pro",
        "amount": "100.00",
        "currency": "USD",
        "interval": "month",
        "seats": 5,
    }
    return _change(record, changes)


def _change(record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        if value is _REMOVE:
            record.pop(name, None)
        else:
            record[name] = value
    return record


_REMOVE = object()


def _usage(name: str, **changes: Any) -> ValueMaker:
    return lambda when: orjson.dumps(usage(f"poison-{name}", when, f"{name}-1", **changes))


def _started(name: str, **changes: Any) -> ValueMaker:
    return lambda when: orjson.dumps(started(f"poison-{name}", when, f"{name}-1", **changes))


def _number_amount(name: str, literal: bytes) -> ValueMaker:
    """A subscription.started whose amount is the JSON number `literal`, as written."""
    return lambda when: orjson.dumps(started(f"poison-{name}", when, f"{name}-1", amount="?")).replace(
        b'"amount":"?"', b'"amount":' + literal
    )


def _later(when: str, days: float) -> str:
    moment = datetime.fromisoformat(when.replace("Z", "+00:00")) + timedelta(days=days)
    return moment.isoformat().replace("+00:00", "Z")


def _profile(poison: str, **fields: Any) -> ValueMaker:
    def make(when: str) -> bytes:
        record = {
            "event_id": f"{poison}-1",
            "event_type": "account.updated",
            "account_id": f"poison-{poison}",
            "occurred_at": when,
            "name": "Poison Inc",
        }
        return orjson.dumps(_change(record, fields))

    return make


def _override(poison: str, expires_in_days: float = 7, **fields: Any) -> ValueMaker:
    def make(when: str) -> bytes:
        record = {
            "event_id": f"{poison}-1",
            "event_type": "health.override",
            "account_id": f"poison-{poison}",
            "occurred_at": when,
            "band": "red",
            "reason": "exec sponsor left",
            "author": "ana@example.com",
            "expires_at": _later(when, expires_in_days),
        }
        return orjson.dumps(_change(record, fields))

    return make


def _raw(value: bytes | None) -> ValueMaker:
    return lambda when: value


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _huge_value(when: str) -> bytes:
    """~900 KB of valid JSON: an event whose comment is far too long."""
    record = usage("poison-huge-value", when, "huge-value-1") | {"feature": "x" * 900_000}
    return orjson.dumps(record)


def _non_utf8_huge(when: str) -> bytes:
    """~900 KB that is not UTF-8 (and has no line break, so it is one line of a file too)."""
    return b"\xff\xfe" + bytes(range(0x80, 0x100)) * 3600


def _surrogate(when: str) -> bytes:
    text = orjson.dumps(usage("poison-surrogate", when, "surrogate-1")).decode()
    return text.replace('"u1"', '"\\ud800"').encode()


def _hour_24(name: str) -> ValueMaker:
    """A usage event dated hour 24 of its day, which RFC 3339 does not have."""
    return lambda when: orjson.dumps(usage(f"poison-{name}", f"{when[:10]}T24:00:00Z", f"{name}-1"))


def _dated(name: str, time_of_day: str) -> ValueMaker:
    """A usage event dated its day at `time_of_day` (a time and an offset), as written."""
    return lambda when: orjson.dumps(usage(f"poison-{name}", f"{when[:10]}T{time_of_day}", f"{name}-1"))


def _count_digits(name: str, digits: int) -> ValueMaker:
    """A usage event whose count is a JSON number of `digits` digits, as written."""
    return lambda when: orjson.dumps(usage(f"poison-{name}", when, f"{name}-1", count=7)).replace(
        b'"count":7', b'"count":' + b"9" * digits
    )


POISONS: list[Poison] = [
    Poison("null-value", _raw(None), "has no value (null)", in_file=False),
    Poison("empty-value", _raw(b""), "value is empty", in_file=False),
    Poison("blank-value", _raw(b"   \t "), "value is empty", in_file=False),
    Poison("form-feed", _raw(b"\x0c\x0b"), "not valid JSON"),  # Python's whitespace, not JSON's
    Poison("invalid-json", _raw(b'{"event_id": "x1", "account_id": "p", oops'), "not valid JSON"),
    Poison("non-utf8", _raw(b"\xff\xfe\x00 not utf-8"), "not valid JSON"),
    Poison("line-ends", _raw(b"not json\r\n"), "not valid JSON", in_file=False),  # recorded with them
    Poison("non-utf8-900kb", _non_utf8_huge, "not valid JSON"),
    Poison("huge-value", _huge_value, "String should have at most 128 characters"),
    Poison("deep-nesting", _raw(_nested(10_000)), "recursion limit exceeded"),
    Poison("deep-array", _raw(b"[" * 10_000 + b"]" * 10_000), "recursion limit exceeded"),
    Poison("huge-id", _usage("huge-id", user_id="u" * 100_000), "field 'user_id' of usage.recorded"),
    Poison("wrong-type", _usage("wrong-type", count="3"), "field 'count' of usage.recorded"),
    Poison("hour-24", _hour_24("hour-24"), "hour 24 is not a time of day: write 00:00 of the next day"),
    # The three below read as "unexpected extra characters at the end of the input".
    Poison("hour-25", _dated("hour-25", "25:00:00Z"), "25:00:00 is not a time of day"),
    Poison("second-61", _dated("second-61", "23:59:61Z"), "23:59:61 is not a time of day"),
    Poison("offset-24h", _dated("offset-24h", "12:00:00+24:00"), "+24:00 is not a UTC offset"),
    Poison(
        "count-5000-digits",
        _count_digits("count-5000-digits", 5000),
        "(a number too large for any field of the contract)",
    ),
    Poison(
        "top-level-array", _raw(b'[{"event_type": "usage.recorded"}]'), "must be a JSON object (got list)"
    ),
    Poison("top-level-number", _raw(b"42"), "must be a JSON object (got int)"),
    Poison("top-level-string", _raw(b'"usage.recorded"'), "must be a JSON object (got str)"),
    Poison(
        "missing-field",
        _usage("missing-field", user_id=_REMOVE),
        "field 'user_id' of usage.recorded is required",
    ),
    Poison("missing-type", _usage("missing-type", event_type=_REMOVE), "missing field 'event_type'"),
    Poison("unknown-type", _usage("unknown-type", event_type="usage.teleported"), "unknown event_type"),
    Poison(
        "amount-1e30", _started("amount-1e30", amount="1e30"), "exponent notation", family="subscriptions"
    ),
    Poison(
        "amount-1e30-number",
        _started("amount-1e30-number", amount=1e30),
        "less than or equal to",
        family="subscriptions",
    ),
    Poison("amount-nan", _started("amount-nan", amount="NaN"), "finite number", family="subscriptions"),
    Poison(  # Python's \d took Arabic-Indic digits as 100.00
        "amount-arabic-digits",
        _started("amount-arabic-digits", amount="\u0661\u0660\u0660"),
        "expected a plain decimal string",
        family="subscriptions",
    ),
    Poison(  # a regex's $ let a trailing newline through
        "amount-trailing-newline",
        _started("amount-trailing-newline", amount="100\n"),
        "expected a plain decimal string",
        family="subscriptions",
    ),
    Poison("amount-minus-zero", _started("amount-minus-zero", amount="-0"), "a sign", family="subscriptions"),
    Poison(  # a valid amount, but as a JSON number a binary float holds 123456789012.12346
        "amount-inexact-number",
        _number_amount("amount-inexact-number", b"123456789012.123456"),
        "cannot be read exactly",
        family="subscriptions",
    ),
    Poison(  # decimal cannot hold the exponent: the safety net's "InvalidOperation" was the reason
        "amount-number-huge-exponent",
        _number_amount("amount-number-huge-exponent", b"0e1000000000000000000"),
        "cannot be read exactly",
        family="subscriptions",
    ),
    Poison(
        "amount-negative",
        _started("amount-negative", amount="-5"),
        "greater than or equal to 0",
        family="subscriptions",
    ),
    Poison(
        "amount-40-decimals",
        _started("amount-40-decimals", amount="1." + "3" * 40),
        "6 decimal places",
        family="subscriptions",
    ),
    Poison(
        "amount-over-limit",
        _started("amount-over-limit", amount="2000000000"),
        "input.max_amount",
        family="subscriptions",
    ),
    Poison("seats-1e18", _started("seats-1e18", seats=10**18), "field 'seats'", family="subscriptions"),
    Poison(
        "seats-over-limit",
        _started("seats-over-limit", seats=20_000_000),
        "input.max_seats",
        family="subscriptions",
    ),
    Poison("count-over-limit", _usage("count-over-limit", count=5_000_000), "input.max_count"),
    Poison(
        "year-1-plus-14", _usage("year-1-plus-14", occurred_at="0001-01-01T00:00:00+14:00"), "input.earliest"
    ),
    Poison("year-1969", _usage("year-1969", occurred_at="1969-12-31T23:59:59Z"), "input.earliest"),
    Poison("year-9999", _usage("year-9999", occurred_at="9999-12-31T23:59:59-14:00"), "input.max_skew_hours"),
    Poison("year-2100", _usage("year-2100", occurred_at="2100-01-01T00:00:00Z"), "input.max_skew_hours"),
    Poison(
        "term-end-9999",
        _started("term-end-9999", term_end="9999-01-01T00:00:00Z"),
        "input.max_term_years",
        family="subscriptions",
    ),
    Poison(  # scored "at its renewal" for good: yellow at 57.9 where it was 100
        "term-over-at-start",
        lambda when: orjson.dumps(
            started("poison-term-over-at-start", when, "term-over-at-start-1", term_end=_later(when, -1))
        ),
        "a subscription started into a term already over",
        family="subscriptions",
    ),
    Poison(  # a cancellation effective months back would rewrite closed months (or do nothing)
        "cancel-backdated",
        lambda when: orjson.dumps(
            {
                "event_id": "cancel-backdated-1",
                "event_type": "subscription.canceled",
                "account_id": "poison-cancel-backdated",
                "occurred_at": when,
                "subscription_id": "poison-cancel-backdated-s1",
                "effective_at": _later(when, -77),
            }
        ),
        "input.max_backdate_days",
        family="subscriptions",
    ),
    Poison("epoch-number-time", _usage("epoch-number-time", occurred_at=1700000000), "RFC 3339"),
    Poison("leap-second", _usage("leap-second", occurred_at="2016-12-31T23:59:60Z"), "a leap second (:60)"),
    Poison(
        "unknown-currency",
        _started("unknown-currency", currency="JPY"),
        "no exchange rate configured for currency 'JPY'",
        family="subscriptions",
    ),
    Poison("surrogate-escape", _surrogate, "hex escape"),
    Poison(
        "profile-name-too-long",
        _profile("profile-name-too-long", name="n" * 300),
        "field 'name' of account.updated",
        family="subscriptions",
    ),
    Poison(
        "profile-attributes-over-limit",
        _profile("profile-attributes-over-limit", attributes={f"k{i}": "v" for i in range(40)}),
        "input.max_attributes",
        family="subscriptions",
    ),
    Poison(
        "override-band-and-score",
        _override("override-band-and-score", score=12.5),
        "exactly one of 'band' and 'score'",
        family="subscriptions",
    ),
    Poison(
        "override-expired-when-set",
        _override("override-expired-when-set", expires_in_days=-1),
        "must be after occurred_at",
        family="subscriptions",
    ),
    Poison(  # after occurred_at by 100 microseconds: the core counts milliseconds, it never applied
        "override-within-its-millisecond",
        _override("override-within-its-millisecond", expires_in_days=0.0001 / 86400),
        "is within the millisecond of occurred_at",
        family="subscriptions",
    ),
    Poison(
        "override-for-ten-years",
        _override("override-for-ten-years", expires_in_days=3650),
        "input.max_override_days",
        family="subscriptions",
    ),
    Poison(  # `true` was read as a score of 1.0 (lax mode)
        "override-score-boolean",
        _override("override-score-boolean", band=None, score=True),
        "field 'score'",
        family="subscriptions",
    ),
    Poison("zero-width-user", _usage("zero-width-user", user_id="ana\u200bsmith"), "invisible characters"),
    # two accounts that read "poison-look-alike": ids hold nothing that shows nothing
    Poison(
        "soft-hyphen-id",
        _usage("soft-hyphen-id", account_id="poison-look-alike\u00ad"),
        "invisible characters",
    ),
    Poison("joiner-id", _usage("joiner-id", account_id="poison-look-alike\u200d"), "invisible characters"),
    # ... nor a space but U+0020, nor one first or last (an adversarial run of offline)
    Poison(
        "trailing-space-id",
        _usage("trailing-space-id", account_id="poison-look-alike "),
        "no space first or last",
    ),
    Poison(
        "no-break-space-id",
        _usage("no-break-space-id", account_id="poison\u00a0look-alike"),
        "spaces other than",
    ),
    Poison(
        "letter-mark-id", _usage("letter-mark-id", account_id="poison-look-alike\u061c"), "direction marks"
    ),
    Poison(
        "decomposed-id", _usage("decomposed-id", account_id="poison-cafe\u0301"), "must be in Unicode NFC"
    ),
    Poison("blank-name", _profile("blank-name", name="\u200e"), "only whitespace or invisible characters"),
    Poison("line-separator-user", _usage("line-separator-user", user_id="ana\u2028smith"), "line separators"),
    Poison("blank-user", _usage("blank-user", user_id=" \u3000 "), "must not be only whitespace"),
    Poison("nul-bytes", _raw(b'{"event_id": "n\x00ul"}\x00'), "not valid JSON"),
    Poison(
        "terminal-escape-feature",
        _usage("terminal-escape-feature", feature="\x1b[2J\x1b[31mreports"),
        "field 'feature' of usage.recorded: must not contain control characters",
    ),
    Poison(
        "bidi-override-plan",
        _started("bidi-override-plan", plan="pro\u202eevil"),
        "field 'plan' of subscription.started: must not contain control characters",
        family="subscriptions",
    ),
    Poison(
        "wrong-topic",
        _usage("wrong-topic"),
        "does not belong on the subscriptions topic",
        family="subscriptions",
        in_file=False,
    ),
    Poison(
        "key-disagrees",
        _usage("key-disagrees"),
        "disagrees with account_id",
        key=b"someone-else",
        in_file=False,
    ),
    Poison(  # the key reads as the account id but is decomposed: shown as code points
        "decomposed-key-caf\u00e9",
        _usage("decomposed-key-caf\u00e9"),
        "message key 'poison-decomposed-key-cafe\\u0301' disagrees with account_id "
        "'poison-decomposed-key-caf\\xe9'",
        key="poison-decomposed-key-cafe\u0301".encode(),
        in_file=False,
    ),
]


@dataclass(frozen=True)
class Passing:
    """A message that is not dead-lettered: re-routed (keyless, wrong partition) or a duplicate."""

    name: str
    value: bytes
    key: bytes | None
    partition: int | None  # None: the producer's choice (keyless)


def rerouted(when: str, home: Callable[[str], int], partitions: int) -> list[tuple[Passing, bytes]]:
    """A keyless message and one keyed by its account on another partition (another
    partitioner), each a valid event of its own account; with the line offline must see."""
    made = []
    for name in ("keyless", "wrong-partition"):
        account = f"poison-{name}"
        line = orjson.dumps(started(account, when, f"{name}-1"))
        if name == "keyless":
            made.append((Passing(name, line, None, None), line))
        else:
            wrong = (home(account) + 1) % partitions
            made.append((Passing(name, line, account.encode(), wrong), line))
    return made


def reused_id(original: dict[str, Any], when: str) -> bytes:
    """The id of a valid event reused for another payload a minute later: a duplicate."""
    return orjson.dumps(
        usage(original["account_id"], when, original["event_id"], user_id="impostor", feature="stolen")
    )


def file_poisons() -> list[Poison]:
    return [poison for poison in POISONS if poison.in_file]


def occurred_at(line: bytes) -> str:
    return str(orjson.loads(line)["occurred_at"])


def interleave(
    valid: list[bytes], poisons: list[Poison], every: int
) -> tuple[list[bytes], list[tuple[Poison, bytes]]]:
    """File lines: after every `every`-th valid line, the next poison (cycling through
    `poisons`) dated like that line; return the lines and the poisons placed, with their value."""
    lines: list[bytes] = []
    placed: list[tuple[Poison, bytes]] = []
    for number, line in enumerate(valid, start=1):
        lines.append(line)
        if number % every == 0:
            poison = poisons[len(placed) % len(poisons)]
            value = poison.value(occurred_at(line))
            assert value is not None and b"\n" not in value
            lines.append(value)
            placed.append((poison, value))
    return lines, placed


def huge_mrr_lines(accounts: int) -> list[bytes]:
    """`accounts` accounts of 64 subscriptions each at a billion GBP a week: each within the
    contract, [input] and the MRR one subscription may hold, but 60 of them take a partition's
    sums past 64 bits of micro-units (18.4 trillion a month)."""
    return [
        orjson.dumps(
            {
                "event_id": f"a{account}-s{sub}",
                "event_type": "subscription.started",
                "account_id": f"acct-{account}",
                "occurred_at": "2024-01-02T00:00:00Z",
                "subscription_id": f"sub-{sub}",
                "plan": "p",
                "amount": "1000000000",
                "currency": "GBP",
                "interval": "week",
            }
        )
        for account in range(accounts)
        for sub in range(64)
    ]
