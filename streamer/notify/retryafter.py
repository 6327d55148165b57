"""A response's `Retry-After` as seconds to wait, whatever text the receiver sent (pure: the
time the response came is passed in).

RFC 9110 allows two forms: delay-seconds (ASCII digits only) and an HTTP-date, e.g. `Wed, 21
Oct 2026 07:28:00 GMT`, whose wait is the time left until it (none once it has passed).
Anything else counts as absent (the plain backoff applies) rather than raising; the wait is
bounded, and the caller clamps it further to the destination's `max_seconds`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_SECONDS = 86_400.0  # a day: the largest `max_seconds` a destination may set
MAX_LENGTH = 64  # an HTTP-date has 29 characters; longer text is not parsed at all


def retry_after_seconds(text: str | None, now: datetime) -> float | None:
    """Seconds to wait from `now` (timezone-aware), or None when `text` is absent or neither
    delay-seconds nor a date."""
    value = _trimmed(text)
    if value is None:
        return None
    if value.isdigit():  # ASCII only by then: isdigit() means 0-9
        return min(float(int(value)), MAX_SECONDS)
    when = _http_date(value)
    if when is None:
        return None
    return min(max(0.0, (when - now).total_seconds()), MAX_SECONDS)


def _trimmed(text: str | None) -> str | None:
    """The header's value without surrounding blanks, or None when it is absent, empty, too long
    or not ASCII (a Unicode digit such as '²' passes `str.isdigit()` but not `float()`)."""
    if text is None:
        return None
    value = text.strip(" \t")
    if not value or len(value) > MAX_LENGTH or not value.isascii():
        return None
    return value


def _http_date(value: str) -> datetime | None:
    """The date `value` names (UTC when it gives no zone), or None when it is not one."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
