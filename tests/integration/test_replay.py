"""`streamer replay` through a broker restart: every event of the file reaches the topics (some
maybe twice), the stall is reported, and a broker that stays away ends it with one line.

These tests stop and start Kafka, so they run a private stack (own stack directory and free
loopback ports, the session's cached jars) and never touch the session's broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamer.local.settings import StackSettings
from streamer.local.stack import ensure_up, stop
from streamer.offline.runner import UTF8_BOM
from streamer.settings import FAMILIES
from tests.fixtures import isolated_stack, wait_until

pytestmark = pytest.mark.integration

STREAMER = str(Path(sys.executable).parent / "streamer")
PARTITIONS = 4
EVENTS = 6000
RATE = 300  # events/s: the file takes ~20 s, long enough to stop the broker in the middle


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    with isolated_stack(tmp_path_factory.mktemp("replay-stack")) as settings:
        yield settings


def write_events(path: Path, count: int) -> list[str]:
    """`count` usage events over 50 accounts (replay routes by event_type and account_id only)."""
    ids = [f"ev-{index:06d}" for index in range(count)]
    lines = [
        orjson.dumps(
            {
                "event_id": event_id,
                "event_type": "usage.recorded",
                "account_id": f"acct-{index % 50:03d}",
                "occurred_at": f"2024-01-01T00:{index // 600 % 60:02d}:{index // 10 % 60:02d}Z",
                "user_id": f"u-{index % 7}",
                "feature": "reports",
            }
        )
        for index, event_id in enumerate(ids)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return ids


async def _read_all(bootstrap: str, topics: list[str]) -> list[str]:
    """Every event_id on the topics, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        ids: list[str] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                ids += [orjson.loads(record.value)["event_id"] for record in records]
        return ids
    finally:
        await consumer.stop()


async def _count(bootstrap: str, topics: list[str]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


class Replay:
    """`streamer replay` in the background against the private stack, under its own prefix."""

    def __init__(self, stack: StackSettings, events: Path, folder: Path, *options: str) -> None:
        self.bootstrap = stack.bootstrap
        self.prefix = f"r{uuid.uuid4().hex[:10]}."
        self.stderr = folder / f"{self.prefix}stderr"
        env = {key: value for key, value in os.environ.items() if not key.startswith("HEALTHSTREAM_")}
        env |= {
            "HEALTHSTREAM_KAFKA_BOOTSTRAP": stack.bootstrap,
            "HEALTHSTREAM_TOPIC_PREFIX": self.prefix,
            "HEALTHSTREAM_PARTITIONS": str(PARTITIONS),
        }
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [STREAMER, "replay", str(events), "--quiet", *options],
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
            )

    @property
    def topics(self) -> list[str]:
        return [self.prefix + family for family in FAMILIES]

    def published(self) -> int:
        assert self.proc.poll() is None, f"replay ended early:\n{self.errors()}"
        try:
            return asyncio.run(_count(self.bootstrap, self.topics))
        except Exception:
            return 0  # the topics are not there yet

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")

    def finish(self) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=240)  # bounds a hang only
        return self.proc.returncode, out.decode()


