"""What a person may do from the view: say who an account is, override its health, remove the
override. Each request body becomes one contract event (validated like any producer's, within
the deployment's input bounds) that the view publishes to the input topic and forgets.

Pure: the event id and the publication instant are arguments. The event time is the publication
instant unless the body gives `occurred_at` (for a history replayed from the past, see
`publisher.Writer`).
"""

from __future__ import annotations

from typing import Any

import orjson

from streamer.contract.decode import Rejected, decode_event
from streamer.contract.events import EVENT_FAMILY, Event
from streamer.core.clock import iso, to_ms
from streamer.core.config import Input
from streamer.core.intake import out_of_bounds
from streamer.view.errors import BadRequest

PROFILE, OVERRIDE, CLEARED = "account.updated", "health.override", "health.override_cleared"
SET_BY_THE_VIEW = ("event_id", "event_type", "account_id")
MAX_BODY = 64 * 1024
# How far a write's own `occurred_at` may lie past the view's clock: a client's clock a little
# ahead. The producers' `input.max_skew_hours` (24 h) let a person date a write tomorrow, which
# moved the partition's stream time there: the write was taken, and every later write of that
# account dated now was older than it (a newer clearing beat a new override) without a word.
MAX_AHEAD_MS = 5 * 60 * 1000


def body_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object; a 400 that says why otherwise."""
    if len(raw) > MAX_BODY:
        raise BadRequest(f"the body has {len(raw)} bytes; at most {MAX_BODY} are accepted")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object (got {type(body).__name__})")
    given = sorted(name for name in SET_BY_THE_VIEW if name in body)
    if given:
        raise BadRequest(f"{', '.join(given)} are set by the view; leave them out of the body")
    return body


def profile_body(raw: bytes) -> dict[str, Any]:
    """`body_object` for a profile, which is replaced whole: an empty body is refused. Taken as
    `{}`, it cleared the account's name, owner, segment and tier, an easy request to send by
    mistake (a client that lost its body); `{}` itself still clears them."""
    if not raw.strip():
        raise BadRequest("the body is empty: send the whole profile as a JSON object ({} clears it)")
    return body_object(raw)


def override_kind(body: dict[str, Any]) -> str:
    """`{"clear": true, ...}` removes the override; anything else sets one."""
    clear = body.pop("clear", False)
    if not isinstance(clear, bool):
        raise BadRequest(f"'clear' must be true or false (got {clear!r:.40})")
    return CLEARED if clear else OVERRIDE


def build_event(
    event_type: str, account_id: str, body: dict[str, Any], event_id: str, now_ms: int, bounds: Input
) -> tuple[Event, bytes]:
    """The validated event and the bytes to publish; a 400 with the contract's reason otherwise.
    Its event time is `now_ms` unless the body sets `occurred_at` (a replayed history's time)."""
    record = {
        "occurred_at": iso(now_ms),
        **body,
        "event_id": event_id,
        "event_type": event_type,
        "account_id": account_id,
    }
    value = orjson.dumps(record)
    try:
        event = decode_event(value, key=account_id.encode(), family=EVENT_FAMILY[event_type])
    except Rejected as rejected:
        raise BadRequest(rejected.reason) from None
    # The contract ignores unknown fields (a newer producer's); a person's request is told:
    # {"clear": true, "band": "red"} cleared the override and dropped the band without a word.
    fields = type(event).model_fields
    unknown = sorted(name for name in body if name not in fields)
    if unknown:
        given = sorted(name for name in fields if name not in SET_BY_THE_VIEW and name != "event_type")
        raise BadRequest(
            f"{', '.join(map(repr, unknown))}: not a field of {event_type} (its fields: {', '.join(given)})"
        )
    problem = out_of_bounds(event, bounds, now_ms)
    if problem is not None:
        raise BadRequest(problem)
    at = to_ms(event.occurred_at)
    if at > now_ms + MAX_AHEAD_MS:
        raise BadRequest(
            f"occurred_at {iso(at)} is after now ({iso(now_ms)} by the view's clock): a person's "
            "write is dated at most now; leave occurred_at out to date it now"
        )
    return event, value
