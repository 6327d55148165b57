"""Each rejected message is dead-lettered once, even when the worker dies after its dead letter
reached Kafka and before the checkpoint recorded the message as handled (`dead_letters.py`).

A fake dead-letter topic stands in for Kafka: letters reach it when the sink flushes (the
checkpoint's first step), and a restarted worker reads it back from the stored position.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.contract.dead_letter import dead_letter_record
from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream import sink as sink_module
from streamer.stream.access import KafkaAccess
from streamer.stream.app import create_app
from streamer.stream.dead_letters import (
    KafkaDeadLetters,
    Ledger,
    PositionDecodeError,
    decode_position,
    encode_position,
    position_key,
)
from streamer.stream.scorer import Scorer
from streamer.stream.sink import KafkaSink
from tests.fixtures import FakeEvent, FakeSink, Message
from tests.stream.world import GENERATION, PARTITION, SETTINGS, USAGE, World


class DeadLetterTopic:
    """The dead-letter topic: partition p holds input partition p's letters."""

    def __init__(self) -> None:
        self.partitions: dict[int, list[dict[str, Any]]] = {}
        self.reads: list[tuple[int, int, int]] = []  # (partition, from, records returned)

    def partition_for(self, source_partition: int) -> int | None:
        return source_partition

    async def read(self, source_partition: int, start: int) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        log = self.partitions.get(source_partition, [])
        found = [(at, letter) for at, letter in enumerate(log) if at >= start]
        self.reads.append((source_partition, start, len(found)))
        return found, len(log)

    async def end(self, source_partition: int) -> int:
        return len(self.partitions.get(source_partition, []))

    def places(self) -> list[tuple[str, int, int]]:
        return [(d["topic"], d["partition"], d["offset"]) for log in self.partitions.values() for d in log]


class TopicSink(FakeSink):
    """Dead letters reach the topic when flushed, like the worker's sink."""

    def __init__(self, topic: DeadLetterTopic, journal: list[str]) -> None:
        super().__init__(journal)
        self.topic = topic
        self.queued: list[dict[str, Any]] = []

    def dead_letter(self, record: dict[str, Any]) -> None:
        super().dead_letter(record)
        self.queued.append(record)

    async def flush(self) -> None:
        await super().flush()
        for record in self.queued:
            self.topic.partitions.setdefault(record["partition"], []).append(record)
        self.queued.clear()


class Killed(Exception):
    """The worker dies here (SIGKILL): nothing after this step happens."""


