"""A re-routed copy sent twice is handled once (`streamer/state/copies.py`).

A worker killed after sending the keyed copy of a keyless (or misrouted) message and before its
checkpoint reads the message again on restart and sends a second copy, with the same origin
header and bytes. The account's partition must handle the second as the first was handled: a good
event applied once, a bad one dead-lettered once. A header alone decides nothing: another message
naming the same origin is handled as any message is.
"""

from __future__ import annotations

import time

import orjson
import pytest

from streamer.contract.outputs import DeadLetter
from streamer.partitioning import partition_of
from streamer.state.codec import decode_partition
from streamer.stream.origin import Origin, decode_origin
from tests.fixtures import FakeEvent, Message
from tests.stream.test_dead_letters_once import DyingClocks, Killed
from tests.stream.world import (
    ACCOUNT,
    GENERATION,
    PARTITION,
    SETTINGS,
    TOPICS,
    USAGE,
    World,
    usage_record,
)

SOURCE = (PARTITION + 1) % SETTINGS.partitions  # where the keyless messages were written
LATE, RECENT = "2024-01-01T10:00:00Z", "2024-03-01T10:00:00Z"


def copy(world: World, offset: int, value: bytes, origin: bytes | None, topic: str = USAGE) -> FakeEvent:
    """A message in the account's partition, keyed by the account, with this origin header."""
    message = Message(
        topic, PARTITION, offset, ACCOUNT.encode(), value, time.time(), GENERATION, origin=origin
    )
    return FakeEvent(message, world.acks, world.journal)


def usage(event_id: str, when: str) -> bytes:
    return orjson.dumps({"event_id": event_id, **usage_record(ACCOUNT, when)})


async def feed(world: World, events: list[FakeEvent], topic: str = USAGE) -> None:
    world.offsets.ends[(topic, PARTITION)] = events[-1].message.offset + 1
    await world.scorer.process(events)


async def test_a_late_events_copy_sent_twice_is_dead_lettered_once() -> None:
    world = World()
    late = usage("late-1", LATE)
    origin = f"{SOURCE}:17:10".encode()
    await feed(world, [world.event(USAGE, 0, usage("now-1", RECENT))])
    await feed(world, [copy(world, 1, late, origin), copy(world, 2, late, origin)])
    assert [letter["offset"] for letter in world.sink.dead_letters] == [1]
    [letter] = world.sink.dead_letters
    assert "too late" in letter["error"]
    assert letter["rerouted_from"] == {"partition": SOURCE, "offset": 17}  # where the producer wrote it
    DeadLetter.model_validate(letter)
    assert world.scorer.counters.copies_again == 1
    assert [ack[1] for ack in world.acks] == [0, 1, 2]  # the second is acknowledged as handled


async def test_a_good_events_copy_sent_twice_is_applied_once_and_not_counted_a_duplicate() -> None:
    world = World()
    good = usage("good-1", RECENT)
    origin = f"{SOURCE}:3:0".encode()
    await feed(world, [copy(world, 0, good, origin), copy(world, 1, good, origin)])
    counters = world.scorer.counters
    assert (counters.accepted, counters.duplicates, counters.copies_again) == (1, 0, 1)
    assert not world.sink.dead_letters


async def test_another_message_naming_the_same_origin_is_handled_as_any_message() -> None:
    """A producer can write the header: it cannot make the worker skip a different message."""
    world = World()
    origin = f"{SOURCE}:17:10".encode()
    await feed(world, [world.event(USAGE, 0, usage("now-1", RECENT))])
    forged = [
        copy(world, 1, usage("late-1", LATE), origin),
        copy(world, 2, usage("late-2", LATE), origin),  # other bytes, the same origin
        copy(world, 3, usage("late-3", LATE), f"{PARTITION}:17:10".encode()),  # its own partition
        copy(world, 4, usage("late-3", LATE), f"{PARTITION}:17:10".encode()),
        copy(world, 5, usage("late-4", LATE), b"1:2"),  # not an origin
        copy(world, 6, usage("late-4", LATE), b"1:2"),
    ]
    await feed(world, forged)
    assert [letter["offset"] for letter in world.sink.dead_letters] == [1, 2, 3, 4, 5, 6]
    assert [letter.get("rerouted_from") for letter in world.sink.dead_letters] == [
        {"partition": SOURCE, "offset": 17},
        {"partition": SOURCE, "offset": 17},
        None,  # its own partition: not a copy
        None,
        None,  # not an origin
        None,
    ]
    assert world.scorer.counters.copies_again == 0


