"""Compressed record batches that would expand past a bound are not decompressed: their records
come out unread, for the scorer to dead-letter.

The broker checks a batch's *compressed* size against `max.message.bytes`; nothing bounds what
it expands to. A few kilobytes of zstd or gzip expand to gigabytes of one record's value, and
aiokafka decompressed the whole batch in its fetcher: a MemoryError in the codec ("Fetcher
crashed") or the kernel's OOM killer stopped the worker before any contract check could see the
message, and at every restart it read the same uncommitted batch again. A batch whose payload is
not the codec's format (its CRC is the producer's, and correct) stopped it the same way.

`install(limit)` replaces the codecs aiokafka's record readers decompress batches with (gzip,
snappy, lz4, zstd) by ones that stop at `limit` bytes, and has every record of a batch that
would expand past it, or that does not decompress, come out with an `Unread` value (empty, with
the reason) and no key. The scorer dead-letters each with that reason (`Scorer._admit`): its
offsets are committed as any bad message's are, and the partition goes on.

A batch aiokafka's reader fails on for another reason stopped the fetcher the same way: a
header name that is not UTF-8, which the broker lets through and aiokafka decodes strictly.
Such a batch is read again from its bytes by `record_batch.records` (the header name decoded
with replacement); a record that still does not read comes out `Unread`, with every offset
after it in the batch.

aiokafka's readers and fetcher are private API (pinned below 0.15 in pyproject.toml), replaced
here and nowhere else.
"""

from __future__ import annotations

import gzip
import io
import mmap
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import cramjam
from aiokafka import codec as aiokafka_codec
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record import default_records as py_default
from aiokafka.record import legacy_records as py_legacy
from aiokafka.record.memory_records import MemoryRecords

from streamer.stream import record_batch

try:  # the Cython readers aiokafka uses when they are built
    from aiokafka.record._crecords import default_records as c_default
    from aiokafka.record._crecords import legacy_records as c_legacy
except ImportError:  # pragma: no cover
    c_default = c_legacy = None

MiB = 1 << 20
# A contract event is at most 1 MiB, and a producer's batch is compressed to at most the topic's
# `max.message.bytes` (1 MiB by default) from a few MiB of events: 64 MiB leaves ample room.
DEFAULT_LIMIT = 64 * MiB
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
RESIDENT_MAX = 8 * MiB  # what a thread's buffer keeps resident between batches


class Unread(bytes):
    """The value of a record whose batch was not decompressed (empty); `reason` says why."""

    reason: str

    def __new__(cls, reason: str) -> Unread:
        value = super().__new__(cls, b"")
        value.reason = reason
        return value


class _NotDecompressed(Exception):
    """A batch past the limit, or not in its codec's format."""


class _Limit:
    """The bound, and a buffer of its size per thread to decompress into: reserved, not touched
    (an anonymous mapping), so only the pages a batch fills are ever resident."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._local = threading.local()

    def buffer(self) -> mmap.mmap:
        held: mmap.mmap | None = getattr(self._local, "buffer", None)
        if held is None or len(held) != self.size:
            private = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS  # given back by MADV_DONTNEED
            held = self._local.buffer = mmap.mmap(-1, self.size, flags=private)
        return held


_limit = _Limit(DEFAULT_LIMIT)


def _past(codec: str) -> _NotDecompressed:
    return _NotDecompressed(f"{codec} batch expands past {_limit.size:,} bytes")


def _into(decompress_into: Callable[[bytes, Any], int], payload: Any, codec: str) -> bytes:
    buffer = _limit.buffer()
    written = len(buffer)
    try:
        written = decompress_into(bytes(payload), buffer)
        return buffer[:written]  # a copy, taken before the pages are given back
    except Exception as exc:  # cramjam's DecompressionError
        if "whole buffer" in str(exc):
            raise _past(codec) from None
        raise _NotDecompressed(f"{codec} batch does not decompress ({exc})") from None
    finally:
        if written > RESIDENT_MAX:  # give the pages a large batch filled back
            buffer.madvise(mmap.MADV_DONTNEED, 0, written - written % mmap.PAGESIZE)


def gzip_decode(payload: Any) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(payload), mode="rb") as gzipper:
            data = gzipper.read(_limit.size + 1)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise _NotDecompressed(f"gzip batch does not decompress ({exc})") from None
    if len(data) > _limit.size:
        raise _past("gzip")
    return data


def zstd_decode(payload: Any) -> bytes:
    return _into(cramjam.zstd.decompress_into, payload, "zstd")


def lz4_decode(payload: Any) -> bytes:
    return _into(cramjam.lz4.decompress_into, payload, "lz4")


def snappy_decode(payload: Any) -> bytes:
    """Raw snappy states its expanded length up front: checked (every block of a xerial stream)
    before aiokafka's decoder runs."""
    data = bytes(payload)
    try:
        blocks = _xerial_blocks(data) if data.startswith(_XERIAL_MAGIC) else [data]
        expanded = sum(int(cramjam.snappy.decompress_raw_len(block)) for block in blocks)
        if expanded > _limit.size:
            raise _past("snappy")
        return bytes(aiokafka_codec.snappy_decode(data))
    except _NotDecompressed:
        raise
    except Exception as exc:
        raise _NotDecompressed(f"snappy batch does not decompress ({exc})") from None


