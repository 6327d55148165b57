"""Kafka clients given up on, on the real broker: nothing of them is left running.

A producer (`stop_quietly`): the broker throttles one client id to a byte a second (a client
quota, set with Kafka's own `kafka-configs` tool), so a batch sent by that client stays
undelivered while its owner gives up on it: the case of a stalled broker, for one client only.

A consumer (`start_consumer`): subscribed at construction, its aiokafka `start` connects, starts
the metadata, fetch and coordinator tasks and then waits for the group to assign it partitions.
The group's assignor here fails, so the start fails after those tasks are running: the case of
a group or broker that fails, or a caller's timeout that runs out, while a client starts."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.errors import KafkaError

from streamer.local import kafka, tools
from streamer.local.settings import StackSettings
from streamer.local.stack import StackInfo
from streamer.stream.clients import start_consumer, stop_quietly

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


async def left_running(before: set[asyncio.Task[object]], deadline_s: float = 10.0) -> list[str]:
    """`others(before)` once they have finished, or as they are after `deadline_s` (a bound on a
    slow cancellation on a busy machine, not a measure: a leaked task never finishes)."""
    deadline = time.monotonic() + deadline_s
    while (left := others(before)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left


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
        return held.done(), await left_running(before)

    held_done, left = asyncio.run(scenario())
    assert held_done, "the batch the broker held is failed when its producer is given up on"
    assert left == [], f"still running after stop_quietly: {left}"


class NeverAssigns(AbstractPartitionAssignor):
    """A group protocol whose leader fails every assignment (aiokafka's start raises it)."""

    name = "never"
    version = 0

    @classmethod
    def assign(cls, cluster: Any, members: Any) -> Any:
        raise RuntimeError("this group never assigns partitions")

    @classmethod
    def metadata(cls, topics: Any) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: Any) -> None:
        pass


def cancelled_start(
    stack: StackInfo, start: Callable[[AIOKafkaConsumer], Coroutine[Any, Any, object]]
) -> list[str]:
    """The tasks left running after `start` of a consumer that never gets its partitions has
    failed (or been given up on after 30 seconds, a bound on a hang)."""
    topic = f"hs-never-{uuid.uuid4().hex[:8]}"

    async def scenario() -> list[str]:
        await create_topic(stack.bootstrap, topic)
        before = set(asyncio.all_tasks())
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.bootstrap,
            group_id=f"hs-never-{uuid.uuid4().hex[:8]}",
            partition_assignment_strategy=(NeverAssigns,),
            retry_backoff_ms=50,
        )
        with pytest.raises(KafkaError, match="never assigns"):
            async with asyncio.timeout(30):
                await start(consumer)
        left = await left_running(before)
        if left:  # the run's own clean-up, so the event loop closes without the leaked tasks
            await consumer.stop()
        return left

    return asyncio.run(scenario())


def test_a_consumer_whose_start_is_given_up_on_is_closed(stack: StackInfo) -> None:
    left = cancelled_start(stack, start_consumer)
    assert left == [], f"still running after a failed start_consumer: {left}"
