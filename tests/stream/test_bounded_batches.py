"""Compressed batches through aiokafka's own record readers and fetcher, bounded: ordinary ones come
out as they went in, one that would expand past the bound (or does not decompress) comes out as
records with an `Unread` value and the reason, one per offset, and the records after it still
come out. A batch aiokafka's reader fails on (a header name that is not UTF-8) is read again from
its bytes."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any

import cramjam
import pytest
from aiokafka.consumer import fetcher
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from streamer.stream import bounded_batches
from streamer.stream.bounded_batches import MiB, Unread

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
EVENT = (
    b'{"event_id":"e1","event_type":"usage.recorded","account_id":"a","occurred_at":"2024-01-01T00:00:00Z"}'
)


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    bounded_batches.install(2 * MiB)
    yield
    bounded_batches.install(bounded_batches.DEFAULT_LIMIT)


def batch(
    codec: str,
    values: list[bytes],
    first_offset: int = 0,
    headers: dict[int, list[tuple[str, bytes | None]]] | None = None,
    key: bytes = b"a",
) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=CODECS.get(codec, 0),
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=64 * MiB,
    )
    for number, value in enumerate(values):
        extra = (headers or {}).get(number, [])
        builder.append(number, timestamp=1_700_000_000_000, key=key, value=value, headers=extra)
    built = bytearray(builder.build())
    struct.pack_into(">q", built, 0, first_offset)  # as the broker sets it (outside the CRC)
    return bytes(built)


def consumed(*batches: bytes) -> list[Any]:
    """What the fetcher hands the consumer for these batches of one partition (it makes its
    records with the name `MemoryRecords` of its module)."""
    records = fetcher.MemoryRecords(b"".join(batches))
    return list(PartitionRecords(TopicPartition("t", 0), records, [], 0, None, None, True, 0))


def forged(raw: bytes, old: bytes, new: bytes, codec: str = "none") -> bytes:
    """`raw` (an uncompressed batch) with `old` replaced by `new` in its records, compressed
    with `codec`, under a correct CRC: what a client other than aiokafka can write."""
    header_size = 61  # up to the record count
    body = raw[header_size:].replace(old, new)
    attributes = struct.unpack_from(">h", raw, 21)[0]
    if codec != "none":
        body = bytes(cramjam.gzip.compress(body)) if codec == "gzip" else bytes(cramjam.zstd.compress(body))
        attributes |= CODECS[codec]
    head = bytearray(raw[:header_size])
    struct.pack_into(">i", head, 8, header_size - 12 + len(body))  # the batch's length
    struct.pack_into(">h", head, 21, attributes)
    struct.pack_into(">I", head, 17, calc_crc32c(bytes(head[21:]) + body))
    return bytes(head) + body


@pytest.mark.parametrize("codec", CODECS)
def test_an_ordinary_batch_comes_out_as_it_went_in(codec: str) -> None:
    values = [EVENT.replace(b"e1", f"e{n}".encode()) for n in range(500)]
    assert [record.value for record in consumed(batch(codec, values))] == values


@pytest.mark.parametrize("codec", CODECS)
def test_a_batch_that_would_expand_past_the_bound_comes_out_unread_and_the_next_one_is_read(
    codec: str,
) -> None:
    bomb = EVENT + b" " * (3 * MiB)  # a few KB compressed
    before, after = batch(codec, [EVENT]), batch(codec, [EVENT, EVENT], first_offset=3)
    records = consumed(before, batch(codec, [bomb, bomb], first_offset=1), after)
    assert [record.offset for record in records] == [0, 1, 2, 3, 4]
    assert [record.value for record in records[:1] + records[3:]] == [EVENT] * 3
    unread = [record.value for record in records[1:3]]
    assert all(isinstance(value, Unread) and value == b"" for value in unread)
    assert [record.key for record in records[1:3]] == [None, None]
    reason = unread[0].reason
    assert reason.startswith(f"its compressed record batch (offsets 1-2) was not read: {codec} batch")
    assert "expands past 2,097,152 bytes" in reason, reason


def test_a_zstd_payload_that_does_not_decompress_comes_out_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A producer writes its batch's CRC over whatever it compressed: a payload that is not zstd
    passes the CRC check and failed in the codec, stopping the fetcher."""

    def garbage(data: bytes, output: Any) -> int:
        raise cramjam.DecompressionError("Unknown frame descriptor")

    monkeypatch.setattr(cramjam.zstd, "decompress_into", garbage)
    [record] = consumed(batch("zstd", [EVENT]))
    assert isinstance(record.value, Unread)
    assert "zstd batch does not decompress (Unknown frame descriptor)" in record.value.reason


def test_a_batch_past_what_stays_resident_is_read_whole() -> None:
    """The buffer a thread decompresses into is reserved at the bound's size, and the pages a
    batch larger than `RESIDENT_MAX` filled are given back: after its records are copied out."""
    values = [EVENT + str(n).encode() * 3000 for n in range(1000)]  # about 9 MB expanded
    assert sum(map(len, values)) > bounded_batches.RESIDENT_MAX
    bounded_batches.install(16 * MiB)
    assert [record.value for record in consumed(batch("zstd", values))] == values


