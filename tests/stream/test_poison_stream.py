"""The worker side of bad input: the scorer dead-letters the whole poison corpus and goes on,
dead letters are sent until the broker has them, and a failure outside one message's handling
ends the process with a logged reason (no broker: the world of tests/stream/world.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.contract.outputs import DeadLetter
from streamer.core.config import ScoreConfig
from streamer.partitioning import partition_of
from streamer.settings import Settings
from streamer.stream import sink as sink_module
from streamer.stream.app import EXIT_FAILED, consume, create_app, guarded
from streamer.stream.sink import KafkaSink, deliver_all, deliver_in_order
from tests.fixtures import FakeEvent, Message
from tests.poison import POISONS, started
from tests.stream.world import GENERATION, SETTINGS, TOPICS, World

WHEN = "2024-03-01T10:00:00Z"


async def test_the_scorer_dead_letters_every_poison_acks_it_and_applies_the_valid_event() -> None:
    world = World()
    world.offsets.owned = {(topic, p) for topic in TOPICS.values() for p in range(SETTINGS.partitions)}
    offsets: dict[tuple[str, int], int] = {}
    events: list[FakeEvent] = []

    def add(family: str, account: str, value: bytes | None, key: bytes | None) -> FakeEvent:
        topic, partition = TOPICS[family], partition_of(account, SETTINGS.partitions)
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        message = Message(topic, partition, offset, key, value, time.time(), GENERATION)  # type: ignore[arg-type]
        event = FakeEvent(message, world.acks, world.journal)
        events.append(event)
        return event

    for poison in POISONS:
        add(poison.family, poison.account, poison.value(WHEN), poison.message_key())
    good = add("subscriptions", "good", orjson.dumps(started("good", WHEN, "g1")), b"good")
    world.offsets.ends = {tp: offsets.get(tp, 0) for tp in world.offsets.owned}

    await world.scorer.process(events)

    assert all(event.acked == 1 for event in events), "every message is acknowledged once"
    letters = world.sink.dead_letters
    assert len(letters) == len(POISONS)
    by_place = {(letter["topic"], letter["offset"], letter["partition"]): letter for letter in letters}
    for poison, event in zip(POISONS, events, strict=False):
        message = event.message
        letter = by_place[(message.topic, message.offset, message.partition)]
        DeadLetter.model_validate(letter)
        assert poison.reason in letter["error"], (poison.name, letter["error"])
        assert len(orjson.dumps(letter)) < 200_000
    assert good.acked == 1 and world.scorer.counters.accepted == 1
    assert [snapshot["account_id"] for snapshot in world.sink.snapshots] == ["good"]
    assert not world.sink.reroutes


async def test_a_keyless_event_whose_keyed_copy_the_topic_would_refuse_is_dead_lettered() -> None:
    """A keyless event is re-published keyed to its account's partition. Where the input topics
    take less than that copy (the worker could not set their limit, or an operator lowered it),
    the copy would be sent again for ever and hold up every later checkpoint: it is dead-lettered
    with what to do, and a keyless event that fits is still re-routed."""
    world = World()
    world.offsets.owned = {(topic, p) for topic in TOPICS.values() for p in range(SETTINGS.partitions)}
    world.scorer.input_record_limit = 4096
    topic, partition = TOPICS["subscriptions"], partition_of("roomy", SETTINGS.partitions)
    large = started("roomy", WHEN, "r1") | {"pad": "x" * 4000}
    small = started("roomy", WHEN, "r2")
    events = [
        FakeEvent(
            Message(topic, partition, offset, None, orjson.dumps(value), time.time(), GENERATION),
            world.acks,
            world.journal,
        )  # type: ignore[arg-type]
        for offset, value in enumerate((large, small))
    ]
    world.offsets.ends = {tp: 0 for tp in world.offsets.owned} | {(topic, partition): 2}

    await world.scorer.process(events)

    assert all(event.acked == 1 for event in events)
    [letter] = world.sink.dead_letters
    assert (
        letter["offset"] == 0
        and "larger than the input topic takes (max.message.bytes 4,096)" in letter["error"]
    )
    assert "publish it with its account_id as the key" in letter["error"]
    assert [orjson.loads(value)["event_id"] for _, _, value, _ in world.sink.reroutes] == ["r2"]
    assert world.scorer.counters.rejected == 1 and world.scorer.counters.rerouted == 1


async def test_an_event_on_a_partition_added_under_the_worker_is_sent_to_its_accounts_partition() -> None:
    """An input topic given more partitions under a running worker: a keyed event on a new
    partition (or on one the new count hashes its key to) is re-routed to the partition its
    account has among the worker's `HEALTHSTREAM_PARTITIONS`, named, not left to the producer's
    partitioner, whose hash over the topic's new count sent the copy to a wrong partition again,
    for ever (1,500 records a second in a live test)."""
    world = World()
    added = SETTINGS.partitions + 2  # the topic has two more partitions than the worker knows
    world.offsets.owned = {(topic, p) for topic in TOPICS.values() for p in range(added)}
    account = next(
        f"grown-{n}" for n in range(1000) if partition_of(f"grown-{n}", added) >= SETTINGS.partitions
    )
    topic, partition = TOPICS["subscriptions"], partition_of(account, added)
    message = Message(
        topic,
        partition,
        0,
        account.encode(),
        orjson.dumps(started(account, WHEN, "g1")),
        time.time(),
        GENERATION,
    )  # type: ignore[arg-type]
    world.offsets.ends = {tp: 0 for tp in world.offsets.owned} | {(topic, partition): 1}

    await world.scorer.process([FakeEvent(message, world.acks, world.journal)])

    assert [(to, key, p) for to, key, _, p in world.sink.reroutes] == [
        (topic, account.encode(), partition_of(account, SETTINGS.partitions))
    ]
    assert not world.sink.dead_letters and world.scorer.counters.rerouted == 1


async def test_the_sink_sends_a_rerouted_event_to_the_partition_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(app_id="hs-test", data_dir=Path(folder))
        sink = KafkaSink(create_app(settings, ScoreConfig(), store="memory://"), settings)
        sent: list[tuple[Any, ...]] = []

        async def send(*args: Any) -> asyncio.Future[None]:
            sent.append(args)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        monkeypatch.setattr(sink.app.producer, "send", send)
        sink.reroute("in.subscriptions", b"acme", b"{}", 3, b"1:41:40")
        await asyncio.wait_for(sink.flush(), 5)
    assert sent == [("in.subscriptions", b"acme", b"{}", 3, None, [("healthstream-origin", b"1:41:40")])]


async def test_a_record_time_in_the_future_does_not_let_a_future_event_in() -> None:
    """On an input topic set back to CreateTime the producer writes the record's time: one of the
    year 9999 let an event of the year 2100 past `input.max_skew_hours`, and the partition's
    stream time then refused every later event as too late. The record's time counts no later
    than now."""
    world = World()
    world.offsets.owned = {(topic, p) for topic in TOPICS.values() for p in range(SETTINGS.partitions)}
    topic = TOPICS["subscriptions"]
    far, soon = started("far", "2100-01-01T00:00:00Z", "f1"), started("soon", WHEN, "s1")
    year_9999 = 253402300799.0
    events, offsets = [], {}
    for account, value in (("far", far), ("soon", soon)):
        partition = partition_of(account, SETTINGS.partitions)
        offset = offsets[partition] = offsets.get(partition, -1) + 1
        message = Message(
            topic, partition, offset, account.encode(), orjson.dumps(value), year_9999, GENERATION
        )  # type: ignore[arg-type]
        events.append(FakeEvent(message, world.acks, world.journal))
    world.offsets.ends = {tp: 0 for tp in world.offsets.owned} | {
        (topic, p): o + 1 for p, o in offsets.items()
    }

    await world.scorer.process(events)

    [letter] = world.sink.dead_letters
    assert letter["key"] == "far" and "input.max_skew_hours" in letter["error"], letter["error"]
    assert [snapshot["account_id"] for snapshot in world.sink.snapshots] == ["soon"]


# -- dead letters are never skipped ---------------------------------------------------------------


async def test_deliver_all_sends_failed_records_again_until_each_is_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sink_module, "RETRY_S", 0.0)
    attempts: dict[bytes, int] = {}
    acknowledged: list[bytes] = []

    async def publish(key: bytes | None, value: bytes) -> asyncio.Future[None]:
        attempts[value] = attempts.get(value, 0) + 1
        if value == b"refused-at-send" and attempts[value] < 3:
            raise RuntimeError("MessageSizeTooLargeError (simulated)")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if value == b"failed-ack" and attempts[value] < 2:
            future.set_exception(RuntimeError("NotLeaderForPartition (simulated)"))
        else:
            future.set_result(None)
            acknowledged.append(value)
        return future

    renewed: list[dict[bytes, int]] = []  # the attempts made when the producer id was renewed
    records = [(None, b"fine"), (b"k", b"refused-at-send"), (None, b"failed-ack")]
    await deliver_all(records, publish, "dead letter", renew=lambda: renewed.append(dict(attempts)))
    assert sorted(acknowledged) == sorted(value for _, value in records)
    assert attempts == {b"fine": 1, b"refused-at-send": 3, b"failed-ack": 2}
    assert renewed == [  # after each failed attempt, before the failed records are sent again
        {b"fine": 1, b"refused-at-send": 1, b"failed-ack": 1},
        {b"fine": 1, b"refused-at-send": 2, b"failed-ack": 2},
    ]


async def test_deliver_all_does_not_send_again_a_failed_record_the_topic_already_has(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record the broker wrote just before it went away fails without an acknowledgement;
    sent again from here it would be written twice (the producer's idempotence covers only its
    own retries). `landed` reads the topic back and names the ones it has."""
    monkeypatch.setattr(sink_module, "RETRY_S", 0.0)
    topic: list[bytes] = []  # what the broker wrote
    attempts: dict[bytes, int] = {}

    async def publish(key: bytes | None, value: bytes) -> asyncio.Future[None]:
        attempts[value] = attempts.get(value, 0) + 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if value == b"written-then-failed" and attempts[value] == 1:
            topic.append(value)
            future.set_exception(RuntimeError("NotLeaderForPartition (simulated, written)"))
        elif value == b"lost" and attempts[value] == 1:
            future.set_exception(RuntimeError("KafkaTimeoutError (simulated, not written)"))
        else:
            topic.append(value)
            future.set_result(None)
        return future

    async def landed(failed: Sequence[tuple[Any, ...]]) -> set[int]:
        return {index for index, (_, value) in enumerate(failed) if value in topic}

    records = [(None, b"fine"), (None, b"written-then-failed"), (None, b"lost")]
    await deliver_all(records, publish, "dead letter", landed)
    assert sorted(topic) == [b"fine", b"lost", b"written-then-failed"]  # each once
    assert attempts == {b"fine": 1, b"written-then-failed": 1, b"lost": 2}