def test_replay_resumes_after_a_broker_restart_and_loses_nothing(
    private_stack: StackSettings, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    expected = write_events(events, EVENTS)
    replay = Replay(private_stack, events, tmp_path, "--rate", str(RATE), "--timeout", "120")
    try:
        wait_until("a tenth of the file on the topics", lambda: replay.published() >= EVENTS // 10)
        stop(private_stack, services=["kafka"], echo=quiet)
        wait_until("replay to report the stall", lambda: "stopped acknowledging" in replay.errors())
        ensure_up(private_stack, echo=quiet)
        code, printed = replay.finish()
    finally:
        if replay.proc.poll() is None:
            replay.proc.kill()
    assert code == 0, replay.errors()
    assert "the broker answers again" in replay.errors()
    assert f"published {EVENTS:,} events" in printed, printed
    assert "sent again after 1 broker stall(s)" in printed, printed
    assert "Traceback" not in replay.errors()

    ids = asyncio.run(_read_all(private_stack.bootstrap, replay.topics))
    missing = set(expected) - set(ids)
    assert not missing, f"{len(missing)} events never reached Kafka, e.g. {sorted(missing)[:5]}"
    assert len(ids) >= EVENTS  # repeats are allowed (the worker ignores a repeated event_id)
    print(f"{len(ids) - EVENTS} repeats of {EVENTS} events after the restart")


def test_replay_gives_up_with_one_line_when_the_broker_stays_away(
    private_stack: StackSettings, tmp_path: Path
) -> None:
    ensure_up(private_stack, echo=quiet)  # whatever the test before left
    events = tmp_path / "events.jsonl"
    write_events(events, EVENTS)
    replay = Replay(private_stack, events, tmp_path, "--rate", str(RATE), "--timeout", "6")
    try:
        wait_until("a tenth of the file on the topics", lambda: replay.published() >= EVENTS // 10)
        stop(private_stack, services=["kafka"], echo=quiet)
        code, printed = replay.finish()
    finally:
        if replay.proc.poll() is None:
            replay.proc.kill()
        ensure_up(private_stack, echo=quiet)
    errors = replay.errors().strip().splitlines()
    assert code == 1, replay.errors()
    assert errors[-1].startswith(
        f"streamer replay: no Kafka broker accepted events at {private_stack.bootstrap} for "
    ), errors
    assert "run replay again" in errors[-1]
    assert "Traceback" not in replay.errors() and printed == ""


def test_replay_stopped_by_ctrl_c_says_how_far_it_got_and_exits_130(
    private_stack: StackSettings, tmp_path: Path
) -> None:
    """It printed click's "Aborted!" and exited 1, as for an error; 130 is what a shell expects
    of Ctrl-C, and the user wants to know whether running it again is safe."""
    ensure_up(private_stack, echo=quiet)  # whatever the test before left
    events = tmp_path / "events.jsonl"
    # Ten times the file of the other tests (200 s at the rate), so it cannot end on its own
    # before the signal on a loaded machine.
    write_events(events, EVENTS * 10)
    replay = Replay(private_stack, events, tmp_path, "--rate", str(RATE))
    try:
        wait_until("a tenth of the file on the topics", lambda: replay.published() >= EVENTS // 10)
        replay.proc.send_signal(signal.SIGINT)
        code, printed = replay.finish()
    finally:
        if replay.proc.poll() is None:
            replay.proc.kill()
    said = replay.errors()
    assert code == 130, said
    last = said.strip().splitlines()[-1]
    assert last.startswith("streamer replay: interrupted at byte "), said
    # A tenth of the file was sent: it said "byte 0" while fewer than 5,000 lines had gone.
    at = last.removeprefix("streamer replay: interrupted at byte ").split(" of ")[0]
    assert int(at.replace(",", "")) > 0, said
    assert "publishing the file again is safe" in said
    for noise in ("Traceback", "Aborted", "Task was destroyed", "Unclosed"):
        assert noise not in said, said
    assert printed == ""


def test_replay_publishes_the_first_event_of_a_file_that_starts_with_a_byte_order_mark(
    private_stack: StackSettings, tmp_path: Path
) -> None:
    """A UTF-8 byte order mark (a Windows editor's export) made the first line not JSON: replay
    skipped it and its account lost that event. Now every event reaches the topics; a UTF-16
    file is refused with one line before anything is published."""
    ensure_up(private_stack, echo=quiet)  # whatever the tests before left
    events = tmp_path / "marked.jsonl"
    expected = write_events(events, 50)
    events.write_bytes(UTF8_BOM + events.read_bytes())
    replay = Replay(private_stack, events, tmp_path)
    code, printed = replay.finish()
    assert code == 0, replay.errors()
    assert "published 50 events" in printed and "0 lines skipped" in printed, printed
    assert sorted(asyncio.run(_read_all(private_stack.bootstrap, replay.topics))) == expected

    wide = tmp_path / "wide.jsonl"
    wide.write_bytes(events.read_bytes().decode("utf-8-sig").encode("utf-16"))
    refused = Replay(private_stack, wide, tmp_path)
    code, printed = refused.finish()
    assert code == 1 and printed == "", refused.errors()
    assert (
        refused.errors()
        .strip()
        .endswith(
            "the file is UTF-16 or UTF-32 text; events are JSON lines in UTF-8 "
            "(convert it first, e.g. with iconv -f UTF-16 -t UTF-8)"
        )
    ), refused.errors()
    assert not asyncio.run(_topics_named(private_stack.bootstrap, refused.prefix))  # nothing published


async def _topics_named(bootstrap: str, prefix: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        return {topic for topic in await consumer.topics() if topic.startswith(prefix)}
    finally:
        await consumer.stop()
