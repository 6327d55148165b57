"""Build the dead-letter record of a rejected input message (see `outputs.DeadLetter`)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any


def dead_letter_record(
    value: bytes,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    error: str,
) -> dict[str, Any]:
    """The original value (as text when it decodes as UTF-8, else base64) with where and why."""
    value = value.rstrip(b"\r\n")
    try:
        original, encoding = value.decode(), "text"
    except UnicodeDecodeError:
        original, encoding = base64.b64encode(value).decode(), "base64"
    return {
        "original": original,
        "encoding": encoding,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key.decode(errors="replace") if key is not None else None,
        "error": error,
        "received_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
