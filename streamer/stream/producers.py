"""Producers given up on (a failed start or send, a stalled broker): stopped within a bound, so
that their owner can start a new one."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer

STOP_TIMEOUT_S = 5.0


async def stop_quietly(producer: AIOKafkaProducer, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop `producer` within `timeout_s`, its errors ignored: what it still held has failed
    already, or its owner sends it again."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await producer.stop()
