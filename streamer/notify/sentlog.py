"""What each destination already received: the dedupe state that survives a restart.

Kept on a small compacted Kafka topic (`cs.notify.sent`, key `destination` + US + `alert_id`,
value a JSON object), on the broker that already holds the alerts: as durable as the alerts
themselves (Redis here is a projection that may come back empty), no extra service, and read
back in full at start-up (one short record per delivered alert; `compact,delete` with a
retention of `retention_days` bounds it). JSON only, nothing is unpickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamer.stream.access import KafkaAccess
from streamer.stream.producers import stop_quietly
from streamer.stream.topics import check_created, min_insync

SEP = "\x1f"


class SentLog(Protocol):
    """The (destination, alert id) pairs that were delivered or definitively rejected."""

    def __contains__(self, item: tuple[str, str]) -> bool: ...

    async def record(self, destination: str, alert_ids: list[str], status: str) -> None:
        """Remember the pairs durably; returns once they survive a crash."""
        ...


class MemorySentLog:
    """The in-process fake tests use (it forgets on restart, unlike the Kafka one)."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], str] = {}

    def __contains__(self, item: tuple[str, str]) -> bool:
        return item in self.pairs

    async def record(self, destination: str, alert_ids: list[str], status: str) -> None:
        for alert_id in alert_ids:
            self.pairs[(destination, alert_id)] = status


class KafkaSentLog:
    """The compacted topic: loaded in full by `start`, appended to by `record` (acks=all)."""

    def __init__(
        self, kafka: KafkaAccess, topic: str, retention_days: float = 30.0, replication_factor: int = 1
    ) -> None:
        self.kafka, self.topic, self.retention_days = kafka, topic, retention_days
        self.replication_factor = replication_factor
        self.pairs: set[tuple[str, str]] = set()
        self._producer: AIOKafkaProducer | None = None
        self._started = False

    def __contains__(self, item: tuple[str, str]) -> bool:
        return item in self.pairs

    async def start(self) -> int:
        """Create the topic when missing, read it to its end; return the pairs loaded."""
        partitions = await self._ensure_topic()
        await self._load(partitions)
        self._producer = await self._new_producer()
        self._started = True
        return len(self.pairs)

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self.kafka.client_options(), acks="all", enable_idempotence=True, linger_ms=0
        )
        try:
            await producer.start()
        except BaseException:
            await stop_quietly(producer)
            raise
        return producer

    async def stop(self) -> None:
        if self._producer is not None:
            await stop_quietly(self._producer)  # bounded: a stalled broker does not hold the exit
            self._producer = None

    async def record(self, destination: str, alert_ids: list[str], status: str) -> None:
        if not self._started:
            raise RuntimeError("KafkaSentLog.record before start()")
        if self._producer is None:  # the last one failed a record (`_renew`)
            self._producer = await self._new_producer()
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            futures = [
                await self._producer.send(
                    self.topic,
                    key=f"{destination}{SEP}{alert_id}".encode(),
                    value=orjson.dumps(
                        {"destination": destination, "alert_id": alert_id, "status": status, "at": at}
                    ),
                )
                for alert_id in alert_ids
            ]
            for future in futures:
                await future  # acknowledged by the broker: the pair survives a crash from here on
        except Exception:
            await self._renew()
            raise
        self.pairs.update((destination, alert_id) for alert_id in alert_ids)

    async def _renew(self) -> None:
        """After a failed record the next one starts a new producer: the failed batch took its
        partition's sequence numbers in the idempotent producer, and the broker would refuse
        every later record of that partition as out of order (aiokafka does not reset them), so
        the notifier retried for ever."""
        old, self._producer = self._producer, None
        if old is not None:
            await stop_quietly(old)

    async def _ensure_topic(self) -> int:
        """Create the topic when missing; return its partition count."""
        admin = AIOKafkaAdminClient(**self.kafka.client_options(), request_timeout_ms=15000)
        await admin.start()
        try:
            if self.topic not in set(await admin.list_topics()):
                await self._create(admin)
            for _ in range(100):  # a topic created a moment ago may not be described yet
                [described] = await admin.describe_topics([self.topic])
                if described.get("partitions"):
                    return len(described["partitions"])
                await asyncio.sleep(0.1)
            raise RuntimeError(f"topic {self.topic} has no partitions; is the broker healthy?")
        finally:
            await admin.close()

    async def _create(self, admin: AIOKafkaAdminClient) -> None:
        retention_ms = int(self.retention_days * 86_400_000)
        configs = {"cleanup.policy": "compact,delete", "retention.ms": str(retention_ms)}
        configs |= min_insync(self.replication_factor)
        topic = NewTopic(self.topic, 1, self.replication_factor, topic_configs=configs)
        with contextlib.suppress(TopicAlreadyExistsError):  # another notifier created it meanwhile
            check_created(await admin.create_topics([topic]))

    async def _load(self, partitions: int) -> None:
        consumer = AIOKafkaConsumer(**self.kafka.client_options(), enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for records in batch.values():
                    for record in records:
                        if record.key is None:
                            continue
                        destination, _, alert_id = record.key.decode().partition(SEP)
                        if record.value is None:  # a tombstone forgets the pair
                            self.pairs.discard((destination, alert_id))
                        else:
                            self.pairs.add((destination, alert_id))
        finally:
            await consumer.stop()
