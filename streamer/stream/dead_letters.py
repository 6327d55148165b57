"""Each rejected message dead-lettered once, across kills and rebalances.

A batch's dead letters reach Kafka before the partition record that lists their messages as
handled (`Checkpoint`), so a worker killed in between reads those messages again, rejects them
again and, without this, wrote their dead letters a second time. Two pieces close that gap:

- Dead letters of input partition p go to partition p of the dead-letter topic (p modulo its
  partition count), so one partition of it holds everything p's owners wrote.
- The `clocks` table keeps, beside each partition record, a *position* in that dead-letter
  partition: every dead letter of p at a lower offset is for a message the partition record
  already lists as handled. When a worker takes p over, it reads the dead-letter partition from
  that position to its end (`Ledger`) and does not write again the dead letter of a message it
  finds there. The position is written after the partition record and moves only past dead
  letters whose messages a durable partition record lists, so a recovered position is never
  ahead of its record (an older one only means reading a little more).

The read-back is bounded by what was written since the last checkpoint that covered its
messages: a few batches' dead letters, not the topic.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamer.stream.access import KafkaAccess
from streamer.stream.clients import FETCH_WAIT_MS, start_consumer
from streamer.stream.faust_private import topic_partitions

log = logging.getLogger(__name__)

T = TypeVar("T")

Place = tuple[str, int]  # (input topic, offset) of a rejected message

FORMAT = 1  # the position record's format version
_POSITION = struct.Struct(">BQ")
RETRY_S = 1.0  # pause before reading the dead-letter topic again after a broker error
READ_TIMEOUT_S = 30.0


def position_key(partition: int) -> str:
    """The `clocks` table key of partition `partition`'s dead-letter position."""
    return f"deadletters-{partition}"


def encode_position(offset: int) -> bytes:
    return _POSITION.pack(FORMAT, offset)


class PositionDecodeError(ValueError):
    pass


def decode_position(raw: bytes) -> int:
    if len(raw) != _POSITION.size or raw[0] != FORMAT:
        raise PositionDecodeError(
            f"a dead-letter position record must be {_POSITION.size} bytes of format {FORMAT}, got "
            f"{len(raw)} bytes starting {raw[:2].hex() or 'with nothing'}: delete the key from the "
            "clocks table (the worker then reads the partition's dead letters from the start)"
        )
    return int(_POSITION.unpack(raw)[1])


@dataclass
class Ledger:
    """One input partition's dead letters that a durable partition record does not cover yet."""

    position: int  # as recovered or last written
    earlier: dict[Place, int] = field(default_factory=dict)  # read back: place -> dead-letter offset
    mine: set[Place] = field(default_factory=set)  # written by this worker since it took p over

    def known(self, topic: str, offset: int) -> bool:
        """Whether the dead letter of this message is already in the topic."""
        return (topic, offset) in self.earlier or (topic, offset) in self.mine

    def written(self, topic: str, offset: int) -> None:
        self.mine.add((topic, offset))

    def forget(self, covered: Callable[[str, int], bool]) -> bool:
        """Drop what the partition record now lists; whether anything was dropped."""
        before = len(self.earlier) + len(self.mine)
        self.earlier = {place: at for place, at in self.earlier.items() if not covered(*place)}
        self.mine = {place for place in self.mine if not covered(*place)}
        return len(self.earlier) + len(self.mine) != before


class DeadLetterLog(Protocol):
    """The dead-letter topic as the scorer reads it back (a list in tests)."""

    def partition_for(self, source_partition: int) -> int | None:
        """The dead-letter partition of an input partition (None before it is known)."""
        ...

    async def read(self, source_partition: int, start: int) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        """(dead-letter offset, record) of `source_partition`'s dead letters from `start`, and
        the dead-letter partition's end offset."""
        ...

    async def end(self, source_partition: int) -> int:
        """The end offset of `source_partition`'s dead-letter partition."""
        ...


class KafkaDeadLetters:
    """`DeadLetterLog` over the dead-letter topic; broker errors are retried (the batch waits,
    as it waits for its outputs), never skipped.

    One client, one request at a time (`_one_at_a_time`): the scorer's batch, the sink's check
    after a failed send and the checkpoint each ask it from their own task, and a read assigns,
    seeks and unsubscribes the client, so two reads at once could move each other's position
    (a letter missed: written a second time) or close the client under the other."""

    def __init__(self, kafka: KafkaAccess, topic: str) -> None:
        self.kafka, self.topic = kafka, topic
        self.partitions: int | None = None
        self._client: AIOKafkaConsumer | None = None
        self._one_at_a_time = asyncio.Lock()

    def partition_for(self, source_partition: int) -> int | None:
        return None if self.partitions is None else source_partition % self.partitions

    async def read(self, source_partition: int, start: int) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        return await self._retrying(lambda: self._read(source_partition, start))

    async def end(self, source_partition: int) -> int:
        async def ask() -> int:
            tp = await self._tp(source_partition)
            return int((await (await self._started()).end_offsets([tp]))[tp])

        return await self._retrying(ask)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.stop()

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                async with self._one_at_a_time:
                    try:
                        async with asyncio.timeout(READ_TIMEOUT_S):
                            return await attempt()
                    except Exception:
                        await self.close()  # before another request may use it
                        raise
            except Exception as exc:
                log.warning(
                    "could not read the dead-letter topic; trying again",
                    extra={"topic": self.topic, "error": f"{type(exc).__name__}: {exc}"},
                )
                await asyncio.sleep(RETRY_S)

    async def _started(self) -> AIOKafkaConsumer:
        if self._client is None:
            client = AIOKafkaConsumer(
                **self.kafka.client_options(),
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=FETCH_WAIT_MS,
            )
            self._client = await start_consumer(client)
        return self._client

    async def _tp(self, source_partition: int) -> TopicPartition:
        if self.partitions is None:
            found = await topic_partitions(await self._started(), self.topic)
            if not found:
                raise LookupError(f"the dead-letter topic {self.topic!r} has no partitions yet")
            self.partitions = len(found)
        return TopicPartition(self.topic, source_partition % self.partitions)

    async def _read(self, source_partition: int, start: int) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        tp = await self._tp(source_partition)
        client = await self._started()
        # The bounds first, with nothing assigned: an assigned partition at its end keeps a
        # fetch waiting on the broker (up to fetch_max_wait_ms), and the broker answers a
        # connection's requests in order, so each offset request waited behind it (half a
        # second per partition at a worker's start, before its first batch could commit).
        first = int((await client.beginning_offsets([tp]))[tp])
        end = int((await client.end_offsets([tp]))[tp])
        found: list[tuple[int, dict[str, Any]]] = []
        if max(start, first) >= end:
            return found, end
        client.assign([tp])
        try:
            client.seek(tp, max(start, first))
            while await client.position(tp) < end:
                for record in (await client.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if record.offset >= end or record.value is None:
                        continue
                    try:
                        letter = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue  # not ours
                    if isinstance(letter, dict) and letter.get("partition") == source_partition:
                        found.append((record.offset, letter))
        finally:
            client.unsubscribe()  # no fetch left waiting in front of the next offset request
        return found, end