class DyingClocks(dict[str, bytes]):
    """A clocks table whose owner is killed when it writes its next partition record."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal, self.armed = journal, False

    def __setitem__(self, key: str, value: bytes) -> None:
        if self.armed and key.startswith("clock-"):
            self.armed = False
            raise Killed(key)
        self.journal.append(f"write {key}")
        super().__setitem__(key, value)


def worker(topic: DeadLetterTopic, restarted_from: World | None = None) -> World:
    """A worker whose scorer reads dead letters back; over the tables of `restarted_from`."""
    world = World(restarted_from)
    if restarted_from is None:
        world.clocks = DyingClocks(world.journal)
    world.sink = TopicSink(topic, world.journal)
    world.scorer = Scorer(
        SETTINGS, ScoreConfig(), world.accounts, world.clocks, world.sink, world.offsets, dead_letters=topic
    )
    return world


async def test_a_worker_killed_between_the_dead_letter_and_its_checkpoint_does_not_write_it_again() -> None:
    topic = DeadLetterTopic()
    first = worker(topic)
    first.offsets.ends[(USAGE, PARTITION)] = 2
    batch = [first.event(USAGE, 0, b"{not json"), first.usage(1)]
    assert isinstance(first.clocks, DyingClocks)
    first.clocks.armed = True
    with pytest.raises(Killed):
        await first.scorer.process(batch)
    assert topic.places() == [(USAGE, PARTITION, 0)]  # the dead letter is in Kafka
    assert [event.acked for event in batch] == [0, 0]  # nothing acknowledged, nothing committed

    # The restarted worker reads both messages again from the committed offset (0).
    second = worker(topic, restarted_from=first)
    second.offsets.ends[(USAGE, PARTITION)] = 2
    again = [second.event(USAGE, 0, b"{not json"), second.event(USAGE, 1, batch[1].message.value)]
    await second.scorer.process(again)
    assert [event.acked for event in again] == [1, 1]
    assert topic.places() == [(USAGE, PARTITION, 0)], "the dead letter was written twice"
    assert second.scorer.counters.dead_letters_known == 1
    # The valid message's account record was written before the kill: a known re-read.
    assert second.scorer.counters.reread == 1 and second.scorer.counters.accepted == 0


async def test_a_batch_of_only_bad_messages_acknowledged_but_not_committed_is_dead_lettered_once() -> None:
    topic = DeadLetterTopic()
    first = worker(topic)
    bad = [first.event(USAGE, 0, b"[]"), first.event(USAGE, 1, b"null")]
    await first.scorer.process(bad)
    assert [event.acked for event in bad] == [1, 1]
    assert f"clock-{PARTITION}" in first.clocks  # nothing applied, but a record lists them

    # Killed before the commit thread committed the acknowledgements: read again from 0.
    second = worker(topic, restarted_from=first)
    second.offsets.ends[(USAGE, PARTITION)] = 2  # the partition holds the two messages
    await second.scorer.process([second.event(USAGE, 0, b"[]"), second.event(USAGE, 1, b"null")])
    assert sorted(topic.places()) == [(USAGE, PARTITION, 0), (USAGE, PARTITION, 1)]
    assert second.scorer.counters.reread == 2  # handled before, by the record


async def test_a_batch_of_only_bad_messages_whose_record_was_lost_is_dead_lettered_once() -> None:
    """The same, killed after the dead letters reached Kafka and before the partition record
    was written: the dead-letter topic, read back, says they were written."""
    topic = DeadLetterTopic()
    first = worker(topic)
    assert isinstance(first.clocks, DyingClocks)
    first.clocks.armed = True
    with pytest.raises(Killed):
        await first.scorer.process([first.event(USAGE, 0, b"[]"), first.event(USAGE, 1, b"null")])

    second = worker(topic, restarted_from=first)
    second.offsets.ends[(USAGE, PARTITION)] = 2
    await second.scorer.process([second.event(USAGE, 0, b"[]"), second.event(USAGE, 1, b"null")])
    assert sorted(topic.places()) == [(USAGE, PARTITION, 0), (USAGE, PARTITION, 1)]
    assert second.scorer.counters.dead_letters_known == 2


async def test_a_message_read_again_below_the_offset_faust_says_is_committed_is_dead_lettered_once() -> None:
    """faust's view of the committed offset can be ahead of where the consumer reads from: the
    acknowledgements of the checkpoint at a revocation land after faust cleared its records of
    the partition, and are committed in the next generation, after the consumer sought back to
    the older committed offset. The message is read again; its dead letter is not written again."""
    topic = DeadLetterTopic()
    first = worker(topic)
    bad = [first.event(USAGE, 0, b"[]")]
    assert isinstance(first.clocks, DyingClocks)
    first.clocks.armed = True  # its record is lost: only the dead-letter topic knows of it
    with pytest.raises(Killed):
        await first.scorer.process(bad)  # a batch of only a bad message
    assert topic.places() == [(USAGE, PARTITION, 0)]

    second = worker(topic, restarted_from=first)  # the same partition in the next generation
    second.offsets.restarts[(USAGE, PARTITION)] = 1  # committed meanwhile, after the seek to 0
    second.offsets.ends[(USAGE, PARTITION)] = 1
    await second.scorer.process([second.event(USAGE, 0, b"[]")])
    assert topic.places() == [(USAGE, PARTITION, 0)], "the dead letter was written twice"
    assert second.scorer.counters.dead_letters_known == 1


async def test_the_position_moves_past_covered_dead_letters_so_a_restart_reads_only_newer_ones() -> None:
    topic = DeadLetterTopic()
    first = worker(topic)
    first.offsets.ends[(USAGE, PARTITION)] = 4
    await first.scorer.process([first.event(USAGE, 0, b"[]"), first.usage(1), first.event(USAGE, 2, b"1")])
    stored = first.clocks[position_key(PARTITION)]
    assert decode_position(stored) == 2  # both letters are covered by the partition record
    await first.scorer.process([first.usage(3)])

    second = worker(topic, restarted_from=first)
    second.offsets.restarts[(USAGE, PARTITION)] = 4
    second.offsets.ends[(USAGE, PARTITION)] = 5
    await second.scorer.process([second.event(USAGE, 4, b"[1]")])
    assert topic.reads[-1] == (PARTITION, 2, 0)  # nothing before the position was read back
    assert len(topic.places()) == 3 and second.scorer.counters.dead_letters_known == 0


async def test_a_letter_naming_an_offset_past_its_partitions_end_holds_no_position() -> None:
    """A record in the dead-letter topic that names an input offset not yet written (forged, or
    from before the input topic was created again) was kept until the partition record covered
    it, which it never does: the position stayed there, and every takeover read back from it."""
    topic = DeadLetterTopic()
    topic.partitions[PARTITION] = [{"topic": USAGE, "partition": PARTITION, "offset": 10**12}]
    first = worker(topic)
    first.offsets.ends[(USAGE, PARTITION)] = 3
    await first.scorer.process([first.usage(0), first.event(USAGE, 1, b"[]"), first.usage(2)])
    assert first.scorer.ledgers[PARTITION].earlier == {}
    assert decode_position(first.clocks[position_key(PARTITION)]) == 2  # past both letters
    assert topic.places() == [(USAGE, PARTITION, 10**12), (USAGE, PARTITION, 1)]


def test_a_position_record_of_another_format_is_refused_with_what_to_do() -> None:
    assert decode_position(encode_position(12345)) == 12345
    with pytest.raises(ValueError, match="delete the key from the clocks table"):
        decode_position(b"\x02" + bytes(8))


async def test_an_unreadable_position_record_names_its_key() -> None:
    """The error said "delete the key from the clocks table" without saying which key."""
    first = worker(DeadLetterTopic())
    first.clocks[position_key(PARTITION)] = b"\x07"
    first.offsets.ends[(USAGE, PARTITION)] = 1
    with pytest.raises(PositionDecodeError, match=rf"clocks table key '{position_key(PARTITION)}': "):
        await first.scorer.process([first.usage(0)])


def test_a_ledger_forgets_what_the_partition_record_covers() -> None:
    ledger = Ledger(0, earlier={("t", 5): 0, ("t", 9): 1}, mine={("t", 7)})
    assert ledger.known("t", 5) and ledger.known("t", 7) and not ledger.known("t", 6)
    assert ledger.forget(lambda topic, offset: offset < 8)
    assert ledger.earlier == {("t", 9): 1} and not ledger.mine
    assert not ledger.forget(lambda topic, offset: offset < 8)


async def test_the_worker_sink_does_not_write_again_a_dead_letter_the_broker_wrote_before_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker wrote a dead letter and went away before acknowledging it (a broker restart):
    the sink reads the partition back from where it ended before the send and does not send
    that letter again; a letter the broker did not write is sent again."""
    monkeypatch.setattr(sink_module, "RETRY_S", 0.0)
    settings = Settings(app_id="hs-test", data_dir=tmp_path)
    app = create_app(settings, ScoreConfig(), store="memory://")
    topic = DeadLetterTopic()
    topic.partitions[3] = [{"topic": USAGE, "partition": 3, "offset": 1}]  # older: before the send
    sink = KafkaSink(app, settings, topic)
    attempts: dict[int, int] = {}

    async def publish(
        key: bytes | None, value: bytes, partition: int | None, place: object
    ) -> asyncio.Future[None]:
        letter = orjson.loads(value)
        offset = letter["offset"]
        attempts[offset] = attempts.get(offset, 0) + 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if attempts[offset] == 1 and offset == 7:  # written, then the broker went away
            topic.partitions.setdefault(partition or 0, []).append(letter)
            future.set_exception(RuntimeError("NotLeaderForPartition (simulated, written)"))
        elif attempts[offset] == 1 and offset == 8:  # never reached the broker
            future.set_exception(RuntimeError("KafkaTimeoutError (simulated, not written)"))
        else:
            topic.partitions.setdefault(partition or 0, []).append(letter)
            future.set_result(None)
        return future

    monkeypatch.setattr(sink, "_publish_dead_letter", publish)
    for offset in (6, 7, 8):
        letter = dead_letter_record(b"{", topic=USAGE, partition=3, offset=offset, key=b"a", error="bad")
        sink.dead_letter(letter)
    await sink.flush()

    assert sorted(offset for _, _, offset in topic.places()) == [1, 6, 7, 8]  # each once
    assert attempts == {6: 1, 7: 1, 8: 2}


