"""Producers given up on (a failed start or send, a stalled broker): stopped within a bound, so
that their owner can start a new one."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer

from streamer.stream.faust_private import abort_producer

STOP_TIMEOUT_S = 5.0


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