async def test_the_copies_handled_are_stored_with_the_partition_record_and_outlive_a_restart() -> None:
    first = World()
    late, origin = usage("late-1", LATE), f"{SOURCE}:17:10".encode()
    await feed(first, [first.event(USAGE, 0, usage("now-1", RECENT)), copy(first, 1, late, origin)])
    stored = decode_partition(first.clocks[f"clock-{PARTITION}"]).copies
    assert list(stored.sources) == [(USAGE, SOURCE)] and stored.sources[(USAGE, SOURCE)].origins == [17]

    second = World(restarted_from=first)
    second.offsets.ends[(USAGE, PARTITION)] = 2  # read from the committed offset
    await feed(second, [copy(second, 2, late, origin)])
    assert not second.sink.dead_letters and second.scorer.counters.copies_again == 1


async def test_a_copy_handled_by_a_worker_killed_before_its_checkpoint_is_handled_again() -> None:
    """Nothing lost: the listing is durable only with the offsets of the copies it lists."""
    first = World()
    first.clocks = DyingClocks(first.journal)
    first.scorer.clocks_table = first.clocks
    late, origin = usage("late-1", LATE), f"{SOURCE}:17:10".encode()
    await feed(first, [first.event(USAGE, 0, usage("now-1", RECENT))])
    assert isinstance(first.clocks, DyingClocks)
    first.clocks.armed = True
    with pytest.raises(Killed):
        await feed(first, [copy(first, 1, late, origin)])

    second = World(restarted_from=first)
    await feed(second, [copy(second, 1, late, origin), copy(second, 2, late, origin)])
    assert [letter["offset"] for letter in second.sink.dead_letters] == [1]
    assert second.scorer.counters.copies_again == 1


async def test_a_copy_names_its_origin_and_the_floor_its_partitions_durable_record_lists() -> None:
    """The floor is the source partition's durable record's mark for the topic: it moves when a
    checkpoint writes that record (a batch that applied something there)."""
    world = World()
    world.offsets.owned = {(topic, p) for topic in TOPICS.values() for p in range(SETTINGS.partitions)}

    def written(offset: int, key: bytes | None, value: bytes) -> FakeEvent:
        return FakeEvent(
            Message(USAGE, SOURCE, offset, key, value, time.time(), GENERATION), world.acks, world.journal
        )

    world.offsets.ends = {tp: 0 for tp in world.offsets.owned} | {(USAGE, SOURCE): 1}
    await world.scorer.process([written(0, None, usage("k0", RECENT))])
    stranger = next(
        f"acct-{n}" for n in range(1000) if partition_of(f"acct-{n}", SETTINGS.partitions) == SOURCE
    )
    world.offsets.ends[(USAGE, SOURCE)] = 3
    await world.scorer.process(
        [written(1, stranger.encode(), orjson.dumps({"event_id": "s1", **usage_record(stranger, RECENT)}))]
    )  # applied at the source: its record lists offsets 0 and 1
    await world.scorer.process([written(2, None, usage("k2", RECENT))])
    assert [to for _, _, _, to in world.sink.reroutes] == [PARTITION, PARTITION]
    assert [decode_origin(raw) for raw in world.sink.origins] == [Origin(SOURCE, 0, 0), Origin(SOURCE, 2, 2)]
