"""A response's `Retry-After` as seconds to wait, whatever text the receiver sent (pure).

RFC 9110 allows delay-seconds: ASCII digits only. Anything else counts as absent (the plain
backoff applies) rather than raising; the wait is bounded, and the caller clamps it further to
the destination's `max_seconds`.
"""

from __future__ import annotations

MAX_SECONDS = 86_400.0  # a day: the largest `max_seconds` a destination may set
MAX_LENGTH = 64  # longer text is not parsed at all


def retry_after_seconds(text: str | None) -> float | None:
    """Seconds to wait before retrying, or None when `text` is absent or not delay-seconds."""
    value = _trimmed(text)
    if value is None or not value.isdigit():  # ASCII only by then: isdigit() means 0-9
        return None
    return min(float(int(value)), MAX_SECONDS)


def _trimmed(text: str | None) -> str | None:
    """The header's value without surrounding blanks, or None when it is absent, empty, too long
    or not ASCII (a Unicode digit such as '²' passes `str.isdigit()` but not `float()`)."""
    if text is None:
        return None
    value = text.strip(" \t")
    if not value or len(value) > MAX_LENGTH or not value.isascii():
        return None
    return value
