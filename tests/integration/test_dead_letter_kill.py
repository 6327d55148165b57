"""A worker killed after its dead letters reached Kafka and before its checkpoint (so before any
offset of the batch is committed) reads the bad messages again when it restarts, and must not
dead-letter them a second time: the dead-letter topic holds each bad message once."""

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
from test_stream import Deployment, deploy

pytestmark = pytest.mark.integration

__all__ = ["deploy"]  # the fixture used here

DYING_WORKER = Path(__file__).with_name("die_after_dead_letters.py")
ACCOUNT = "acct-dl"
BAD = [b"{not json", b"[]", b'{"event_type": "usage.recorded"}', b"\xff\xfe"]


def usage(number: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{ACCOUNT}-{number}",
            "event_type": "usage.recorded",
            "account_id": ACCOUNT,
            "occurred_at": f"2024-01-01T10:{number:02d}:00Z",
            "user_id": "u1",
            "feature": "reports",
        }
    )


async def publish(bootstrap: str, topic: str, values: list[bytes]) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=ACCOUNT.encode()) for value in values]
        await producer.flush()
        return [(meta.partition, meta.offset) for meta in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


@pytest.mark.slow
def test_a_worker_killed_after_writing_dead_letters_does_not_write_them_again(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    deployment = deploy()
    deployment.create_topics()
    topic = deployment.topic("usage")
    values = [value for number, bad in enumerate(BAD) for value in (usage(number), bad)]
    places = asyncio.run(publish(deployment.bootstrap, topic, values))
    expected = {(topic, *place) for place, value in zip(places, values, strict=True) if value in BAD}

    marker = tmp_path / "died"
    log = tmp_path / "dying.log"
    env = {**deployment.env(), "DIE_AFTER_DEAD_LETTERS_MARKER": str(marker)}
    with log.open("wb") as handle:
        dying = subprocess.Popen(
            [sys.executable, str(DYING_WORKER), "worker"], env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 300  # bounds a hang only
    while dying.poll() is None:
        if time.monotonic() > deadline:
            dying.kill()
            raise AssertionError(f"the worker never wrote a dead letter:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    assert dying.returncode == 137 and marker.exists(), log.read_text()[-3000:]
    deployment.wait_for("the first dead letters in Kafka", lambda: bool(deployment.dead_letters()), 60)
    assert deployment.committed() < len(values), "the batch's offsets were committed before the kill"

    worker = deployment.start_worker("w2")  # the same data folder: a restart
    deployment.settle(worker)
    letters = Counter((d["topic"], d["partition"], d["offset"]) for d in deployment.dead_letters())
    assert set(letters) == expected
    twice = {place: count for place, count in letters.items() if count > 1}
    assert not twice, f"dead-lettered again after the restart: {twice}"
    assert "dead letters read back" in worker.text()
