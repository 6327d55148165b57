"""What each destination already received: the dedupe state that survives a restart.

Kept on a small compacted Kafka topic (`cs.notify.sent`, key `destination` + US + `alert_id`,
value a JSON object), on the broker that already holds the alerts: as durable as the alerts
themselves (Redis here is a projection that may come back empty), no extra service, and read
back in full at start-up (one short record per delivered alert; `compact,delete` with a
retention of `retention_days` bounds it). JSON only, nothing is unpickled.

After start-up the log goes on reading the topic (its tail): the other notifiers of the group
record there too, and a lane that is assigned partitions another notifier had waits
(`catch_up`) until the log has read what was recorded up to then, so that the alerts the
previous owner delivered are not delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamer.stream.access import KafkaAccess
from streamer.stream.clients import (
    CONSUMER_STOP_S,
    close_consumer,
    close_consumer_or_warn,
    start_consumer,
    start_producer,
    stop_quietly,
)
from streamer.stream.topics import check_created, min_insync

log = logging.getLogger(__name__)

SEP = "\x1f"
TAIL_RETRY_S = 1.0  # the tail's pause after a failed read


SENT = "sent"  # the only status that counts as delivered (the others are `rejected`)


class SentLog(Protocol):
    """The (destination, alert id) pairs that were delivered. A rejection is recorded too (with
    its status) but is no delivery: an alert rejected is sent again when it is read again."""

    def __contains__(self, item: tuple[str, str]) -> bool:
        """Whether the destination has the alert: its latest record says `sent`."""
        ...

    async def record(self, destination: str, alert_ids: list[str], status: str) -> None:
        """Remember the pairs' outcome durably; returns once it survives a crash."""
        ...

    async def catch_up(self, timeout_s: float) -> bool:
        """Wait, at most `timeout_s`, until every pair recorded (by any notifier) before the
        call is known here; True when it is."""
        ...


def _status(value: bytes | None) -> str | None:
    """A record's `status` (None for a tombstone or a value that is not a JSON object)."""
    if value is None:
        return None
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    status = decoded.get("status") if isinstance(decoded, dict) else None
    return status if isinstance(status, str) else None


class MemorySentLog:
    """The in-process fake tests use (it forgets on restart, unlike the Kafka one)."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], str] = {}

    def __contains__(self, item: tuple[str, str]) -> bool:
        return self.pairs.get(item) == SENT

    async def record(self, destination: str, alert_ids: list[str], status: str) -> None:
        for alert_id in alert_ids:
            self.pairs[(destination, alert_id)] = status

    async def catch_up(self, timeout_s: float) -> bool:
        return True  # one process: every record is known at once


class KafkaSentLog:
    """The compacted topic: loaded in full by `start`, then followed by a tail task (the other
    notifiers' records), appended to by `record` (acks=all)."""

    def __init__(
        self, kafka: KafkaAccess, topic: str, retention_days: float = 30.0, replication_factor: int = 1
    ) -> None:
        self.kafka, self.topic, self.retention_days = kafka, topic, retention_days
        self.replication_factor = replication_factor
        self.pairs: set[tuple[str, str]] = set()
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._read_to: dict[TopicPartition, int] = {}  # the offset the tail reads next
        self._moved = asyncio.Event()  # set (and replaced) each time the tail reads on
        self._tail: asyncio.Task[None] | None = None

    def __contains__(self, item: tuple[str, str]) -> bool:
        return item in self.pairs

    async def start(self) -> int:
        """Create the topic when missing, read it to its end, follow it from there on; return
        the pairs loaded."""
        partitions = await self._ensure_topic()
        self._partitions = [TopicPartition(self.topic, p) for p in range(partitions)]
        consumer = await start_consumer(
            AIOKafkaConsumer(**self.kafka.client_options(), enable_auto_commit=False, group_id=None)
        )
        try:
            await self._load(consumer)
            self._producer = await self._new_producer()
        except BaseException:
            await close_consumer(consumer, CONSUMER_STOP_S)
            raise
        self._consumer = consumer
        self._tail = asyncio.create_task(self._follow(consumer), name="notify-sent-tail")
        self._started = True
        return len(self.pairs)

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self.kafka.client_options(), acks="all", enable_idempotence=True, linger_ms=0
        )
        return await start_producer(producer)

    async def stop(self) -> None:
        """Stop the tail, then its consumer and the producer (each bounded)."""
        if self._tail is not None:
            self._tail.cancel()
            await asyncio.gather(self._tail, return_exceptions=True)
            self._tail = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await close_consumer_or_warn(
                consumer,
                CONSUMER_STOP_S,
                log,
                "could not stop reading the dedupe log cleanly",
                topic=self.topic,
            )
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
        self._note({(destination, alert_id) for alert_id in alert_ids}, delivered=status == SENT)

    def _note(self, pairs: set[tuple[str, str]], *, delivered: bool) -> None:
        """The latest record of a pair decides, as compaction keeps only it."""
        if delivered:
            self.pairs |= pairs
        else:
            self.pairs -= pairs

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

    async def _load(self, consumer: AIOKafkaConsumer) -> None:
        tps = self._partitions
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            self._apply(await consumer.getmany(timeout_ms=1000, max_records=10_000))
        await self._note_positions(consumer)

    def _apply(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        for records in batch.values():
            for record in records:
                if record.key is None:
                    continue
                destination, _, alert_id = record.key.decode().partition(SEP)
                # a tombstone forgets the pair, and a rejection is no delivery
                self._note({(destination, alert_id)}, delivered=_status(record.value) == SENT)

    async def _note_positions(self, consumer: AIOKafkaConsumer) -> None:
        for tp in self._partitions:
            self._read_to[tp] = await consumer.position(tp)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        """The tail: apply every record written after the load, the other notifiers' too (the
        same set as before: a compacted, retained topic's pairs, one short entry each)."""
        while True:
            try:
                self._apply(await consumer.getmany(timeout_ms=500, max_records=10_000))
                await self._note_positions(consumer)
            except Exception as error:  # the broker away a moment: read on once it is back
                log.warning(
                    "could not read the dedupe log, retrying",
                    extra={"topic": self.topic, "error": f"{type(error).__name__}: {error}"},
                )
                await asyncio.sleep(TAIL_RETRY_S)

    async def catch_up(self, timeout_s: float) -> bool:
        """Wait, at most `timeout_s`, until the tail has read to the topic's end as it is now."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("KafkaSentLog.catch_up before start()")
        try:
            async with asyncio.timeout(timeout_s):
                ends = await consumer.end_offsets(self._partitions)
                while any(self._read_to.get(tp, 0) < end for tp, end in ends.items()):
                    await self._moved.wait()
        except TimeoutError:
            return False
        return True