def _xerial_blocks(data: bytes) -> list[bytes]:
    """The chunks of snappy's xerial framing; its lengths are the producer's bytes: a negative
    one kept the cursor in place (the consumer thread looped for ever, its memory growing)."""
    blocks, cursor = [], 16  # the magic, a version and a compatible version
    while cursor < len(data):
        (size,) = struct.unpack_from("!i", data, cursor)
        if size < 0 or cursor + 4 + size > len(data):
            raise _NotDecompressed(f"snappy batch's framing is damaged (a chunk of {size} bytes)")
        blocks.append(data[cursor + 4 : cursor + 4 + size])
        cursor += 4 + size
    return blocks


def _first_offset(batch: Any) -> int:
    """A batch's first offset; a legacy (v0/v1) one has none: its wrapper's own offset, which is
    its last record's (the ones before it, not known without decompressing, read as passed
    over without a record)."""
    first = getattr(batch, "base_offset", None)
    return int(batch.next_offset - 1 if first is None else first)


class _Placeholder:
    """What aiokafka's fetcher reads of a record (`PartitionRecords._consumer_record`)."""

    __slots__ = ("checksum", "headers", "key", "offset", "timestamp", "timestamp_type", "value")

    def __init__(self, offset: int, timestamp: int, timestamp_type: int, reason: str) -> None:
        self.offset, self.timestamp, self.timestamp_type = offset, timestamp, timestamp_type
        self.key, self.value, self.headers, self.checksum = None, Unread(reason), (), None


class _Proxy:
    """Passes what it does not define on to the aiokafka object it wraps."""

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


