"""Compressed batches through aiokafka's own record readers and fetcher, bounded: ordinary ones come
out as they went in, one that would expand past the bound (or does not decompress) comes out as
records with an `Unread` value and the reason, one per offset, and the records after it still
come out."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import cramjam
import pytest
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
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


def batch(codec: str, values: list[bytes], first_offset: int = 0) -> bytes:
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
        builder.append(number, timestamp=1_700_000_000_000, key=b"a", value=value, headers=[])
    built = bytearray(builder.build())
    struct.pack_into(">q", built, 0, first_offset)  # as the broker sets it (outside the CRC)
    return bytes(built)


def consumed(*batches: bytes) -> list[Any]:
    """What the fetcher hands the consumer for these batches of one partition."""
    records = MemoryRecords(b"".join(batches))
    return list(PartitionRecords(TopicPartition("t", 0), records, [], 0, None, None, True, 0))


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
    bounded = bounded_batches._Records(records).next_batch()
    assert next(bounded).value == EVENT
