"""Apply batches of input messages to the scoring core and carry the results out.

Per batch: decode every message; hold valid ones in their partition's watermark merge and apply
those it releases, in event-time order; send alerts, dead letters and changed snapshots; wait
until Kafka has them; only then write account state and the partition clock to the changelogged
tables, and acknowledge the messages. Offsets are committed only up to acknowledged messages,
so a worker killed at any point re-reads what it had not finished: those event ids are either
in the recovered state (dedupe) or their outputs are re-sent with the same ids (idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamer.contract.dead_letter import dead_letter_record
from streamer.contract.decode import Rejected, decode_event
from streamer.contract.events import Event
from streamer.core.clock import to_ms
from streamer.core.config import ScoreConfig
from streamer.core.engine import ACCEPTED, DUPLICATE, Clock, PartitionEngine
from streamer.partitioning import partition_of
from streamer.projection.port import NoProjection, Projection
from streamer.settings import Settings
from streamer.stream.accounts import TableAccounts
from streamer.stream.context import acting_as
from streamer.stream.merge import PartitionMerge

log = logging.getLogger(__name__)


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float


class Offsets(Protocol):
    """What the consumer knows about a topic partition's offsets."""

    def highwater(self, topic: str, partition: int) -> int | None: ...
    async def position(self, topic: str, partition: int) -> int | None: ...
    async def end_offset(self, topic: str, partition: int) -> int | None: ...
    def assigned(self) -> set[tuple[str, int]]: ...


UNSEEN_TOPIC_GRACE_S = 1.0  # after an assignment, give each topic this long to deliver
QUIET_TOPIC_IDLE_S = 5.0  # a topic that delivered nothing for this long stops holding others back


class Sink(Protocol):
    """Where results go: Kafka output topics in the worker, lists in tests."""

    def alert(self, alert: dict[str, Any]) -> None: ...
    def snapshot(self, snapshot: dict[str, Any]) -> None: ...
    def dead_letter(self, record: dict[str, Any]) -> None: ...
    def reroute(self, topic: str, key: bytes, value: bytes) -> None: ...
    def flush(self) -> Awaitable[None]: ...


@dataclass
class Counters:
    """Running totals for logs and metrics."""

    processed: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rerouted: int = 0
    alerts: int = 0
    snapshots: int = 0
    batches: int = 0
    by_rule: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_latency_s: float = 0.0


def dead_letter(message: Message, error: str) -> dict[str, Any]:
    """The `cs.deadletter` record for a rejected message (original bytes kept)."""
    return dead_letter_record(
        message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        error=error,
    )