class _Batch(_Proxy):
    """A batch whose records are placeholders when it does not decompress within the bound, and
    read again from its bytes (`raw`, when known) when aiokafka's reader fails on a record."""

    def __init__(self, wrapped: Any, raw: memoryview | None) -> None:
        super().__init__(wrapped)
        self._raw = raw

    def __next__(self) -> Any:
        """The batch's next record: the fetcher reads a control batch's marker with `next()`
        (special methods are not found through `__getattr__`)."""
        return next(self._wrapped)

    def __iter__(self) -> Iterator[Any]:
        batch = self._wrapped
        try:
            records = iter(batch)  # the Cython batch decompresses here, the Python one at next()
            first = next(records, None)
        except _NotDecompressed as exc:
            first_offset, next_offset = _first_offset(batch), batch.next_offset
            reason = (
                f"its compressed record batch (offsets {first_offset}-{next_offset - 1}) was not "
                f"read: {exc}; publish events of at most 1 MiB, in batches of ordinary size"
            )
            return iter(self._unread(first_offset, reason))
        except Exception as exc:
            return self._read_again(exc)
        return iter(()) if first is None else self._then(first, records)

    def _then(self, first: Any, rest: Iterator[Any]) -> Iterator[Any]:
        """`first`, then the rest of `rest` (the Cython batch refuses a second `iter()`, which
        `itertools.chain` would call); the whole batch again if a record fails to read (the
        fetcher skips the offsets it has)."""
        yield first
        while True:
            try:
                record = next(rest)
            except StopIteration:
                return
            except Exception as exc:
                yield from self._read_again(exc)
                return
            yield record

    def _read_again(self, failure: Exception) -> Iterator[Any]:
        """The batch's records read from its bytes by `record_batch`; unread from the first that
        does not read (all of them when its bytes are not known)."""
        batch = self._wrapped
        if self._raw is None or getattr(batch, "magic", 0) < 2:
            reason = f"its record batch does not read ({type(failure).__name__}: {failure})"
            yield from self._unread(_first_offset(batch), reason)
            return
        for record in record_batch.records(bytes(self._raw), _decompress):
            if isinstance(record, record_batch.Unreadable):
                yield from self._unread(record.offset, f"{record.reason}: it was not read")
                return
            yield record

    def _unread(self, first_offset: int, reason: str) -> list[_Placeholder]:
        """A placeholder for each offset of the batch from `first_offset` on."""
        batch = self._wrapped
        stamp, kind = getattr(batch, "max_timestamp", -1), getattr(batch, "timestamp_type", 0)
        return [_Placeholder(o, stamp, kind, reason) for o in range(first_offset, batch.next_offset)]


# The bounded codecs by the id a batch's attributes give them; aiokafka's readers call each by
# its name (`install`).
_DECODERS: dict[int, Callable[[Any], bytes]] = {
    1: gzip_decode,
    2: snappy_decode,
    3: lz4_decode,
    4: zstd_decode,
}


def _decompress(codec: int, payload: bytes) -> bytes:
    decode = _DECODERS.get(codec)
    if decode is None:
        raise _NotDecompressed(f"unknown compression codec {codec}")
    return decode(payload)


class _Records(_Proxy):
    """A fetch's records, each batch of them a `_Batch` that knows its bytes (`raw`, the fetch's
    bytes, when known: the fetcher's records are made by `_fetched`)."""

    def __init__(self, wrapped: Any, raw: bytes | None) -> None:
        super().__init__(wrapped)
        self._raw = None if raw is None else memoryview(raw)
        self._pos = 0

    def next_batch(self) -> Any:
        batch = self._wrapped.next_batch()
        if batch is None:
            return None
        raw = self._raw
        if raw is not None:  # the batch aiokafka framed: its offset (8 bytes), length (4), body
            start = self._pos
            (length,) = struct.unpack_from(">i", raw, start + 8)
            self._pos = start + 12 + length
            return _Batch(batch, raw[start : self._pos])
        return _Batch(batch, None)


def _fetched(raw: bytes) -> _Records:
    """What the fetcher makes of a fetch's bytes (it calls `MemoryRecords(raw)`)."""
    return _Records(MemoryRecords(raw), raw)


_installed = threading.Lock()
_done = False


def install(limit: int | None = None) -> None:
    """Bound what a batch may expand to in this process (`limit` bytes; None: keep the bound
    set before, else `DEFAULT_LIMIT`). Idempotent."""
    global _limit, _done
    with _installed:
        if limit is not None and limit != _limit.size:
            _limit = _Limit(limit)
        if _done:
            return
        codecs = {decode.__name__: decode for decode in _DECODERS.values()}
        for module in (py_default, py_legacy, c_default, c_legacy):
            for name, decode in codecs.items():
                if module is not None and hasattr(module, name):
                    setattr(module, name, decode)
        unbounded = aiokafka_fetcher.PartitionRecords.__init__

        def bounded(self: Any, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
            wrapped = records if isinstance(records, _Records) else _Records(records, None)
            unbounded(self, tp, wrapped, *args, **kwargs)

        aiokafka_fetcher.PartitionRecords.__init__ = bounded
        aiokafka_fetcher.MemoryRecords = _fetched
        _done = True
