"""The header a re-routed copy carries: where its message was written, and the source's floor.

`healthstream-origin: <partition>:<offset>:<floor>` (ASCII decimal): the partition of the input
topic the message was written to, its offset there, and the offset below which that partition's
durable record lists every message as handled (`streamer/state/copies.py` says what the
receiving partition does with it). Anyone can write a header: one no worker writes is not an
origin (`decode_origin`), and its message is handled as any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ORIGIN_HEADER = "healthstream-origin"
_MAX_DIGITS = 19  # an offset is below 2**63
# A header naming a partition at or past this is not ours (a topic has far fewer): it bounds the
# sources a partition record lists (`streamer/state/copies.py`).
MAX_SOURCE_PARTITIONS = 1024


@dataclass(frozen=True, slots=True)
class Origin:
    partition: int  # of the input topic, where the message was written
    offset: int  # the message's offset there
    floor: int  # every message of that partition below it is in its durable record


def encode_origin(origin: Origin) -> bytes:
    return f"{origin.partition}:{origin.offset}:{origin.floor}".encode()


def decode_origin(raw: bytes | None) -> Origin | None:
    """The origin a header names, or None when it is none a worker could have written: it does
    not parse, names a partition past `MAX_SOURCE_PARTITIONS`, or a floor past its offset (a
    source's durable record never covers the message it is re-routing)."""
    if raw is None or len(raw) > 3 * _MAX_DIGITS + 2:
        return None
    parts = raw.split(b":")
    if len(parts) != 3 or not all(part.isdigit() and len(part) <= _MAX_DIGITS for part in parts):
        return None
    partition, offset, floor = (int(part) for part in parts)
    if offset >= 1 << 63 or partition >= MAX_SOURCE_PARTITIONS or floor > offset:
        return None
    return Origin(partition, offset, floor)


def origin_header(headers: Iterable[tuple[str, bytes | None]] | None) -> bytes | None:
    """The value of the last origin header among a record's headers (None without one)."""
    found = None
    for name, value in headers or ():
        if name == ORIGIN_HEADER:
            found = value
    return found
