"""Turn raw message bytes into a validated event, or a `Rejected` with a reason a producer can act on."""

from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from streamer.contract.events import (
    EVENT_ADAPTER,
    EVENT_FAMILY,
    FAMILY_EVENT_TYPES,
    ID_RULE,
    ID_TEXT,
    NAME_RULE,
    NAME_TEXT,
    NUMBER_AMOUNT,
    Event,
)
from streamer.contract.messages import plain_message


class Rejected(Exception):
    """An input message that breaks the contract; `reason` says what and how to fix it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


KEY_SHOWN = 200  # characters of a message key quoted in a reason
_HOUR_24 = re.compile(r"[Tt ]24:")  # 24:00, which ISO 8601 allowed once and RFC 3339 does not


# The largest message a Kafka broker takes by default (message.max.bytes): no valid event is near
# it (its texts are bounded far below), and a file line past it is cut there when read.
MAX_EVENT_BYTES = 1_048_576

# What JSON counts as whitespace (RFC 8259): a file line of only these is blank, and skipped.
# Python's `bytes.strip()` also strips form feeds and vertical tabs, which are not JSON.
JSON_WHITESPACE = b" \t\r\n"


def decode_event(raw: bytes | str, *, key: bytes | None = None, family: str | None = None) -> Event:
    """Validate one message value; check its topic family and key when given."""
    if len(raw) > MAX_EVENT_BYTES:  # a file line's one ending is not the event's; a run of them is
        if isinstance(raw, bytes):
            size = len(raw) - (2 if raw.endswith(b"\r\n") else raw.endswith(b"\n"))
        else:
            size = len(raw) - (2 if raw.endswith("\r\n") else raw.endswith("\n"))
        if size > MAX_EVENT_BYTES:
            raise Rejected(f"{size:,} bytes or more, past the {MAX_EVENT_BYTES:,} an event may have")
    context: dict[str, bool] = {}
    try:
        event = EVENT_ADAPTER.validate_json(raw, context=context)
    except ValidationError as exc:
        if raw[:3] == b"\xef\xbb\xbf" or raw[:1] == "\ufeff":  # saved "with BOM" by a Windows tool
            raise Rejected("starts with a UTF-8 byte order mark (EF BB BF): write JSON without it") from None
        raise Rejected(describe_validation_error(exc)) from None
    if context.get(NUMBER_AMOUNT):
        _check_number_amount(raw, event)
    if family is not None and EVENT_FAMILY[event.event_type] != family:
        allowed = ", ".join(sorted(FAMILY_EVENT_TYPES[family]))
        raise Rejected(
            f"event_type {event.event_type!r} does not belong on the {family} topic "
            f"(expected one of: {allowed})"
        )
    # An empty key is no key: producers that have none often send b"" (the worker re-routes
    # it by account_id, as a keyless message), and its events were dead-lettered.
    if key and key != event.account_id.encode():
        shown, account = key.decode(errors="replace"), event.account_id
        if len(shown) > KEY_SHOWN:  # the whole reason must fit in a dead letter
            shown = f"{shown[:KEY_SHOWN]}... ({len(key):,} bytes)"
        # Two that look the same ('café' composed, and 'cafe' with U+0301) are shown as code points.
        same_looking = unicodedata.normalize("NFC", shown) == unicodedata.normalize("NFC", account)
        quoted = ascii if same_looking else repr
        raise Rejected(
            f"message key {quoted(shown)} disagrees with account_id {quoted(account)}: "
            "key messages by account_id"
        )
    return event


def _check_number_amount(raw: bytes | str, event: Event) -> None:
    """An amount sent as a JSON number with a fraction was read as a binary float, and a float
    keeps about 16 digits: 999999999.99999999 was taken as 1000000000 (inside the 12 digits and 6
    places allowed, so nothing refused it). Read the literal again, exactly; refuse the event
    when it is not the amount taken."""
    taken = getattr(event, "amount", None)
    try:
        literal = json.loads(raw, parse_float=str, parse_int=str).get("amount")
    except (ValueError, RecursionError, AttributeError):  # only where pydantic read it otherwise
        return
    if not isinstance(literal, str) or taken is None:
        return
    try:
        exact: Decimal | None = Decimal(literal)
    except ArithmeticError:  # an exponent past what decimal holds (0e1000000000000000000)
        exact = None
    if exact is None or exact != taken:
        shown = literal if len(literal) <= 40 else f"{literal[:40]}... ({len(literal):,} characters)"
        raise Rejected(
            f"field 'amount' of {event.event_type}: the JSON number {shown} cannot be read exactly "
            f'(as a binary float it is {taken}): send the amount as a decimal string, e.g. "1900.00"'
        )


_TEXT_RULES: dict[object, str] = {NAME_TEXT: NAME_RULE, ID_TEXT: ID_RULE}  # a mismatch, in words
DESCRIBED_PROBLEMS = 10  # problems spelled out in one reason; the rest are counted


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem (the first `DESCRIBED_PROBLEMS`): where, what was wrong, and the
    offending value. A 1 MB object of 70,000 wrongly typed attributes made a 6 MB reason, which
    the dead letter then cut to 2,000 characters, at 0.2 CPU s a line."""
    errors = exc.errors(include_url=False)
    described = "; ".join(_describe(error) for error in errors[:DESCRIBED_PROBLEMS])
    more = len(errors) - DESCRIBED_PROBLEMS
    return f"{described}; and {more:,} more problems" if more > 0 else described


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "json_invalid":
        detail = error["msg"].removeprefix("Invalid JSON: ")
        if detail.startswith("number out of range"):  # a 5,000-digit count, say: say what it means
            detail += " (a number too large for any field of the contract)"
        return f"not valid JSON: {detail}"
    if kind in ("dict_type", "model_attributes_type", "model_type") and not error["loc"]:
        return f"the message must be a JSON object (got {type(error['input']).__name__})"
    if kind == "union_tag_not_found":
        return "missing field 'event_type'"
    if kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        known = ", ".join(sorted(EVENT_FAMILY))
        return f"unknown event_type {tag!r} (known types: {known})"
    # The first location element is the union tag (the event type); the rest is the field path.
    loc = [str(part) for part in error["loc"]]
    event_type, path = (loc[0], loc[1:]) if loc and loc[0] in EVENT_FAMILY else (None, loc)
    where = f"field {'.'.join(path)!r}" if path else "event"
    if event_type:
        where += f" of {event_type}"
    message = plain_message(error)
    if kind == "string_pattern_mismatch":
        pattern, given = error.get("ctx", {}).get("pattern"), error.get("input")
        if pattern == ID_TEXT and isinstance(given, str) and not given.strip():  # the id's spaces
            message = "must not be only whitespace"
        else:
            message = _TEXT_RULES.get(pattern, message)
    if kind.startswith(("datetime", "timezone")):
        if _HOUR_24.search(str(error.get("input"))):  # read as "extra characters at the end"
            message = "hour 24 is not a time of day: write 00:00 of the next day"
        message += "; expected RFC 3339 with an offset, e.g. 2024-03-05T14:03:00Z"
    if kind == "missing":
        return f"{where} is required"
    shown = repr(error.get("input"))
    if len(shown) > 80:
        shown = f"{shown[:60]}... ({len(shown)} characters)"
    return f"{where}: {message} (got {shown})" if path else f"{where}: {message}"
