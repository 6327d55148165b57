"""One destination's reading of the alerts topic: its own consumer group, offsets and pause.

Each destination reads the topic in a consumer group of its own (`<group>.<destination>`) and
commits each partition up to the first alert it has not finished with. A destination that does
not take its alerts (down, or slower than they come) fills its own `max_in_flight` and pauses
only its own reading: the other destinations read on. Under one shared group, one dead
destination held every healthy one back once `max_in_flight` filled.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streamer.notify.delivery import DestinationWorker
from streamer.notify.metrics import NotifyMetrics
from streamer.notify.progress import Progress
from streamer.notify.routing import matches

log = logging.getLogger(__name__)

Decode = Callable[[bytes | None], dict[str, Any] | str]  # the alert, or why it is undeliverable


def lane_group(group: str, destination: str) -> str:
    """The consumer group one destination's lane commits under."""
    return f"{group}.{destination}"


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, lane: Lane) -> None:
        self.lane = lane

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.lane.commit()
        self.lane.progress.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info(
            "partitions assigned",
            extra={"destination": self.lane.name, "partitions": sorted(tp.partition for tp in assigned)},
        )


class Lane:
    """Reads the alerts topic for one destination's worker; `step` is one turn of its loop."""

    def __init__(
        self,
        worker: DestinationWorker,
        consumer: AIOKafkaConsumer,
        topic: str,
        max_in_flight: int,
        metrics: NotifyMetrics,
        decode: Decode,
        clock: Callable[[], float],
    ) -> None:
        self.worker, self.consumer, self.topic = worker, consumer, topic
        self.max_in_flight, self.metrics, self.decode, self.clock = max_in_flight, metrics, decode, clock
        self.name = worker.name
        self.progress = Progress()
        self.paused_since: float | None = None  # clock time reading paused at (max_in_flight pending)
        self._committed: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_Revocations(self))

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.commit()
        await self.consumer.stop()

    async def step(self) -> None:
        """Pause or resume by the alerts pending, read one batch and hand it to the worker."""
        full = self.progress.in_flight() >= self.max_in_flight
        if full != (self.paused_since is not None):
            (self.consumer.pause if full else self.consumer.resume)(*self.consumer.assignment())
            self.paused_since = self.clock() if full else None
            if full:
                log.warning(
                    "reading paused for one destination: max_in_flight of its alerts are pending",
                    extra={"destination": self.name, "max_in_flight": self.max_in_flight},
                )
            else:
                log.info("reading resumed for one destination", extra={"destination": self.name})
        batch = await self.consumer.getmany(timeout_ms=200, max_records=500)
        for tp, records in sorted(batch.items(), key=lambda item: item[0].partition):
            for record in records:
                self.dispatch(tp, record.offset, record.value)

    def dispatch(self, tp: TopicPartition, offset: int, value: bytes | None) -> None:
        """Hand one record to the worker when it is an alert routed to this destination."""
        alert = self.decode(value)
        if isinstance(alert, str):
            log.warning(
                "skipping an undeliverable record",
                extra={
                    "destination": self.name,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": offset,
                    "why": alert,
                },
            )
            self.progress.read(tp, offset, 0)
            return
        routed = matches(self.worker.destination, alert)
        done = self.progress.read(tp, offset, 1 if routed else 0)
        if routed:
            self.worker.submit(alert, done)

    async def commit(self) -> None:
        """Commit each partition up to its first alert not yet done (only what moved)."""
        assigned = self.consumer.assignment()
        moved = {
            tp: offset
            for tp, offset in self.progress.committable().items()
            if tp in assigned and self._committed.get(tp) != offset
        }
        if not moved:
            return
        await self.consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in moved.items()})
        self._committed.update(moved)

    async def hold_positions(self) -> None:
        """Commit each assigned partition nothing was read from nor committed yet at its position.
        With `--start-from latest`, an alert published, while the notifier was down, to a
        partition that had never held one was skipped after the restart: the group had no offset
        there, and a new group starts at the end."""
        assigned = self.consumer.assignment()
        read = self.progress.committable()
        fresh = [tp for tp in assigned if tp not in read and tp not in self._committed]
        if not fresh:
            return
        positions = {tp: await self.consumer.position(tp) for tp in fresh}
        await self.consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in positions.items()})
        self._committed.update(positions)

    async def update_lag(self) -> None:
        """Set this destination's consumer lag: alerts on the topic beyond what it finished."""
        consumer = self.consumer
        assigned = list(consumer.assignment())
        if not assigned:
            return
        with contextlib.suppress(Exception):
            ends = await consumer.end_offsets(assigned)
            committable = self.progress.committable()
            lag = 0
            for tp in assigned:
                done = committable.get(tp, self._committed.get(tp))
                if done is None:
                    done = await consumer.position(tp)
                lag += max(0, ends[tp] - done)
            self.metrics.lag.labels(self.name).set(lag)

    def paused_s(self) -> float | None:
        """Seconds this lane's reading has been paused, or None while it reads."""
        return None if self.paused_since is None else round(self.clock() - self.paused_since, 1)


def starting_offsets(
    shared: Mapping[TopicPartition, OffsetAndMetadata],
    lanes: Mapping[str, Mapping[TopicPartition, OffsetAndMetadata]],
    topic: str,
) -> dict[str, dict[TopicPartition, OffsetAndMetadata]]:
    """Where each destination's group that has no offsets on `topic` starts (`lanes`: the offsets
    each configured destination's group holds): where the others have read to (per partition the
    furthest, as a destination added to the shared group started where it stood), or, when no
    destination's group has offsets yet (the first start after the upgrade from the one shared
    group), the shared group's offsets. An upgrade then neither skips the alerts published
    meanwhile nor sends old ones again (the dedupe log holds back what a destination had), and a
    destination added later does not start from the long-stale shared group."""
    held = {name: _of_topic(offsets, topic) for name, offsets in lanes.items()}
    source: dict[TopicPartition, OffsetAndMetadata] = {}
    for offsets in held.values():
        for tp, meta in offsets.items():
            if tp not in source or meta.offset > source[tp].offset:
                source[tp] = OffsetAndMetadata(meta.offset, "")
    if not source:
        source = _of_topic(shared, topic)
    return {name: dict(source) for name, offsets in held.items() if not offsets and source}


def _of_topic(
    offsets: Mapping[TopicPartition, OffsetAndMetadata], topic: str
) -> dict[TopicPartition, OffsetAndMetadata]:
    return {tp: meta for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}