class Scorer:
    """One worker's partition engines over the tables, fed batch by batch."""

    def __init__(
        self,
        settings: Settings,
        config: ScoreConfig,
        accounts_table: Any,
        clocks_table: Any,
        sink: Sink,
        offsets: Offsets,
        projection: Projection | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.accounts_table = accounts_table
        self.clocks_table = clocks_table
        self.sink = sink
        self.offsets = offsets
        self.projection: Projection = projection or NoProjection()
        self.families = {topic: family for family, topic in settings.input_topics.items()}
        self.engines: dict[int, PartitionEngine] = {}
        self.stores: dict[int, TableAccounts] = {}
        self.merges: dict[int, PartitionMerge[tuple[Any, Event]]] = {}
        self.assigned_at = time.monotonic()
        self._delivered: dict[tuple[int, str], float] = {}  # (partition, topic) -> last delivery
        self.lock = asyncio.Lock()
        self.counters = Counters()

    async def rebalanced(self) -> None:
        """On a rebalance: let the batch in flight finish, then forget the partitions' engines.

        They are rebuilt from the tables on next use; messages held in the merges were never
        acknowledged, and the consumer seeks back to the committed offsets, so they come again.
        """
        async with self.lock:
            self.forget_partitions()

    def forget_partitions(self) -> None:
        """Drop the partition engines, stores and merges (rebuilt from the tables on next use)."""
        self.engines.clear()
        self.stores.clear()
        self.merges.clear()
        self._delivered.clear()
        self.assigned_at = time.monotonic()

    def _engine(self, partition: int) -> PartitionEngine:
        engine = self.engines.get(partition)
        if engine is None:
            count = self.settings.partitions
            store = TableAccounts(self.accounts_table, lambda key: partition_of(key, count) == partition)
            raw_clock = self.clocks_table.get(f"clock-{partition}")
            clock = pickle.loads(raw_clock) if raw_clock is not None else Clock()
            started = time.perf_counter()
            engine = PartitionEngine(self.config, store, clock)
            log.info(
                "partition engine ready",
                extra={
                    "partition": partition,
                    "accounts": len(engine.members),
                    "stream_time": clock.stream_time,
                    "seconds": round(time.perf_counter() - started, 3),
                },
            )
            self.engines[partition], self.stores[partition] = engine, store
        return engine

    def _merge(self, partition: int) -> PartitionMerge[tuple[Any, Event]]:
        merge = self.merges.get(partition)
        if merge is None:
            merge = self.merges[partition] = PartitionMerge(list(self.settings.input_topics.values()))
        return merge

    async def process(self, events: Sequence[Any]) -> None:
        """Take one batch of faust events (each with `.message`); apply what the merge releases."""
        async with self.lock:
            done: list[Any] = []
            owned = self.offsets.assigned()
            for event in events:
                message = event.message
                if (message.topic, message.partition) not in owned:
                    continue  # fetched before a rebalance took the partition away: its owner reads it
                self.counters.processed += 1
                decoded = self._admit(message)
                if decoded is None:
                    done.append(event)
                else:
                    at = to_ms(decoded.occurred_at)
                    self._merge(message.partition).add(message.topic, message.offset, at, (event, decoded))
                    self._delivered[(message.partition, message.topic)] = time.monotonic()
            await self._release(done)
            if events:
                self.counters.last_latency_s = max(0.0, time.time() - events[-1].message.timestamp)

    async def release_idle(self) -> None:
        """Periodically: release what became ready because topics went idle meanwhile."""
        async with self.lock:
            if any(len(merge) for merge in self.merges.values()):
                await self._release([])

    async def _release(self, done: list[Any]) -> None:
        counters, sink = self.counters, self.sink
        applied: dict[int, Any] = {}
        owned = {partition for topic, partition in self.offsets.assigned() if topic in self.families}
        for partition in [p for p in self.merges if p not in owned]:
            del self.merges[partition]  # revoked meanwhile: never write state or outputs for it
        for partition, merge in sorted(self.merges.items()):
            if not len(merge):
                continue
            idle = await self._idle_topics(partition, merge)
            ready = merge.release(idle.__contains__)
            if not ready:
                continue
            with acting_as(ready[-1][0]):
                engine = self._engine(partition)
                for event, decoded in ready:
                    self._apply(engine, event.message, decoded)
                    done.append(event)
                for account_id in engine.take_dirty():
                    snapshot = engine.snapshot(account_id)
                    sink.snapshot(snapshot)
                    self.projection.snapshot(snapshot)
                    counters.snapshots += 1
            applied[partition] = ready[-1][0]
        if not done:
            return
        await sink.flush()  # outputs are in Kafka before the state says they were produced
        for partition, event in applied.items():
            with acting_as(event):
                self.stores[partition].flush()
                self.clocks_table[f"clock-{partition}"] = pickle.dumps(self.engines[partition].clock)
        for event in done:
            event.ack()
        counters.batches += 1
        for partition in applied:
            engine = self.engines[partition]
            self.projection.partition(
                partition, engine.periods.sums, engine.totals.sums, engine.clock.stream_time
            )
        await self.projection.flush()

    async def _idle_topics(self, partition: int, merge: PartitionMerge[Any]) -> set[str]:
        """Topics of the partition with nothing more to deliver right now."""
        idle = set()
        now = time.monotonic()
        for topic in merge.topics:
            # Liveness first: a topic silent for a while (wall time) no longer holds the others
            # back, whatever the offsets say (like a watermark idleness timeout).
            if now - self._delivered.get((partition, topic), self.assigned_at) > QUIET_TOPIC_IDLE_S:
                idle.add(topic)
                continue
            highwater = self.offsets.highwater(topic, partition)
            seen = merge.next_offset.get(topic)
            if seen is not None:
                if highwater is not None and seen >= highwater:
                    idle.add(topic)
            elif now - self.assigned_at > UNSEEN_TOPIC_GRACE_S:
                # Nothing delivered since the assignment: idle when the consumer is at the end.
                # The fetcher may not know the end yet (no fetch of that partition since the
                # assignment), so ask the broker then.
                if highwater is None:
                    highwater = await self.offsets.end_offset(topic, partition)
                position = await self.offsets.position(topic, partition)
                if highwater is not None and position is not None and position >= highwater:
                    idle.add(topic)
        return idle

    def _admit(self, message: Message) -> Event | None:
        """Decode a message; dead-letter or re-route it here, or return it for the merge."""
        counters = self.counters
        try:
            event = decode_event(message.value, key=message.key, family=self.families.get(message.topic))
        except Rejected as rejected:
            counters.rejected += 1
            self.sink.dead_letter(dead_letter(message, rejected.reason))
            return None
        if (
            message.key is None
            or partition_of(event.account_id, self.settings.partitions) != message.partition
        ):
            # Keyless, or keyed with another partitioner: send it where its account lives.
            counters.rerouted += 1
            self.sink.reroute(message.topic, event.account_id.encode(), message.value)
            return None
        return event

    def _apply(self, engine: PartitionEngine, message: Message, event: Event) -> None:
        counters = self.counters
        outcome = engine.process(event)
        if outcome.status == ACCEPTED:
            counters.accepted += 1
        elif outcome.status == DUPLICATE:
            counters.duplicates += 1
        else:
            counters.rejected += 1
            self.sink.dead_letter(dead_letter(message, outcome.reason or "rejected"))
        for alert in outcome.alerts:
            counters.alerts += 1
            counters.by_rule[str(alert["rule"])] += 1
            self.sink.alert(alert)
            self.projection.alert(alert)
