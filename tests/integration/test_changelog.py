"""The table changelogs on the real broker hold the state, not the history.

Recovery reads a changelog from its start, so its length is what a recovery costs. These tests
check the settings the worker gives its changelogs (also on topics an earlier release created
without them) and that the broker then compacts a changelog written far beyond its state.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamer.local.stack import StackInfo
from streamer.settings import Settings
from streamer.stream.topics import CHANGELOG, CHANGELOG_SEGMENT_BYTES, changelog_topic, ensure_topics
from tests.fixtures import topic_configs, wait_until

pytestmark = pytest.mark.integration

COMPACTION_DEADLINE_S = 240.0  # bounds a hang only: the log cleaner runs every 15 s


def settings_for(stack: StackInfo, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap=stack.bootstrap,
        topic_prefix=f"cl{tag}.",
        app_id=f"hs-cl-{tag}",
        partitions=2,
        data_dir=tmp_path,
    )


def configs_once_described(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's configs, once the broker describes them: right after its creation a busy
    broker answers with none (the topic's metadata is not everywhere yet)."""
    deadline = time.monotonic() + 60  # bounds a hang only
    while not (configs := asyncio.run(topic_configs(bootstrap, topic))):
        assert time.monotonic() < deadline, f"{topic}: no configs described"
        time.sleep(0.5)
    return configs


def test_changelogs_are_created_and_reconfigured_to_be_compacted(stack: StackInfo, tmp_path: Path) -> None:
    settings = settings_for(stack, tmp_path)
    accounts, clocks = changelog_topic(settings, "accounts"), changelog_topic(settings, "clocks")

    async def older_release() -> None:  # the accounts changelog as an earlier release made it
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            older = {"cleanup.policy": "compact", "retention.ms": "86400000"}  # and an operator's setting
            await admin.create_topics([NewTopic(accounts, 2, 1, topic_configs=older)])
        finally:
            await admin.close()

    asyncio.run(older_release())
    before = configs_once_described(stack.bootstrap, accounts)
    assert before["segment.bytes"] != str(CHANGELOG_SEGMENT_BYTES)
    created = asyncio.run(ensure_topics(settings))
    assert clocks in created and accounts not in created
    for topic in (accounts, clocks):
        deadline = time.monotonic() + 60  # the broker applies a config change asynchronously
        while True:
            configs = asyncio.run(topic_configs(stack.bootstrap, topic))
            if {key: configs.get(key) for key in CHANGELOG} == CHANGELOG:
                break
            assert time.monotonic() < deadline, f"{topic}: {configs}"
            time.sleep(0.5)
    # the topic's other settings are kept (AlterConfigs replaces a topic's whole set)
    assert asyncio.run(topic_configs(stack.bootstrap, accounts))["retention.ms"] == "86400000"


def test_a_changelog_written_far_beyond_its_state_is_compacted(stack: StackInfo, tmp_path: Path) -> None:
    """20 keys rewritten until the changelog holds several closed segments: reading it from the
    start (what a recovery does) soon returns about the state, not the history."""
    settings = settings_for(stack, tmp_path)
    asyncio.run(ensure_topics(settings))
    topic = changelog_topic(settings, "accounts")
    value = b"x" * 1000
    records = 3 * CHANGELOG_SEGMENT_BYTES // len(value)

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=20)
        await producer.start()
        try:
            for index in range(records):
                await producer.send(topic, key=f"acct-{index % 20}".encode(), value=value, partition=0)
            await producer.flush()
        finally:
            await producer.stop()

    async def end_offset() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=None)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            return int((await consumer.end_offsets([tp]))[tp])
        finally:
            await consumer.stop()

    async def read_from_start() -> tuple[int, set[bytes]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            count, keys = 0, set[bytes]()
            while await consumer.position(tp) < end:
                for batch in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    count += len(batch)
                    keys.update(record.key for record in batch if record.key is not None)
            return count, keys
        finally:
            await consumer.stop()

    asyncio.run(write())
    # The whole history was written (compaction never reuses offsets). Not "read back in full":
    # on a busy machine the log cleaner may already have compacted the first closed segments.
    assert asyncio.run(end_offset()) == records
    deadline = time.monotonic() + COMPACTION_DEADLINE_S
    while True:
        count, keys = asyncio.run(read_from_start())
        # closed segments compacted to their 20 keys; the open segment (at most one segment's
        # worth) is read as written
        if count <= 20 * 3 + CHANGELOG_SEGMENT_BYTES // len(value):
            break
        assert time.monotonic() < deadline, f"the changelog still holds {count} of {records} records"
        time.sleep(5)
    assert len(keys) == 20  # every key's latest value survives


def test_a_tombstone_whose_key_is_not_json_leaves_recovery_whole(stack: StackInfo, tmp_path: Path) -> None:
    """An operator deleting an account's record by hand (`kcat -K: ... <<< 'acct-1:'`) keys the
    tombstone `acct-1`, not `"acct-1"`. faust dropped the record it could not decode without
    counting its offset: as the last of its partition, recovery waited for it for ever, and the
    worker never processed anything again, at every start."""
    from tests.integration.test_view import Deployment, make_history

    deployment = Deployment(stack.bootstrap, stack.redis_url, tmp_path)
    try:
        deployment.create_topics()
        history = make_history(tmp_path / "history")
        deployment.replay(history.events)
        worker = deployment.start_worker()
        wait_until("the worker to catch up", lambda: deployment.lag() == 0, 240)
        worker.stop()
        changelog = f"{deployment.app_id}-accounts-changelog"
        asyncio.run(_tombstones(stack.bootstrap, changelog, [b"acct-0003", b"\xff\xfe not text"]))

        restarted = deployment.start_worker()
        late = tmp_path / "one.jsonl"
        late.write_bytes(
            b'{"event_id":"after-the-tombstone","event_type":"usage.recorded","account_id":"acct-0001",'
            b'"occurred_at":"' + _last_time(history.events).encode() + b'","user_id":"u-9"}\n'
        )
        deployment.replay(late)
        wait_until("the restarted worker to process the new event", lambda: deployment.lag() == 0, 180)
        assert restarted.alive, restarted.tail()
        assert "a tombstone must be keyed the same way" in restarted.log.read_text(errors="replace")
    finally:
        deployment.close()


async def _tombstones(bootstrap: str, topic: str, keys: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition in (0, 1, 2, 3):  # the last record of every partition
            for key in keys:
                await producer.send_and_wait(topic, None, key=key, partition=partition)
    finally:
        await producer.stop()


def _last_time(events: Path) -> str:
    """The latest event time of a history, as its lines write it (no late event to refuse)."""
    import gzip

    import orjson

    return max(
        orjson.loads(line)["occurred_at"] for line in gzip.decompress(events.read_bytes()).splitlines()
    )
