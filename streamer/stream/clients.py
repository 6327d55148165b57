"""Kafka clients started and stopped without leaking them: a consumer whose start fails part
way, a consumer left at shutdown, a producer given up on (a failed start or send, a stalled
broker). Each is closed within a bound, so that its owner can go on or start a new one."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streamer.stream import bounded_batches
from streamer.stream.faust_private import abort_producer

CONSUMER_STOP_S = 10.0  # how long a consumer that failed to start may take to close
STOP_TIMEOUT_S = 5.0  # a producer's stop, and then its abort
# How long the broker may hold a fetch of partitions that have no new data (faust: 1,500 ms).
# Requests behind it on the same connection (the offsets asked next, a commit) wait too, and an
# idle consumer sends about 1000 / FETCH_WAIT_MS fetches a second.
FETCH_WAIT_MS = 50


async def start_consumer(consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """Start `consumer`, or close it and raise: a start that fails or is cancelled part way (a
    group that fails, a timeout around it, a broker that stops answering) has already opened
    connections and started aiokafka's metadata, fetch and coordinator tasks, which nothing
    else would stop: one leaked client per retry during an outage. Its batches are bounded
    (`bounded_batches`): a record batch that would expand past the bound comes out unread."""
    bounded_batches.install()
    try:
        await consumer.start()
    except BaseException:
        await close_consumer(consumer, CONSUMER_STOP_S)
        raise
    return consumer


async def close_consumer_or_warn(
    consumer: AIOKafkaConsumer, seconds: float, log: logging.Logger, message: str, **extra: object
) -> None:
    """`close_consumer`, and `message` as a warning of `log` (with `extra` and the error) when the
    consumer could not be closed cleanly."""
    error = await close_consumer(consumer, seconds)
    if error is not None:
        log.warning(message, extra={**extra, "error": f"{type(error).__name__}: {error}"})


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


async def start_producer(producer: AIOKafkaProducer, timeout_s: float | None = None) -> AIOKafkaProducer:
    """Start `producer` (within `timeout_s`: TimeoutError), or stop it (`stop_quietly`) and raise: a
    failed start leaves its client, sender and connections to close, as a consumer's does
    (`start_consumer`). The bound is the start's alone: a timeout around this call would cut the
    clean-up short too, and leak the producer."""
    try:
        async with asyncio.timeout(timeout_s):
            await producer.start()
    except BaseException:
        await stop_quietly(producer)
        raise
    return producer


async def stop_quietly(producer: AIOKafkaProducer, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop `producer` within `timeout_s`, its errors ignored: what it still held has failed
    already, or its owner sends it again. A stop that does not finish in time (its batches
    undelivered) is cut short and the producer closed without them, within `timeout_s` more."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await producer.stop()
            return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await abort_producer(producer)
