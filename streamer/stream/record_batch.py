"""The records of a v2 record batch, read without trusting what the broker does not check.

The broker checks a record's framing but not that a header's *name* is UTF-8 (Java decodes it
with replacement); aiokafka's readers decode it strictly, and the `UnicodeDecodeError` stopped
the fetcher, again at every restart, on a record any librdkafka or Go producer can write.
`records(raw, decompress)` reads such a batch as aiokafka would, but a header name that is not
UTF-8 is decoded with replacement characters (no header of ours is affected: ours are ASCII).
A record that still does not read is returned as `Unreadable`, with every offset after it in
the batch, so that the scorer dead-letters those and the partition goes on.

Used only for a batch aiokafka's reader failed on (`bounded_batches`): ordinary batches are read
by aiokafka's compiled reader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiokafka.record.default_records import DefaultRecordBase
from aiokafka.record.util import decode_varint

# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta,
# firstTimestamp, maxTimestamp, producerId, producerEpoch, baseSequence, records count
HEADER = DefaultRecordBase.HEADER_STRUCT


@dataclass(slots=True)
class Record:
    """What aiokafka's fetcher reads of a record (`PartitionRecords._consumer_record`)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """From `offset` to the end of its batch, the records did not read: `reason` says why."""

    offset: int
    reason: str


def records(raw: bytes, decompress: Callable[[int, bytes], bytes]) -> Iterator[Record | Unreadable]:
    """The records of the v2 batch `raw` (log overhead included); `decompress(codec, payload)`
    expands a compressed batch's records."""
    (base_offset, _, _, _, _, attributes, _, first_timestamp, max_timestamp, *_, count) = HEADER.unpack_from(
        raw
    )
    append_time = bool(attributes & DefaultRecordBase.TIMESTAMP_TYPE_MASK)
    codec = attributes & DefaultRecordBase.CODEC_MASK
    body = raw[HEADER.size :]
    try:
        buffer = decompress(codec, body) if codec else body
    except Exception as exc:
        yield Unreadable(base_offset, f"its records do not decompress ({exc})")
        return
    pos, offset = 0, base_offset
    for _ in range(count):
        try:
            record, pos = _record(buffer, pos, base_offset, first_timestamp, max_timestamp, append_time)
        except Exception as exc:
            yield Unreadable(offset, f"record {offset} does not read ({exc})")
            return
        offset = record.offset + 1
        yield record


def _record(
    buffer: bytes, pos: int, base_offset: int, first_timestamp: int, max_timestamp: int, append_time: bool
) -> tuple[Record, int]:
    length, pos = decode_varint(buffer, pos)
    end = pos + length
    if length < 0 or end > len(buffer):
        raise ValueError(f"its length {length} runs past its batch")
    _, pos = decode_varint(buffer, pos)  # attributes: none defined for a record
    timestamp_delta, pos = decode_varint(buffer, pos)
    offset_delta, pos = decode_varint(buffer, pos)
    key, pos = _bytes(buffer, pos)
    value, pos = _bytes(buffer, pos)
    header_count, pos = decode_varint(buffer, pos)
    if header_count < 0:
        raise ValueError(f"{header_count} headers")
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(header_count):
        name, pos = _bytes(buffer, pos)
        if name is None:
            raise ValueError("a header without a name")
        header_value, pos = _bytes(buffer, pos)
        headers.append((name.decode("utf-8", "replace"), header_value))
    if pos != end:
        raise ValueError(f"its fields take {pos - end + length} of its {length} bytes")
    timestamp = max_timestamp if append_time else first_timestamp + timestamp_delta
    kind = 1 if append_time else 0
    return Record(base_offset + offset_delta, timestamp, kind, key, value, headers), end


def _bytes(buffer: bytes, pos: int) -> tuple[bytes | None, int]:
    size, pos = decode_varint(buffer, pos)
    if size < 0:
        return None, pos
    if pos + size > len(buffer):
        raise ValueError(f"a field of {size} bytes runs past its record")
    return bytes(buffer[pos : pos + size]), pos + size
