"""Leaving a consumer group at shutdown without letting the shutdown stop there."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer


async def close_consumer(consumer: AIOKafkaConsumer, seconds: float) -> BaseException | None:
    """Stop `consumer` within `seconds`; the error it met, or None. Never raises what the consumer
    raised: with the broker away, aiokafka's stop ended in a CancelledError of its own, and the
    rest of the notifier (the other destinations, the dedupe log, the HTTP session) was left open.
    A cancellation of the calling task itself is raised."""
    try:
        async with asyncio.timeout(seconds):
            await consumer.stop()
    except (Exception, asyncio.CancelledError) as error:
        task = asyncio.current_task()
        if isinstance(error, asyncio.CancelledError) and task is not None and task.cancelling():
            raise
        return error
    return None
