"""The worker consumer's view of its input partitions (the scorer's `Offsets`).

Assignment, generation and fetch positions come from faust's consumer. End and start offsets
come from the broker through a small client of our own: the scorer asks for end offsets about
once per batch, and a round trip through faust's consumer thread takes seconds under load (its
method queue is served between fetches), where a direct ListOffsets request takes a millisecond.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTP
from faust.types import TP

from streamer.stream.access import KafkaAccess
from streamer.stream.clients import CONSUMER_STOP_S, close_consumer_or_warn, start_consumer
from streamer.stream.consumer import RebalanceSafeConsumer
from streamer.stream.faust_private import commit, committed_offsets
from streamer.stream.membership import Doubt, Membership
from streamer.stream.topics import configure_inputs

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


class ConsumerOffsets:
    """Offsets of the worker's input partitions, for `scorer.Scorer`."""

    def __init__(self, app: faust.App, kafka: KafkaAccess) -> None:
        self.app = app
        self.kafka = kafka
        self._membership: Membership | None = None
        # by isolation level: started on first use, in the worker's loop
        self._clients: dict[str, AIOKafkaConsumer] = {}

    def generation(self) -> int | None:
        generation = self.app.consumer_generation_id
        return None if generation is None else int(generation)

    def settled(self) -> bool:
        return not self.app.rebalancing

    def member_problem(self) -> Doubt | None:
        if self._membership is None:  # made on first use: the app's settings are final by then
            self._membership = Membership(
                lambda: cast(RebalanceSafeConsumer, self.app.consumer).group_coordinator(),
                float(self.app.conf.broker_session_timeout),
                float(self.app.conf.broker_heartbeat_interval),
            )
        return self._membership.problem()

    def assigned(self) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}

    def highwater(self, topic: str, partition: int) -> int | None:
        try:
            return int(self.app.consumer.highwater(TP(topic, partition)))
        except Exception:  # unknown until the first fetch of that partition
            return None

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._list(tps, "end")

    async def log_ends(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._list(tps, "end", isolation="read_uncommitted")

    async def restart_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        # faust records the committed offsets it seeks to after each assignment (and advances
        # them as it commits); a partition without one is read from its start (earliest).
        committed = committed_offsets(self.app.consumer)
        found = {tp: committed.get(TP(*tp)) for tp in tps}
        offsets = {tp: int(offset) for tp, offset in found.items() if offset is not None}
        missing = [tp for tp, offset in found.items() if offset is None]
        if missing:
            offsets.update(await self._list(missing, "start"))
        return offsets

    async def start_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._list(tps, "start")

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        await self.app.consumer.seek(TP(topic, partition), offset)

    def read_position(self, topic: str, partition: int) -> tuple[int, int] | None:
        return cast(RebalanceSafeConsumer, self.app.consumer).read_position(TP(topic, partition))

    async def created_again(self, topic: str) -> None:
        await configure_inputs(self.kafka, [topic])

    def start_over(self, topic: str, partition: int, start: int | None = None) -> None:
        cast(RebalanceSafeConsumer, self.app.consumer).start_over(TP(topic, partition), start)

    async def commit_start(self, topic: str, partition: int, offset: int) -> None:
        await commit(self.app.consumer, {TP(topic, partition): offset})

    def acknowledge_passed(self, topic: str, partition: int, start: int, stop: int) -> None:
        cast(RebalanceSafeConsumer, self.app.consumer).acknowledge_passed(TP(topic, partition), start, stop)

    async def close(self) -> None:
        """Stop the clients (each, whatever the others met: a warning names what it was)."""
        clients, self._clients = self._clients, {}
        for isolation, client in clients.items():
            await close_consumer_or_warn(
                client, CONSUMER_STOP_S, log, "could not close an offsets client", isolation=isolation
            )

    async def _list(
        self, tps: Sequence[TopicPartition], which: str, isolation: str = "read_committed"
    ) -> dict[TopicPartition, int]:
        """The partitions' start or end offsets as the broker reports them now (the end for a
        reader of committed transactions, as the worker reads, unless `isolation` says
        otherwise); {} when it cannot be asked (nothing counts as idle then, which only delays)."""
        try:
            client = await self._started(isolation)
            wanted = [KafkaTP(topic, partition) for topic, partition in tps]
            found = await (client.end_offsets(wanted) if which == "end" else client.beginning_offsets(wanted))
        except Exception as exc:
            log.warning("could not read offsets from the broker", extra={"which": which, "error": repr(exc)})
            await self.close()  # start afresh next time
            return {}
        return {(tp.topic, tp.partition): int(offset) for tp, offset in found.items() if offset is not None}

    async def _started(self, isolation: str) -> AIOKafkaConsumer:
        client = self._clients.get(isolation)
        if client is None:
            client = AIOKafkaConsumer(
                **self.kafka.client_options(), enable_auto_commit=False, isolation_level=isolation
            )
            client = self._clients[isolation] = await start_consumer(client)
        return client