async def test_a_partition_fed_only_bad_messages_moves_its_record_and_dead_letter_position() -> None:
    """Only a partition that applied something got a partition record at a checkpoint: one fed
    nothing but bad messages kept every dead letter it wrote in memory (`Ledger.mine`), its
    position never moved, and a restart read all of them back."""
    topic = DeadLetterTopic()
    first = worker(topic)
    first.offsets.ends[(USAGE, PARTITION)] = 50
    for batch in range(5):
        await first.scorer.process([first.event(USAGE, batch * 10 + n, b"{not json") for n in range(10)])
        ledger = first.scorer.ledgers[PARTITION]
        assert (len(ledger.mine), ledger.position) == (0, 10 * (batch + 1))
    assert len(topic.places()) == 50 and f"clock-{PARTITION}" in first.clocks

    restarted = worker(topic, restarted_from=first)
    restarted.offsets.ends[(USAGE, PARTITION)] = 51
    restarted.offsets.restarts[(USAGE, PARTITION)] = 50
    event = restarted.usage(50)
    await restarted.scorer.process([event])
    assert topic.reads[-1] == (PARTITION, 50, 0)  # nothing to read back
    assert event.acked == 1 and restarted.scorer.counters.reread == 0


async def test_the_dead_letter_topic_is_asked_one_request_at_a_time() -> None:
    """The batch, the sink's check after a failed send and the checkpoint ask it from their own
    tasks, over one client that a read assigns, seeks and unsubscribes."""
    log_ = KafkaDeadLetters(KafkaAccess.of(SETTINGS), "cs.deadletter")
    inside: list[int] = []
    overlaps: list[tuple[int, int]] = []

    async def request(number: int) -> int:
        overlaps.extend((other, number) for other in inside)
        inside.append(number)
        await asyncio.sleep(0.01)
        inside.remove(number)
        return number

    asked = [log_._retrying(lambda number=number: request(number)) for number in range(3)]
    assert await asyncio.gather(*asked) == [0, 1, 2]
    assert overlaps == []


async def test_bad_messages_on_a_partition_added_to_an_input_topic_keep_no_ledger() -> None:
    """A partition an operator added under the worker (beyond HEALTHSTREAM_PARTITIONS) has no
    partition record to move its dead-letter position: a ledger of it only grew, with every dead
    letter written, and every assignment read its dead-letter partition back from 0."""
    topic = DeadLetterTopic()
    world = worker(topic)
    added = SETTINGS.partitions + 1
    world.offsets.owned.add((USAGE, added))
    world.offsets.ends[(USAGE, added)] = 2
    bad = [
        FakeEvent(Message(USAGE, added, n, b"acme", b"{not json", 0.0, GENERATION), world.acks)
        for n in range(2)
    ]
    await world.scorer.process(bad)
    assert added not in world.scorer.ledgers and not topic.reads
    assert len(topic.places()) == 2 and [event.acked for event in bad] == [1, 1]
