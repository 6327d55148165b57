"""Build the dead-letter record of a rejected input message (see `outputs.DeadLetter`).

A dead letter always fits in one Kafka message, whatever it reports: the copied value is a
prefix of at most `ORIGINAL_MAX` bytes (with the whole value's length and SHA-256), and the key
and the reason are capped too, so the record stays far below the producer's 1 MB request size.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

ORIGINAL_MAX = 64 * 1024  # bytes of the value copied into the record
KEY_MAX = 1024  # bytes of the key copied
REASON_MAX = 2000  # characters of the reason


def safe_text(text: str, limit: int = REASON_MAX) -> str:
    """`text` cut to `limit` characters (saying so) and made encodable as UTF-8."""
    if len(text) > limit:
        text = f"{text[: limit - 40]}... ({len(text):,} characters in all)"
    return text.encode("utf-8", "backslashreplace").decode()


def _text_or_base64(data: bytes, limit: int) -> tuple[str, str]:
    """(the first `limit` bytes of `data`, its encoding): as text when the whole of `data` is
    UTF-8 (the cut can only split the last character: its bytes are dropped), else base64, so
    the bytes a producer sent can be told apart and sent again exactly."""
    prefix = data[:limit]
    try:
        data.decode()
        return prefix.decode(errors="ignore"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(prefix).decode(), "base64"


def original_key(record: dict[str, Any]) -> bytes | None:
    """The message key a dead-letter record holds, as bytes (None: the message had none)."""
    key = record.get("key")
    if key is None:
        return None
    return base64.b64decode(key) if record.get("key_encoding") == "base64" else str(key).encode()


def dead_letter_record(
    value: bytes | None,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    error: str,
    rerouted_from: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The original value (as text when it decodes as UTF-8, else base64) with where and why;
    for a re-routed copy also the (partition, offset) it says it was copied from.

    A null value (a tombstone) is recorded with encoding "null" and an empty original. The value
    is kept as it came, trailing CR/LF included (a file's line comes without its line end).
    """
    if value is None:
        original, encoding, length, digest, truncated = "", "null", 0, hashlib.sha256(b"").hexdigest(), False
    else:
        length, digest = len(value), hashlib.sha256(value).hexdigest()
        truncated = length > ORIGINAL_MAX
        original, encoding = _text_or_base64(value, ORIGINAL_MAX)
    key_text, key_encoding = _text_or_base64(key, KEY_MAX) if key is not None else (None, "text")
    record = {
        "original": original,
        "encoding": encoding,
        "original_bytes": length,
        "original_sha256": digest,
        "truncated": truncated,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key_text,
        "key_encoding": key_encoding,
        "error": safe_text(error),
        "received_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if rerouted_from is not None:
        record["rerouted_from"] = {"partition": rerouted_from[0], "offset": rerouted_from[1]}
    return record
