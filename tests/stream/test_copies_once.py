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
from streamer.stream.topics import RECORD_OVERHEAD_BYTES
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
        copy(world, 3, usage("late-3", LATE), b"1:2"),  # not an origin
        copy(world, 4, usage("late-3", LATE), b"1:2"),
        copy(world, 5, usage("late-4", LATE), f"{SOURCE}:17:18".encode()),  # a floor past its origin
        copy(world, 6, usage("late-4", LATE), f"{SOURCE}:17:18".encode()),
        copy(world, 7, usage("late-5", LATE), b"1024:17:10"),  # no topic has that many partitions
        copy(world, 8, usage("late-5", LATE), b"1024:17:10"),
    ]
    await feed(world, forged)
    assert [letter["offset"] for letter in world.sink.dead_letters] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [letter.get("rerouted_from") for letter in world.sink.dead_letters] == [
        {"partition": SOURCE, "offset": 17},
        {"partition": SOURCE, "offset": 17},
        *[None] * 6,
    ]
    assert world.scorer.counters.copies_again == 0


async def test_a_keyless_message_on_its_accounts_own_partition_is_dead_lettered_once() -> None:
    """A keyless message is re-routed even where it already is on its account's partition (the
    copy carries the key): its origin names that partition."""
    world = World()
    await feed(world, [world.event(USAGE, 0, usage("now-1", RECENT))])
    keyless = Message(USAGE, PARTITION, 1, None, usage("late-1", LATE), time.time(), GENERATION)
    await feed(world, [FakeEvent(keyless, world.acks, world.journal)])
    [(_, key, value, to)] = world.sink.reroutes
    assert (key, to) == (ACCOUNT.encode(), PARTITION) and world.sink.origins == [f"{PARTITION}:1:1".encode()]
    await feed(
        world, [copy(world, 2, value, world.sink.origins[0]), copy(world, 3, value, world.sink.origins[0])]
    )
    [letter] = world.sink.dead_letters
    assert letter["offset"] == 2 and letter["rerouted_from"] == {"partition": PARTITION, "offset": 1}
    assert world.scorer.counters.copies_again == 1


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
    clocks = DyingClocks(first.journal)
    first.clocks = first.scorer.clocks_table = clocks
    late, origin = usage("late-1", LATE), f"{SOURCE}:17:10".encode()
    await feed(first, [first.event(USAGE, 0, usage("now-1", RECENT))])
    clocks.armed = True
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


async def test_the_origin_header_counts_in_the_copys_size() -> None:
    """A copy the input topic would refuse is sent again for ever: its header counts too."""
    world = World()
    world.offsets.owned = {(topic, p) for topic in TOPICS.values() for p in range(SETTINGS.partitions)}
    value = usage("big-1", RECENT)
    world.scorer.input_record_limit = len(ACCOUNT) + len(value) + RECORD_OVERHEAD_BYTES + 5
    keyless = Message(USAGE, SOURCE, 0, None, value, time.time(), GENERATION)
    world.offsets.ends = {tp: 0 for tp in world.offsets.owned} | {(USAGE, SOURCE): 1}
    await world.scorer.process([FakeEvent(keyless, world.acks, world.journal)])
    assert not world.sink.reroutes
    [letter] = world.sink.dead_letters
    assert "larger than the input topic takes" in letter["error"]


async def test_a_checkpoint_drops_the_origins_below_the_floor_of_a_copy_it_covers() -> None:
    world = World()
    await feed(world, [copy(world, 0, usage("a", RECENT), f"{SOURCE}:17:10".encode())])
    listed = decode_partition(world.clocks[f"clock-{PARTITION}"]).copies.sources[(USAGE, SOURCE)]
    assert (listed.floor, listed.origins) == (10, [17])
    await feed(world, [copy(world, 1, usage("b", RECENT), f"{SOURCE}:30:20".encode())])
    listed = decode_partition(world.clocks[f"clock-{PARTITION}"]).copies.sources[(USAGE, SOURCE)]
    assert (listed.floor, listed.origins) == (20, [30])


async def test_a_topic_created_again_forgets_the_copies_listed_for_it() -> None:
    """Its offsets start over: a new message at an old origin is not the copy listed there."""
    first = World()
    late, origin = usage("late-1", LATE), f"{SOURCE}:17:10".encode()
    await feed(first, [first.event(USAGE, 0, usage("now-1", RECENT)), copy(first, 1, late, origin)])
    again = World(restarted_from=first)
    again.offsets.ends[(USAGE, PARTITION)] = 1  # created again: one message so far, re-imported
    await again.scorer.process([copy(again, 0, late, origin)])
    assert [letter["offset"] for letter in again.sink.dead_letters] == [0]  # the clock stayed at March
    assert (again.scorer.counters.accepted, again.scorer.counters.copies_again) == (0, 0)