async def test_deliver_in_order_sends_again_from_the_first_failure_so_the_newest_lands_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Snapshots of one account go to a compacted topic: after a failure the broker must end
    with the newest one, so the failed record and every one after it are sent again, in order."""
    monkeypatch.setattr(sink_module, "RETRY_S", 0.0)
    landed: list[bytes] = []  # what the broker acknowledged, in order
    attempts: dict[bytes, int] = {}

    async def publish(topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        attempts[value] = attempts.get(value, 0) + 1
        if value == b"v2" and attempts[value] == 1:
            raise RuntimeError("KafkaTimeoutError (simulated, at send)")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if value == b"v1" and attempts[value] == 1:
            future.set_exception(RuntimeError("NotLeaderForPartition (simulated, at ack)"))
        else:
            future.set_result(None)
            landed.append(value)
        return future

    renewed: list[list[bytes]] = []  # what had landed when the producer id was renewed
    records = [("health", b"acme", value) for value in (b"v0", b"v1", b"v2", b"v3")]
    await deliver_in_order(records, publish, "snapshots", lambda: renewed.append(list(landed)))
    assert landed == [b"v0", b"v3", b"v1", b"v2", b"v3"]  # v3 again after v1 and v2: newest last
    assert attempts == {b"v0": 1, b"v1": 2, b"v2": 2, b"v3": 2}
    assert renewed == [[b"v0", b"v3"]]  # once, after the failed attempt


# -- a failure outside one message's handling ends the process ------------------------------------


async def _batches(*batches: Sequence[Any]) -> AsyncIterator[Sequence[Any]]:
    for batch in batches:
        yield batch


async def test_an_error_in_the_agent_calls_on_failure_instead_of_stopping_quietly() -> None:
    seen: list[Sequence[Any]] = []
    failures: list[tuple[str, BaseException]] = []

    async def process(batch: Sequence[Any]) -> None:
        if batch == ["boom"]:
            raise ValueError("kaput")
        seen.append(batch)

    await consume(
        _batches(["a"], ["boom"], ["never"]), process, lambda what, exc: failures.append((what, exc))
    )
    assert seen == [["a"]]
    assert [(what, str(exc)) for what, exc in failures] == [("the scoring agent", "kaput")]


async def test_a_cancelled_agent_is_not_a_failure() -> None:
    failures: list[str] = []

    async def process(batch: Sequence[Any]) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await consume(_batches(["a"]), process, lambda what, exc: failures.append(what))
    assert not failures


async def test_an_error_in_a_timer_calls_on_failure() -> None:
    failures: list[str] = []

    async def work() -> None:
        raise OSError("redis went away")

    await guarded("releasing held messages", work, lambda what, exc: failures.append(f"{what}: {exc}"))
    assert failures == ["releasing held messages: redis went away"]


def test_fatal_logs_the_reason_and_exits_with_a_non_zero_code() -> None:
    script = (
        "from streamer.logs import configure_logging\n"
        "from streamer.stream.app import fatal\n"
        "configure_logging('info')\n"
        "fatal('the scoring agent', RuntimeError('disk on fire'))\n"
        "print('still running')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == EXIT_FAILED
    assert b"still running" not in done.stdout
    lines = [orjson.loads(line) for line in done.stderr.splitlines() if line.startswith(b"{")]
    assert any(
        "the scoring agent failed; the worker exits" in str(line.get("message", line.get("msg")))
        and "disk on fire" in orjson.dumps(line).decode()
        for line in lines
    ), done.stderr.decode()


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        ("RuntimeError('disk on fire')", "restart it: it resumes from the committed offsets"),
        # a restart meets the same record again: "restart it" sent operators round a crash loop
        ("StateDecodeError('clocks table key x: ...')", "a restart meets it again"),
    ],
)
def test_fatal_says_whether_a_restart_helps(error: str, advice: str) -> None:
    script = (
        "from streamer.logs import configure_logging\n"
        "from streamer.state.codec import StateDecodeError\n"
        "from streamer.stream.app import fatal\n"
        "configure_logging('info')\n"
        f"fatal('the scoring agent', {error})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == EXIT_FAILED
    assert advice in done.stderr.decode(), done.stderr.decode()


def test_a_stuck_shutdown_ends_the_process_after_the_grace_period() -> None:
    """The SIGTERM watchdog: a shutdown that waits for ever still ends, with a logged reason."""
    script = (
        "import logging, time\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from streamer.stream.app import exit_after\n"
        "exit_after(0.3)\n"
        "time.sleep(3600)\n"
        "raise SystemExit(3)\n"
    )
    # Without the watchdog the sleep outlasts the run's bound (a TimeoutExpired): no timing here.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "did not finish within 0.3 s; exiting now" in done.stderr
