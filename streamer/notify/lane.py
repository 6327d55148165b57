"""One destination's reading of the alerts topic: its own consumer group, offsets and pause.

Each destination reads the topic in a consumer group of its own (`<group>.<destination>`) and
commits each partition up to the first alert it has not finished with. A destination that does
not take its alerts (down, or slower than they come) fills its own `max_in_flight` and pauses
only its own reading: the other destinations read on. Under one shared group, one dead
destination held every healthy one back once `max_in_flight` filled.

Partitions move between the notifiers of one group (a rolling deploy overlaps two). Before a
partition leaves, its lane takes back from the worker the alerts of it still queued and waits
for the batch of it being sent to be recorded in the sent log; the next owner, once assigned,
waits until its sent log has read what was recorded up to then before it hands alerts of its
partitions to the worker. Both waits are bounded (`HANDOVER_S`): past them an alert may be
delivered twice, as after a crash, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streamer.notify.delivery import DestinationWorker
from streamer.notify.metrics import NotifyMetrics
from streamer.notify.progress import Progress
from streamer.notify.routing import matches
from streamer.stream.clients import close_consumer_or_warn, start_consumer

log = logging.getLogger(__name__)

STOP_S = 10.0  # for a commit, and again for leaving the group, at shutdown
HANDOVER_S = 10.0  # for the batch being sent at a revocation; for the sent log at an assignment

Decode = Callable[[bytes | None], dict[str, Any] | str]  # the alert, or why it is undeliverable


def lane_group(group: str, destination: str) -> str:
    """The consumer group one destination's lane commits under."""
    return f"{group}.{destination}"


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, lane: Lane) -> None:
        self.lane = lane

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.lane.hand_over(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info(
            "partitions assigned",
            extra={"destination": self.lane.name, "partitions": sorted(tp.partition for tp in assigned)},
        )
        await self.lane.take_over(assigned)


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
        self._answered_at: float | None = None  # clock time the broker last answered `update_lag`
        self.stopping = False  # shutting down: a revocation does not wait for a batch being sent
        # cleared from a revocation until the sent log has caught up after the next assignment:
        # `step` hands nothing to the worker meanwhile (aiokafka fetches during the listener)
        self._ready = asyncio.Event()
        self._ready.set()

    async def start(self) -> None:
        await start_consumer(self.consumer)
        self.consumer.subscribe([self.topic], listener=_Revocations(self))

    async def stop(self) -> None:
        """Commit what is done and leave the group; never raises (a broker that is away made
        aiokafka's stop end in a CancelledError, and the other destinations were left open)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STOP_S):
                await self.commit()
        await close_consumer_or_warn(
            self.consumer, STOP_S, log, "could not leave the group cleanly", destination=self.name
        )

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
        room = max(1, self.max_in_flight - self.progress.in_flight())  # paused at 0: reads nothing
        batch = await self.consumer.getmany(timeout_ms=200, max_records=min(500, room))
        if batch and not self._ready.is_set():
            await self._ready.wait()  # bounded: `take_over` sets it within HANDOVER_S
            assigned = self.consumer.assignment()
            batch = {tp: records for tp, records in batch.items() if tp in assigned}
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
            self.worker.submit(alert, done, tp)

    async def hand_over(self, revoked: list[TopicPartition]) -> None:
        """Partitions revoked (before they move): take back their alerts still queued, wait
        (bounded) for the batch of them being sent, commit what is done, forget them."""
        self._ready.clear()
        if revoked:
            withdrawn = self.worker.withdraw(revoked)
            settled = self.stopping or await self.worker.settle(revoked, HANDOVER_S)
            log.info(
                "partitions revoked",
                extra={
                    "destination": self.name,
                    "partitions": sorted(tp.partition for tp in revoked),
                    "withdrawn": withdrawn,
                },
            )
            if not settled:
                log.warning(
                    "a batch of revoked partitions was still being sent: its alerts may be sent again",
                    extra={"destination": self.name, "waited_s": HANDOVER_S},
                )
        try:
            await self.commit()
        finally:
            self.progress.forget(revoked)

    async def take_over(self, assigned: list[TopicPartition]) -> None:
        """Partitions assigned: wait (bounded) until the sent log has read what was recorded
        up to now (by their previous owner too), then let `step` hand their alerts over."""
        try:
            if assigned and not await self.worker.sent.catch_up(HANDOVER_S):
                log.warning(
                    "the sent log did not catch up: alerts the previous owner sent may be sent again",
                    extra={"destination": self.name, "waited_s": HANDOVER_S},
                )
        finally:
            self._ready.set()

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

    async def update_lag(self) -> None:
        """Set this destination's consumer lag: alerts on the topic beyond what it finished."""
        consumer = self.consumer
        assigned = list(consumer.assignment())
        if not assigned:  # another notifier of the group reads every partition
            self.metrics.lag.labels(self.name).set(0)
            self._answered_at = None  # nothing was asked
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
            self._answered_at = self.clock()

    def broker_silent_s(self) -> float:
        """Seconds since the broker last answered this lane's lag query (0 before the first)."""
        return 0.0 if self._answered_at is None else self.clock() - self._answered_at

    async def positions(self) -> dict[TopicPartition, int]:
        """Where this destination has read to in each partition it is assigned (the next offset
        it reads there), for the notifier's mark (`streamer.notify.starts`)."""
        return {tp: await self.consumer.position(tp) for tp in self.consumer.assignment()}

    def paused_s(self) -> float | None:
        """Seconds this lane's reading has been paused, or None while it reads."""
        return None if self.paused_since is None else round(self.clock() - self.paused_since, 1)