def test_a_batch_reads_as_the_fetcher_reads_a_control_batch() -> None:
    """The fetcher reads a transaction marker with `next(batch)`, which the bounded batch did not
    pass on (special methods are not found through `__getattr__`): every worker reading a
    transactional producer's topic crashed ("'_Batch' object is not an iterator")."""
    records = MemoryRecords(batch("none", [EVENT, EVENT.replace(b"e1", b"e2")]))  # as markers are
    bounded = bounded_batches._Records(records, None).next_batch()
    assert next(bounded).value == EVENT


EVENTS = [EVENT.replace(b"e1", f"e{n}".encode()) for n in range(3)]


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd"])
def test_a_header_name_that_is_not_utf8_is_read_with_replacement_and_the_batch_goes_on(codec: str) -> None:
    """The broker lets a header name that is not UTF-8 through (librdkafka and Go clients can
    write one); aiokafka's readers decoded it strictly, and the UnicodeDecodeError stopped the
    fetcher at that record, again at every restart."""
    named = batch("none", EVENTS, headers={1: [("HDRX", b"v"), ("healthstream-origin", b"0:5:0")]})
    bad = forged(named, b"HDRX", b"\xff\xfe\xfd\xfc", codec)
    records = consumed(
        batch(codec, [EVENT], first_offset=0), shifted(bad, 1), batch(codec, [EVENT], first_offset=4)
    )
    assert [record.offset for record in records] == [0, 1, 2, 3, 4]
    assert [record.value for record in records[1:4]] == EVENTS
    assert records[2].headers == (("\ufffd" * 4, b"v"), ("healthstream-origin", b"0:5:0"))
    assert all(not isinstance(record.value, Unread) for record in records)


def test_a_record_that_does_not_read_at_all_is_unread_with_the_rest_of_its_batch() -> None:
    """A record whose framing is broken (a negative header count) under a correct CRC: it and
    the records after it in its batch come out unread, with the reason; the next batch is read."""
    named = batch("none", EVENTS, headers={1: [("HDRX", b"v")]})
    bad = forged(named, b"\x02\x08HDRX", b"\x01\x08\xff\xfe")  # 1 header, zigzag -1: none
    records = consumed(shifted(bad, 0), batch("none", [EVENT], first_offset=3))
    assert [record.offset for record in records] == [0, 1, 2, 3]
    assert [record.value for record in records[::3]] == [EVENTS[0], EVENT]
    reasons = [record.value.reason for record in records[1:3]]
    assert reasons == ["record 1 does not read (-1 headers): it was not read"] * 2


def test_without_its_bytes_a_batch_that_does_not_read_is_unread() -> None:
    """Records not made by the fetcher (their bytes unknown): every offset of the batch it has
    not handed out yet comes out unread."""
    bad = forged(batch("none", EVENTS, headers={1: [("HDRX", b"v")]}), b"HDRX", b"\xff\xfe\xfd\xfc")
    records = list(PartitionRecords(TopicPartition("t", 0), MemoryRecords(bad), [], 0, None, None, True, 0))
    assert [record.offset for record in records] == [0, 1, 2]
    assert records[0].value == EVENTS[0]
    assert records[1].value.reason.startswith("its record batch does not read (UnicodeDecodeError")


def shifted(raw: bytes, first_offset: int) -> bytes:
    """The batch at `first_offset`, as the broker sets it (outside the CRC)."""
    moved = bytearray(raw)
    struct.pack_into(">q", moved, 0, first_offset)
    return bytes(moved)


@pytest.mark.parametrize("length", [-4, -40, 1 << 20])
def test_a_snappy_frame_whose_chunk_length_is_out_of_its_bytes_does_not_decompress(length: int) -> None:
    """A negative chunk length kept the framing's cursor in place: the consumer thread looped for
    ever, its memory growing (a CRC is no proof: a producer computes it over what it sends)."""
    payload = bounded_batches._XERIAL_MAGIC + struct.pack("!ii", 1, 1) + struct.pack("!i", length) + b"xxxx"
    with pytest.raises(bounded_batches._NotDecompressed, match="framing is damaged"):
        bounded_batches.snappy_decode(payload)


def test_a_legacy_compressed_batch_that_does_not_read_is_unread() -> None:
    """A v1 (pre-0.11 format) gzip batch whose payload is damaged under a correct CRC: reading
    it named attributes only v2 batches have, and the error ended the fetcher at every start."""
    from aiokafka.record.legacy_records import LegacyRecordBatchBuilder

    builder = LegacyRecordBatchBuilder(magic=1, compression_type=1, batch_size=MiB)
    for offset in range(3):
        builder.append(offset, timestamp=1000, key=b"k", value=b"v" * 10)
    raw = bytearray(builder.build())
    value_at = (
        8 + 4 + 4 + 1 + 1 + 8 + 4 + 4
    )  # offset, length, CRC, magic, attributes, time, key, value length
    raw[value_at : value_at + 4] = b"XXXX"
    struct.pack_into(">I", raw, 12, zlib.crc32(bytes(raw[16:])) & 0xFFFFFFFF)
    [record] = consumed(bytes(raw))  # at the wrapper's offset
    assert isinstance(record.value, Unread)
    assert "gzip batch does not decompress" in record.value.reason, record.value.reason
