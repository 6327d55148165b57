"""A worker killed after its dead letters reached Kafka and before its checkpoint (so before any
offset of the batch is committed) reads the bad messages again when it restarts, and must not
dead-letter them a second time: the dead-letter topic holds each bad message once.

The same for a re-routed message: a worker killed after sending the keyed copy of a message
written to another partition than its account's sends a second copy when it restarts; the
account's partition handles the second as it handled the first (one dead letter for a late one).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from test_stream import KILLED_MEMBER_LEAVES_SOON, Deployment, deploy

from streamer.partitioning import partition_of

pytestmark = pytest.mark.integration

__all__ = ["deploy"]  # the fixture used here

DYING_WORKER = Path(__file__).with_name("die_after_dead_letters.py")
ACCOUNT = "acct-dl"
BAD = [b"{not json", b"[]", b'{"event_type": "usage.recorded"}', b"\xff\xfe"]


def usage(number: int, day: str = "2024-01-01") -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{ACCOUNT}-{number}",
            "event_type": "usage.recorded",
            "account_id": ACCOUNT,
            "occurred_at": f"{day}T10:{number:02d}:00Z",
            "user_id": "u1",
            "feature": "reports",
        }
    )


async def publish(
    bootstrap: str, topic: str, values: list[bytes], partition: int | None = None
) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=ACCOUNT.encode(), partition=partition)
            for value in values
        ]
        await producer.flush()
        return [(meta.partition, meta.offset) for meta in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


def die_once(deployment: Deployment, tmp_path: Path, after: str) -> None:
    """Run a worker until it dies right after its first `after` ("dead_letters" or "copies")
    reached Kafka (exit 137, before its checkpoint)."""
    marker = tmp_path / f"died-{after}"
    log = tmp_path / f"dying-{after}.log"
    env = {
        **deployment.env(),
        **deployment.worker_env,
        "DIE_AFTER_DEAD_LETTERS_MARKER": str(marker),
        "DIE_AFTER": after,
    }
    with log.open("wb") as handle:
        dying = subprocess.Popen(
            [sys.executable, str(DYING_WORKER), "worker"], env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 300  # bounds a hang only
    while dying.poll() is None:
        if time.monotonic() > deadline:
            dying.kill()
            raise AssertionError(f"the worker never wrote its {after}:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    assert dying.returncode == 137 and marker.exists(), log.read_text()[-3000:]


@pytest.mark.slow
def test_a_worker_killed_after_writing_dead_letters_does_not_write_them_again(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    deployment = deploy(worker_env=KILLED_MEMBER_LEAVES_SOON)  # the restart waits 8 s for it, not 60
    deployment.create_topics()
    topic = deployment.topic("usage")
    values = [value for number, bad in enumerate(BAD) for value in (usage(number), bad)]
    places = asyncio.run(publish(deployment.bootstrap, topic, values))
    expected = {(topic, *place) for place, value in zip(places, values, strict=True) if value in BAD}

    die_once(deployment, tmp_path, "dead_letters")
    deployment.wait_for("the first dead letters in Kafka", lambda: bool(deployment.dead_letters()), 60)
    assert deployment.committed() < len(values), "the batch's offsets were committed before the kill"

    worker = deployment.start_worker("w2")  # the same data folder: a restart
    deployment.settle(worker)
    letters = Counter((d["topic"], d["partition"], d["offset"]) for d in deployment.dead_letters())
    assert set(letters) == expected
    twice = {place: count for place, count in letters.items() if count > 1}
    assert not twice, f"dead-lettered again after the restart: {twice}"
    assert "dead letters read back" in worker.text()


@pytest.mark.slow
def test_a_worker_killed_after_rerouting_a_late_event_leaves_one_dead_letter(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """Two copies of the late event reach its account's partition (the restarted worker re-routes
    it again); the second is skipped as handled, so the topic holds one dead letter. Before the
    copies carried their origin each copy got one."""
    deployment = deploy(worker_env=KILLED_MEMBER_LEAVES_SOON)  # the restart waits 8 s for it, not 60
    deployment.create_topics()
    topic = deployment.topic("usage")
    home = partition_of(ACCOUNT, deployment.settings().partitions)
    source = (home + 1) % deployment.settings().partitions

    # The account's partition is at March (a clean stop: its clock is stored).
    asyncio.run(publish(deployment.bootstrap, topic, [usage(1, "2024-03-01")], partition=home))
    first = deployment.start_worker("w1")
    deployment.settle(first)
    first.stop()

    # A January event of the account, keyed but written to another partition: it is re-routed.
    [(_, written)] = asyncio.run(
        publish(deployment.bootstrap, topic, [usage(2, "2024-01-01")], partition=source)
    )
    die_once(deployment, tmp_path, "copies")
    worker = deployment.start_worker("w2")
    deployment.settle(worker)

    deployment.bus.poll(topic)
    in_home = sorted(
        (r for r in deployment.bus.records[topic] if r.partition == home), key=lambda r: r.offset
    )
    copies = in_home[1:]  # after the March event
    assert len(copies) == 2, "the restarted worker did not re-route the message again"
    assert len({(bytes(record.value), tuple(record.headers)) for record in copies}) == 1, copies
    letters = deployment.dead_letters()
    assert [(d["partition"], d["offset"]) for d in letters] == [(home, copies[0].offset)], letters
    assert "too late" in letters[0]["error"]
    assert letters[0]["rerouted_from"] == {"partition": source, "offset": written}
