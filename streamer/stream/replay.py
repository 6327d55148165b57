"""Publish a file of contract events to the input topics, keyed by account, optionally rate-limited."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from streamer.contract.events import EVENT_FAMILY
from streamer.settings import Settings


@dataclass
class ReplaySummary:
    sent: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def route(line: bytes, settings: Settings) -> tuple[str, bytes] | None:
    """(topic, key) for a line, or None when it names no known event type."""
    try:
        value = orjson.loads(line)
        family = EVENT_FAMILY[value["event_type"]]
        key = str(value["account_id"]).encode()
    except Exception:
        return None
    return settings.topic(family), key


async def publish(
    lines: Iterable[bytes],
    settings: Settings,
    *,
    rate: float | None = None,
    on_progress: Callable[[int], None] = lambda _n: None,
) -> ReplaySummary:
    """Send every line to its family's topic keyed by account_id; `rate` caps events per second."""
    summary = ReplaySummary()
    # No linger: a batch lingers from its first message, so with one a later event could ride
    # an older batch of another partition and reach Kafka before an earlier one. Without it,
    # what accumulates while a request is in flight goes out together in the next one, so
    # messages are appended in the order of the file across topics (the order the worker's
    # merge relies on to give offline's answers while events are being published).
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=0,
        max_batch_size=512 * 1024,
        acks="all",
        enable_idempotence=True,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for count, line in enumerate(lines, start=1):
            line = line.strip()
            if not line:
                continue
            target = route(line, settings)
            if target is None:
                summary.skipped += 1
                continue
            topic, key = target
            await producer.send(topic, value=line, key=key)
            summary.sent[topic] += 1
            if rate:
                ahead = summary.total / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if count % 5000 == 0:
                on_progress(count)
        await producer.flush()
    finally:
        await producer.stop()
    summary.seconds = time.perf_counter() - started
    return summary
