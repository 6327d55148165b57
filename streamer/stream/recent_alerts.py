"""The newest records of one partition of the alerts topic, for re-staging the Redis projection.

Alerts are keyed by account, so a partition of the alerts topic holds exactly the alerts of the
accounts of the same input partition: a worker reads the tail of the partitions it owns.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamer.stream.access import KafkaAccess

READ_TIMEOUT_S = 30.0  # bounds a read while the broker is away (the caller tries again later)


async def recent_alerts(kafka: KafkaAccess, topic: str, partition: int, count: int) -> list[dict[str, Any]]:
    """The last `count` alerts of `topic`[`partition`], oldest first (duplicates included: an
    alert re-sent after a restart has the same id and record). Raises on a broker error or after
    `READ_TIMEOUT_S`."""
    async with asyncio.timeout(READ_TIMEOUT_S):
        return await _read(kafka, TopicPartition(topic, partition), count)


async def _read(kafka: KafkaAccess, tp: TopicPartition, count: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if end <= start:
            return []
        consumer.seek(tp, max(start, end - count))
        alerts: list[dict[str, Any]] = []
        while await consumer.position(tp) < end:
            fetched = await consumer.getmany(tp, timeout_ms=1000)
            for record in fetched.get(tp, []):
                if record.offset < end and record.value is not None:
                    alerts.append(orjson.loads(record.value))
        return alerts
    finally:
        await consumer.stop()
