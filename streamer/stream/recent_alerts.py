"""The newest records of one partition of the alerts topic, for re-staging the Redis projection.

Alerts are keyed by account, so a partition of the alerts topic holds exactly the alerts of the
accounts of the same input partition: a worker reads the tail of the partitions it owns.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from streamer.contract.outputs import Alert, json_object
from streamer.stream.access import KafkaAccess
from streamer.stream.clients import start_consumer

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 30.0  # bounds a read while the broker is away (the caller tries again later)


def as_alert(value: bytes) -> dict[str, Any] | str:
    """The record as an alert, or why it is not one. The workers write every record of the
    topic, but anything else with write access may too: one record that was not an alert (`[1,
    2]`, bytes that are not JSON) stopped every worker that re-staged its partition, at every
    start, or had the partition re-staged every two seconds for good."""
    alert = json_object(value)
    if isinstance(alert, str):
        return alert
    try:
        Alert.model_validate(alert)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"not an alert: {'.'.join(map(str, first['loc'])) or 'record'}: {first['msg']}"
    return alert


async def recent_alerts(kafka: KafkaAccess, topic: str, partition: int, count: int) -> list[dict[str, Any]]:
    """The last `count` alerts of `topic`[`partition`], oldest first (duplicates included: an
    alert re-sent after a restart has the same id and record; records that are not alerts left
    out, with a warning). Raises on a broker error or after `READ_TIMEOUT_S`."""
    async with asyncio.timeout(READ_TIMEOUT_S):
        return await _read(kafka, TopicPartition(topic, partition), count)


async def _read(kafka: KafkaAccess, tp: TopicPartition, count: int) -> list[dict[str, Any]]:
    consumer = await start_consumer(
        AIOKafkaConsumer(**kafka.client_options(), group_id=None, enable_auto_commit=False)
    )
    try:
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if end <= start:
            return []
        consumer.seek(tp, max(start, end - count))
        alerts: list[dict[str, Any]] = []
        skipped: list[tuple[int, str]] = []
        while await consumer.position(tp) < end:
            fetched = await consumer.getmany(tp, timeout_ms=1000)
            for record in fetched.get(tp, []):
                if record.offset < end and record.value is not None:
                    found = as_alert(record.value)
                    if isinstance(found, str):
                        skipped.append((record.offset, found))
                    else:
                        alerts.append(found)
        if skipped:
            offset, why = skipped[0]
            where = {"topic": tp.topic, "partition": tp.partition, "count": len(skipped)}
            log.warning(
                "records of the alerts topic that are not alerts were left out of the projection",
                extra={**where, "first_offset": offset, "first_reason": why[:300]},
            )
        return alerts
    finally:
        await consumer.stop()
