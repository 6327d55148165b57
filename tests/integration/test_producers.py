"""A producer given up on, on the real broker: `stop_quietly` leaves nothing of it running.

The broker throttles one client id to a byte a second (a client quota, set with Kafka's own
`kafka-configs` tool), so a batch sent by that client stays undelivered while its owner gives
up on it: the case of a stalled broker, for one client only."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamer.local import kafka, tools
from streamer.local.settings import StackSettings
from streamer.local.stack import StackInfo
from streamer.stream.producers import stop_quietly

pytestmark = pytest.mark.integration


def throttle(client_id: str) -> None:
    """Hold `client_id` to one byte a second of produce on the test broker."""
    settings = StackSettings.from_env()
    java = tools.require([tools.JAVA])["java"]
    quota = ["--add-config", "producer_byte_rate=1", "--entity-type", "clients", "--entity-name", client_id]
    argv = kafka._java_argv(
        settings, java, "kafka.admin.ConfigCommand", "--bootstrap-server", settings.bootstrap
    )
    done = subprocess.run([*argv, "--alter", *quota], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


def others(before: set[asyncio.Task[object]]) -> list[str]:
    """The tasks running now that were not running before, by coroutine name."""
    now = asyncio.all_tasks() - before - {asyncio.current_task()}
    return sorted(task.get_coro().__qualname__ for task in now if not task.done())  # type: ignore[union-attr]


def test_a_producer_given_up_on_while_the_broker_holds_its_batch_is_closed(stack: StackInfo) -> None:
    client_id = f"hs-throttled-{uuid.uuid4().hex[:8]}"
    topic = f"hs-throttled-{uuid.uuid4().hex[:8]}"
    throttle(client_id)

    async def scenario() -> tuple[bool, list[str]]:
        await create_topic(stack.bootstrap, topic)
        before = set(asyncio.all_tasks())
        producer = AIOKafkaProducer(
            bootstrap_servers=stack.bootstrap, client_id=client_id, enable_idempotence=True
        )
        await producer.start()
        await producer.send_and_wait(topic, b"x" * 100_000)  # over the quota: the broker holds the next
        held = await producer.send(topic, b"y" * 100_000)
        await asyncio.sleep(0.2)
        await stop_quietly(producer, timeout_s=0.5)
        return held.done(), others(before)

    held_done, left = asyncio.run(scenario())
    assert held_done, "the batch the broker held is failed when its producer is given up on"
    assert left == [], f"still running after stop_quietly: {left}"
