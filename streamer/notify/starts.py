"""Where a destination's new consumer group starts, and the notifier's mark that says where.

Each destination reads in a group of its own (`streamer.notify.lane`). A group that has no
offsets yet (a destination added to the file, renamed, or the first start after the upgrade from
the one group every destination shared) starts, per partition, at the notifier's *mark*: the
offsets committed under `--group` itself. The running notifier keeps the mark at the furthest
any of its destinations has read to, so a new destination receives what was published while
the notifier was restarted for it and nothing older, whatever the others' state (a dead one far
behind included); before the upgrade, the shared group's own offsets are that mark. Where there is
no mark, `--start-from` decides: the end (`latest`) or the beginning (`earliest`) of each
partition. Partitions that appear later (the topic grown) are read from their beginning: each
of their alerts is newer than the group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from streamer.stream.clients import CONSUMER_STOP_S, close_consumer, close_consumer_or_warn, start_consumer

log = logging.getLogger(__name__)

T = TypeVar("T")


def starting_point(
    mark: Mapping[TopicPartition, OffsetAndMetadata],
    beginnings: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    start_from: str,
) -> dict[TopicPartition, OffsetAndMetadata]:
    """Per partition of the topic (`ends`), the offset a new destination group starts at: the
    mark's, else the end (`latest`) or the beginning (`earliest`)."""
    edge = ends if start_from == "latest" else beginnings
    start: dict[TopicPartition, OffsetAndMetadata] = {}
    for tp in ends:
        marked = mark.get(tp)
        offset = marked.offset if marked is not None and marked.offset >= 0 else edge.get(tp, 0)
        start[tp] = OffsetAndMetadata(offset, "")
    return start


def of_topic(
    offsets: Mapping[TopicPartition, OffsetAndMetadata], topic: str
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The committed offsets of `topic` (a group may hold others, and -1 means none)."""
    return {tp: meta for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def furthest(positions: Sequence[Mapping[TopicPartition, int]]) -> dict[TopicPartition, int]:
    """Per partition, the furthest of the destinations' positions (those that read it)."""
    found: dict[TopicPartition, int] = {}
    for read in positions:
        for tp, offset in read.items():
            if offset > found.get(tp, -1):
                found[tp] = offset
    return found


async def retried(call: Callable[[], Awaitable[T]], seconds: float, what: str) -> T:
    """`call()`, again while the broker answers with a retriable error (a new cluster's group
    coordinator is not there until `__consumer_offsets` exists), for at most `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            return await call()
        except KafkaError as error:
            if not getattr(error, "retriable", False) or loop.time() >= deadline:
                raise
            log.info("broker not ready, retrying", extra={"doing": what, "error": type(error).__name__})
            await asyncio.sleep(0.5)


class Mark:
    """The notifier's mark: commits under `--group` the furthest position its destinations have
    read to, per partition (a consumer assigned by hand that never fetches: its partitions are
    paused). A group with members (a notifier from before the lanes, still running) refuses such
    commits; the mark then stays as that group keeps it."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self._marked: dict[TopicPartition, int] = {}
        self._refused = False

    async def start(self) -> None:
        await start_consumer(self.consumer)

    async def stop(self) -> None:
        """Stop its consumer (`close_consumer`: bounded, never raising what aiokafka raised)."""
        await close_consumer_or_warn(
            self.consumer, CONSUMER_STOP_S, log, "could not stop the notifier's mark cleanly"
        )

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        """Commit the positions that moved forward (the partitions not yet assigned are taken on)."""
        moved = {tp: offset for tp, offset in positions.items() if offset > self._marked.get(tp, -1)}
        if not moved:
            return
        assigned = set(self.consumer.assignment())
        if not set(moved) <= assigned:
            assigned |= set(moved)
            self.consumer.assign(sorted(assigned))
            self.consumer.pause(*assigned)
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in moved.items()})
        except KafkaError as error:
            if not self._refused:
                self._refused = True
                log.warning(
                    "could not move the notifier's mark (is a notifier from before per-destination "
                    "groups still running under the same group?); destinations added later start at "
                    "the mark as it is",
                    extra={"error": f"{type(error).__name__}: {error}"},
                )
            return
        self._marked.update(moved)


async def commit_as(consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
    """Commit `offsets` under `consumer`'s group without joining it (assigned by hand, paused)."""
    await start_consumer(consumer)
    try:
        consumer.assign(list(offsets))
        consumer.pause(*offsets)
        await consumer.commit(dict(offsets))
    finally:
        await close_consumer(consumer, CONSUMER_STOP_S)
