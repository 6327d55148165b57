"""`Scorer`: stale and repeated deliveries, watermark holds and idleness, dead letters, stalled
partitions and rebalances, over plain dicts, list sinks and a fake consumer (no broker)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from streamer.core.clock import to_ms
from streamer.core.engine import Clock
from streamer.partitioning import partition_of
from streamer.state.codec import StateDecodeError, decode_account_record, decode_partition, encode_partition
from streamer.state.partition import AppliedOffsets, PartitionRecord
from streamer.stream import accounts as accounts_module
from streamer.stream import reach as reach_module
from streamer.stream import scorer as scorer_module
from streamer.stream import stalls as stalls_module
from streamer.stream.counters import Counters
from tests.fixtures import FakeSink
from tests.stream.world import (
    ACCOUNT,
    GENERATION,
    OTHER,
    OTHER_PARTITION,
    PARTITION,
    SETTINGS,
    SUBS,
    SURVEYS,
    T1,
    T2,
    TICKETS,
    USAGE,
    World,
    started_record,
    usage_record,
)


def one_checkpoint(*acks: str) -> list[str]:
    """The journal of one checkpoint of the account's partition: outputs in Kafka, then the
    account (in Kafka too), then the partition record, then the acknowledgements."""
    return [
        "flush",
        f"write {ACCOUNT}",
        "changelog written",
        f"write clock-{PARTITION}",
        "changelog written",
        *acks,
    ]


@pytest.fixture(params=[False, True], ids=["waiting", "overlapping"])
def world(request: pytest.FixtureRequest) -> World:
    return World(overlap=request.param)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The scorer's monotonic clock, moved by hand: `clock[0] += seconds`."""
    now = [1000.0]
    fake_time = SimpleNamespace(monotonic=lambda: now[0], time=time.time, perf_counter=time.perf_counter)
    for module in (scorer_module, reach_module, stalls_module):
        monkeypatch.setattr(module, "time", fake_time)
    return now


async def test_a_usage_message_with_every_other_topic_at_its_end_is_applied_and_acked(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    event = world.usage(0)
    await world.scorer.process([event])
    assert event.acked == 1
    assert world.scorer.counters.accepted == 1 and world.scorer.counters.processed == 1
    assert [s["account_id"] for s in world.sink.snapshots] == [ACCOUNT]
    assert ACCOUNT in world.accounts and f"clock-{PARTITION}" in world.clocks
    # Outputs in Kafka, then the accounts (in Kafka too), then the partition record, then the ack:
    # a recovered partition record never lists an offset whose account write was lost.
    assert world.journal == one_checkpoint(f"ack {USAGE}@0")


@pytest.mark.parametrize(
    ("times", "snapshots"),
    [
        # one UTC day, two local dates: one snapshot
        (["2024-03-04T23:00:00+11:00", "2024-03-03T23:30:00-13:00", "2024-03-04T13:00:00Z"], 1),
        # one local date, two UTC days: one snapshot each
        (["2024-03-04T01:00:00+02:00", "2024-03-04T03:00:00+02:00"], 2),
    ],
)
async def test_a_batch_publishes_a_snapshot_per_changed_account_and_utc_day(
    world: World, times: list[str], snapshots: int
) -> None:
    """Days are UTC days, as everywhere in event time: split by each event's own offset, a
    producer alternating +11:00 and -13:00 had every event publish a snapshot."""
    world.offsets.ends[(USAGE, PARTITION)] = len(times)
    await world.scorer.process([world.usage(offset, when) for offset, when in enumerate(times)])
    assert len(world.sink.snapshots) == snapshots


# -- 1. stale deliveries -------------------------------------------------------------------------


async def test_a_message_of_a_partition_not_owned_is_neither_applied_nor_acked(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    foreign = world.usage(0, account=OTHER)  # OTHER's partition is not assigned to this worker
    own = world.usage(0)
    await world.scorer.process([foreign, own])
    assert foreign.acked == 0 and own.acked == 1
    counters = world.scorer.counters
    assert counters.stale == 1 and counters.processed == 1 and counters.accepted == 1
    assert OTHER not in world.accounts
    assert [s["account_id"] for s in world.sink.snapshots] == [ACCOUNT]
    assert OTHER_PARTITION not in world.scorer.merges


async def test_a_message_fetched_in_an_older_generation_is_neither_applied_nor_acked(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    old = world.usage(0, generation=GENERATION - 1)
    await world.scorer.process([old])
    assert old.acked == 0
    assert world.scorer.counters.stale == 1 and world.scorer.counters.processed == 0
    assert not world.applied() and world.sink.flushes == 0

    current = world.usage(0)  # the same offset read again in this generation counts
    await world.scorer.process([current])
    assert current.acked == 1 and old.acked == 0
    assert world.scorer.counters.accepted == 1 and world.scorer.counters.stale == 1


# -- 2. the same offset delivered twice ----------------------------------------------------------


async def test_an_applied_message_delivered_again_is_not_applied_or_acked_again(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    first = world.usage(0)
    await world.scorer.process([first])
    snapshots = len(world.sink.snapshots)
    again = world.event(USAGE, 0, first.message.value)  # a re-read delivers offset 0 once more
    await world.scorer.process([again])
    assert first.acked == 1 and again.acked == 0
    counters = world.scorer.counters
    assert counters.stale == 1 and counters.processed == 1
    assert counters.accepted == 1 and counters.duplicates == 0
    assert len(world.sink.snapshots) == snapshots


async def test_a_held_message_delivered_again_is_released_once(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.ends[(SUBS, PARTITION)] = 6  # subscriptions@5 is still to come: usage waits
    held = world.usage(0)
    await world.scorer.process([held])
    assert held.acked == 0
    again = world.event(USAGE, 0, held.message.value)
    await world.scorer.process([again, world.started(5)])
    assert held.acked == 1 and again.acked == 0
    assert world.acks == [(SUBS, 5), (USAGE, 0)]
    counters = world.scorer.counters
    assert counters.stale == 1 and counters.accepted == 2 and counters.duplicates == 0


# -- 3. watermark holds and idle topics ----------------------------------------------------------


@pytest.mark.parametrize(("end", "released"), [(5, True), (6, False)])
async def test_a_topic_with_nothing_delivered_holds_the_others_until_the_broker_says_it_is_at_its_end(
    world: World, end: int, released: bool
) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.restarts[(SUBS, PARTITION)] = 5  # consumption (re)started at offset 5
    world.offsets.ends[(SUBS, PARTITION)] = end
    event = world.usage(0)
    await world.scorer.process([event])
    assert event.acked == (1 if released else 0)
    assert world.applied() is released
    assert len(world.scorer.merges[PARTITION]) == (0 if released else 1)


async def test_held_messages_are_released_in_event_time_order_across_topics(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.ends[(SUBS, PARTITION)] = 6
    usage = world.usage(0, T2)
    await world.scorer.process([usage])
    assert usage.acked == 0 and not world.applied()
    await world.scorer.release_idle()  # nothing changed: still held
    assert usage.acked == 0 and not world.applied()

    subscription = world.started(5, T1)  # older than the usage, delivered after it
    await world.scorer.process([subscription])
    assert world.acks == [(SUBS, 5), (USAGE, 0)]
    assert world.scorer.counters.accepted == 2


async def hold_five_usage_events_for_subscriptions(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five usage events held in the merge until subscriptions@5 comes; releases of two at most."""
    monkeypatch.setattr(scorer_module, "RELEASE_MAX", 2)
    world.offsets.ends[(USAGE, PARTITION)] = 5
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.ends[(SUBS, PARTITION)] = 6
    days = [f"2024-03-0{day}T10:00:00Z" for day in range(2, 7)]
    await world.scorer.process([world.usage(offset, when) for offset, when in enumerate(days)])


async def test_a_large_release_is_applied_in_several_checkpoints_in_order(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hold_five_usage_events_for_subscriptions(world, monkeypatch)
    assert not world.acks
    await world.scorer.process([world.started(5, "2024-03-01T09:00:00Z")])
    # Six messages ready at once: three checkpoints of two, each acknowledged after its writes.
    assert world.acks == [(SUBS, 5), (USAGE, 0), (USAGE, 1), (USAGE, 2), (USAGE, 3), (USAGE, 4)]
    assert world.scorer.counters.batches == 3 and world.scorer.counters.accepted == 6
    assert [entry for entry in world.journal if entry.startswith(("write clock", "ack"))] == [
        f"write clock-{PARTITION}",
        f"ack {SUBS}@5",
        f"ack {USAGE}@0",
        f"write clock-{PARTITION}",
        f"ack {USAGE}@1",
        f"ack {USAGE}@2",
        f"write clock-{PARTITION}",
        f"ack {USAGE}@3",
        f"ack {USAGE}@4",
    ]
    record = decode_partition(world.clocks[f"clock-{PARTITION}"])
    assert all(record.offsets.contains(USAGE, offset) for offset in range(5))


async def test_a_rebalance_waiting_for_a_large_release_gets_it_at_the_next_checkpoint(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hold_five_usage_events_for_subscriptions(world, monkeypatch)
    flush, revoked = world.sink.flush, []

    async def flush_while_a_rebalance_begins() -> None:
        if not revoked:  # the rebalance starts during the first checkpoint and waits for the lock
            revoked.append(asyncio.create_task(world.scorer.revoked()))
            await asyncio.sleep(0)
        await flush()

    monkeypatch.setattr(world.sink, "flush", flush_while_a_rebalance_begins)
    await world.scorer.process([world.started(5, "2024-03-01T09:00:00Z")])
    await revoked[0]
    # One checkpoint of two; the other four were never acknowledged: the next owner reads them.
    # Overlapping, the next two were applied while that checkpoint completed: the rebalance's
    # checkpoint makes them durable, and the last two are left.
    expected = [(SUBS, 5), (USAGE, 0)] + ([(USAGE, 1), (USAGE, 2)] if world.scorer.overlap else [])
    assert world.acks == expected
    assert world.scorer.paused and not world.scorer.revoking


async def test_release_idle_lets_go_once_the_holding_topic_reaches_its_end(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.ends[(SUBS, PARTITION)] = 6
    event = world.usage(0)
    await world.scorer.process([event])
    assert event.acked == 0
    world.offsets.restarts[(SUBS, PARTITION)] = 6  # e.g. reassigned after subscriptions@5 was committed
    await world.scorer.release_idle()
    assert event.acked == 1 and world.applied()


async def test_a_stale_fetcher_highwater_does_not_make_a_topic_idle(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.highwaters[(SUBS, PARTITION)] = 5  # the last fetch said subscriptions was caught up
    world.offsets.ends[(SUBS, PARTITION)] = 6  # but the broker has subscriptions@5 by now
    event = world.usage(0)
    await world.scorer.process([event])
    assert event.acked == 0 and not world.applied()
    assert (SUBS, PARTITION) in world.offsets.asked_ends


async def test_a_topic_the_fetcher_sees_behind_is_not_asked_about_and_holds(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.highwaters[(SUBS, PARTITION)] = 6  # visibly more to deliver
    world.offsets.ends[(SUBS, PARTITION)] = 5  # (would say idle if asked)
    event = world.usage(0)
    await world.scorer.process([event])
    assert event.acked == 0 and not world.applied()
    assert world.offsets.end_offsets_calls == 1
    assert (SUBS, PARTITION) not in world.offsets.asked_ends
    assert (USAGE, PARTITION) in world.offsets.asked_ends


def behind_a_transaction(world: World, records: int) -> None:
    """Subscriptions read to their last stable offset 5, with `records` of a transaction not yet
    committed after it (usage is at its end after offset 0)."""
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.highwaters[(SUBS, PARTITION)] = 5
    world.offsets.ends[(SUBS, PARTITION)] = 5
    world.offsets.open[(SUBS, PARTITION)] = records


async def test_a_topic_behind_a_transaction_still_committing_holds_its_partition(world: World) -> None:
    """A history published in transactions: one transaction's usage is delivered while its
    subscription, older in event time, is not committed yet on its partition (a transaction
    commits partition by partition). Idle by its last stable offset, subscriptions let the usage
    through, and their own events then came too late."""
    behind_a_transaction(world, 1)
    usage = world.usage(0)
    await world.scorer.process([usage])
    assert usage.acked == 0 and not world.applied()
    # The commit reaches subscriptions: its record at 5, the marker at 6, read past.
    world.offsets.open.clear()
    world.offsets.ends[(SUBS, PARTITION)] = world.offsets.highwaters[(SUBS, PARTITION)] = 7
    world.offsets.read[(SUBS, PARTITION)] = (6, 7)
    await world.scorer.process([world.started(5)])
    assert world.acks == [(SUBS, 5), (USAGE, 0)]  # the older subscription first


async def test_a_topic_behind_an_aborted_transaction_lets_its_partition_go_once_read_past_it(
    world: World,
) -> None:
    behind_a_transaction(world, 1)
    usage = world.usage(0)
    await world.scorer.process([usage])
    assert usage.acked == 0
    # Aborted: the record at 5 and the abort marker at 6, which the consumer read past.
    world.offsets.open.clear()
    world.offsets.ends[(SUBS, PARTITION)] = world.offsets.highwaters[(SUBS, PARTITION)] = 7
    world.offsets.read[(SUBS, PARTITION)] = (5, 7)
    await world.scorer.release_idle()
    assert usage.acked == 1 and world.applied()


async def test_a_transaction_left_open_holds_its_partition_for_a_bounded_time(
    world: World, clock: list[float]
) -> None:
    behind_a_transaction(world, 1)  # a producer that began a transaction and hangs
    usage = world.usage(0)
    await world.scorer.process([usage])
    clock[0] += reach_module.OPEN_TRANSACTION_WAIT_S - 0.1
    await world.scorer.release_idle()
    assert usage.acked == 0 and not world.applied()
    clock[0] += 0.2
    await world.scorer.release_idle()
    assert usage.acked == 1 and world.applied()


async def test_committed_records_the_fetcher_has_not_seen_hold_their_partition_past_the_wait(
    world: World, clock: list[float]
) -> None:
    """Only a transaction not yet committed is waited for a bounded time: a committed record the
    fetcher has not fetched yet (its last stable offset as the fetcher saw it is older) is
    waited for as long as it takes, as before."""
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.highwaters[(SUBS, PARTITION)] = 5  # the fetcher's figure
    world.offsets.ends[(SUBS, PARTITION)] = 6  # the broker's: a committed record at 5
    usage = world.usage(0)
    await world.scorer.process([usage])
    clock[0] += 2 * reach_module.OPEN_TRANSACTION_WAIT_S
    await world.scorer.release_idle()
    assert usage.acked == 0 and not world.applied()
    assert (SUBS, PARTITION) in world.offsets.asked_log_ends


async def test_nothing_is_idle_when_the_broker_does_not_answer(world: World) -> None:
    world.offsets.ends.clear()  # end_offsets answers {} (e.g. the broker is unreachable)
    event = world.usage(0)
    await world.scorer.process([event])
    assert event.acked == 0 and not world.applied()


# -- 4. dead letters -----------------------------------------------------------------------------


async def test_an_invalid_message_is_dead_lettered_acked_and_moves_its_topic_on(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.ends[(SUBS, PARTITION)] = 6
    usage = world.usage(0)
    await world.scorer.process([usage])
    assert usage.acked == 0  # held for subscriptions@5

    bad = world.event(SUBS, 5, b"{not json")
    await world.scorer.process([bad])
    assert bad.acked == 1
    [record] = world.sink.dead_letters
    assert (record["topic"], record["partition"], record["offset"]) == (SUBS, PARTITION, 5)
    assert record["original"] == "{not json" and "JSON" in record["error"]
    assert world.scorer.merges[PARTITION].next_offset[SUBS] == 6
    # subscriptions' last message was bad, it is at its end: the usage goes through
    assert usage.acked == 1 and world.applied()
    assert world.acks == [(SUBS, 5), (USAGE, 0)]
    counters = world.scorer.counters
    assert counters.rejected == 1 and counters.accepted == 1 and counters.processed == 2


async def test_a_bad_message_alone_is_acked_and_only_the_partition_record_lists_it(world: World) -> None:
    """No account is written and nothing is published; the partition record lists the message
    as handled, so that its dead letter need not be remembered (`test_dead_letters_once.py`)."""
    bad = world.event(USAGE, 0, b"[]")
    await world.scorer.process([bad])
    assert bad.acked == 1 and len(world.sink.dead_letters) == 1
    assert not world.accounts and not world.sink.snapshots
    assert decode_partition(world.clocks[f"clock-{PARTITION}"]).offsets.contains(USAGE, 0)


# -- 5. stalled partitions -----------------------------------------------------------------------


async def test_a_silent_partition_with_a_backlog_is_read_again_from_its_next_offset(world: World) -> None:
    offsets = world.offsets
    changelog = ("healthstream-accounts-changelog", PARTITION)
    offsets.owned.add(changelog)
    offsets.ends[changelog] = 9  # not an input topic: never sought, whatever its offsets
    offsets.restarts[(SUBS, PARTITION)] = 5
    offsets.ends[(SUBS, PARTITION)] = 7  # backlog, nothing delivered since the assignment
    offsets.restarts[(TICKETS, PARTITION)] = 3
    offsets.ends[(TICKETS, PARTITION)] = 3  # at its end: nothing to read again
    offsets.ends[(USAGE, PARTITION)] = 10
    offsets.restarts[(USAGE, PARTITION)] = 3
    await world.scorer.process([world.usage(3)])  # usage delivered just now: not silent

    world.scorer.stalls.assigned_at -= stalls_module.STALL_S + 1
    await world.scorer.reread_stalled()
    assert offsets.seeks == [(SUBS, PARTITION, 5)]
    assert world.scorer.counters.rereads == 1

    await world.scorer.reread_stalled()  # just checked: not again before STALL_S more
    assert offsets.seeks == [(SUBS, PARTITION, 5)]
    assert world.scorer.counters.rereads == 1


async def test_a_stalled_topic_is_sought_to_the_offset_after_the_last_one_delivered(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stalls_module, "STALL_S", -1.0)  # everything counts as silent
    offsets = world.offsets
    offsets.ends[(USAGE, PARTITION)] = 10
    offsets.restarts[(USAGE, PARTITION)] = 3  # not where it resumes: offset 3 was delivered
    await world.scorer.process([world.usage(3)])
    await world.scorer.reread_stalled()
    assert offsets.seeks == [(USAGE, PARTITION, 4)]
    assert world.scorer.counters.rereads == 1


async def test_partitions_that_delivered_recently_are_not_sought(world: World) -> None:
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.ends[(SUBS, PARTITION)] = 7
    await world.scorer.reread_stalled()  # just assigned: not silent for STALL_S yet
    assert world.offsets.seeks == [] and world.scorer.counters.rereads == 0
    assert world.offsets.end_offsets_calls == 0


async def test_time_spent_on_a_long_batch_is_not_silence(
    world: World, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    world.scorer.stalls.assigned_at = clock[0]
    offsets = world.offsets
    offsets.restarts[(SUBS, PARTITION)] = 5
    offsets.ends[(SUBS, PARTITION)] = 7  # a backlog: its fetches wait while the scorer works
    offsets.ends[(USAGE, PARTITION)] = 10
    end_offsets = offsets.end_offsets

    async def slow_end_offsets(tps: Any) -> Any:
        clock[0] += stalls_module.STALL_S + 5  # a busy machine: the batch takes that long
        return await end_offsets(tps)

    monkeypatch.setattr(offsets, "end_offsets", slow_end_offsets)
    offsets.restarts[(USAGE, PARTITION)] = 3
    await world.scorer.process([world.usage(3)])
    await world.scorer.reread_stalled()
    assert offsets.seeks == []  # the other partitions could not deliver while it ran

    clock[0] += stalls_module.STALL_S + 1  # then silent while the scorer waited: stalled
    await world.scorer.reread_stalled()
    assert sorted(offsets.seeks) == [(SUBS, PARTITION, 5), (USAGE, PARTITION, 4)]


async def test_nothing_is_read_again_during_a_rebalance_nor_just_after_it(world: World) -> None:
    world.offsets.restarts[(SUBS, PARTITION)] = 5
    world.offsets.ends[(SUBS, PARTITION)] = 7
    world.scorer.stalls.assigned_at -= stalls_module.STALL_S + 1
    world.offsets.rebalancing = True  # a table recovery can take longer than STALL_S
    await world.scorer.reread_stalled()
    world.offsets.rebalancing = False
    await world.scorer.reread_stalled()  # silence is counted from the end of the rebalance
    assert world.offsets.seeks == [] and world.offsets.end_offsets_calls == 0


# -- 6. rebalances -------------------------------------------------------------------------------


async def test_messages_held_at_a_rebalance_are_never_acked_afterwards(world: World) -> None:
    offsets = world.offsets
    offsets.ends[(USAGE, PARTITION)] = 1
    offsets.restarts[(SUBS, PARTITION)] = 5
    offsets.ends[(SUBS, PARTITION)] = 6
    held = world.usage(0)
    await world.scorer.process([held])
    assert held.acked == 0 and world.scorer.merges

    await world.scorer.revoked()
    assert world.scorer.merges == {} and world.scorer.engines == {} and world.scorer.stores == {}
    offsets.generation_id = GENERATION + 1
    await world.scorer.assigned()
    await world.scorer.release_idle()
    assert held.acked == 0

    # The consumer reads from the committed offsets again: the usage comes a second time.
    again = world.usage(0, generation=GENERATION + 1)
    subscription = world.started(5, generation=GENERATION + 1)
    await world.scorer.process([again, subscription])
    assert held.acked == 0
    assert again.acked == 1 and subscription.acked == 1
    assert world.scorer.counters.accepted == 2 and world.scorer.counters.stale == 0


async def test_nothing_is_applied_between_a_revocation_and_the_next_assignment(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 2
    await world.scorer.revoked()
    # Buffered from before the rebalance, still of the current generation: the consumer reads it
    # again after the assignment, so applying it now could only lose its table write.
    early = world.usage(0)
    await world.scorer.process([early])
    assert early.acked == 0 and not world.applied()
    assert world.scorer.counters.stale == 1 and world.scorer.counters.processed == 0

    await world.scorer.assigned()
    again = world.usage(0)
    await world.scorer.process([again])
    assert again.acked == 1 and world.scorer.counters.accepted == 1


async def test_nothing_is_read_from_the_tables_before_their_recovery_ended(world: World) -> None:
    """A delivery between an assignment and the end of its table recovery (faust resumes the
    partitions of an assignment whose recovery has not run when an earlier recovery ends late)
    must not read the partition's record: cached, it stood for the partition's state for the
    whole assignment. The recovery ends with a seek to the committed offsets: it comes again."""
    world.offsets.ends[(USAGE, PARTITION)] = 1
    await world.scorer.process([world.usage(0, T1)])
    restarted = World(restarted_from=world)
    restarted.offsets.ends[(USAGE, PARTITION)] = 2
    restarted.offsets.restarts[(USAGE, PARTITION)] = 1  # committed: where the seek goes
    stored = dict(restarted.clocks)
    restarted.clocks.clear()  # the store as a recovery that has not run yet leaves it
    restarted.offsets.rebalancing = True
    early = restarted.usage(1, T2)
    await restarted.scorer.process([early])
    assert early.acked == 0 and restarted.scorer.counters.stale == 1
    assert not restarted.scorer.records and not restarted.scorer.engines

    restarted.clocks.update(stored)  # the recovery ran
    restarted.offsets.rebalancing = False
    again = restarted.usage(1, T2)
    await restarted.scorer.process([again])
    assert again.acked == 1 and restarted.scorer.counters.accepted == 1


async def test_engines_are_rebuilt_from_the_tables_after_a_rebalance(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 2
    first = world.usage(0, T1)
    await asyncio.wait_for(world.scorer.process([first]), 5)
    before = world.scorer.engines[PARTITION]
    await world.scorer.revoked()
    await world.scorer.assigned()
    retried = world.event(USAGE, 1, first.message.value)  # a producer retry: same event id
    await world.scorer.process([retried])
    engine = world.scorer.engines[PARTITION]
    assert engine is not before
    assert ACCOUNT in engine.members
    assert engine.clock.stream_time == before.clock.stream_time  # the clock came from its table
    assert retried.acked == 1 and world.scorer.counters.duplicates == 1  # `seen` came from the table


# -- 7. re-reads after a restart or rebalance ----------------------------------------------------


async def test_a_message_re_read_after_a_restart_is_skipped_however_old_its_event_time(
    world: World,
) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 2
    early = world.usage(0, "2024-01-01T10:00:00Z")
    months_later = world.usage(1, "2024-03-01T10:00:00Z")  # early's id is forgotten by then
    await world.scorer.process([early, months_later])
    assert world.scorer.counters.accepted == 2 and not world.sink.dead_letters

    # Killed before committing: a new worker recovers the tables and reads both again.
    restarted = World(restarted_from=world)
    restarted.offsets.ends[(USAGE, PARTITION)] = 2
    again = [
        restarted.event(USAGE, 0, early.message.value),
        restarted.event(USAGE, 1, months_later.message.value),
    ]
    await restarted.scorer.process(again)
    assert [event.acked for event in again] == [1, 1]
    assert not restarted.sink.dead_letters, "an applied message re-read was dead-lettered as too late"
    counters = restarted.scorer.counters
    assert counters.reread == 2 and counters.processed == 0 and counters.accepted == 0
    assert not restarted.sink.snapshots

    fresh = restarted.usage(2, "2024-03-01T11:00:00Z")  # the next offset is processed as usual
    restarted.offsets.ends[(USAGE, PARTITION)] = 3
    await restarted.scorer.process([fresh])
    assert fresh.acked == 1 and restarted.scorer.counters.accepted == 1


async def test_an_offset_applied_while_an_older_one_was_held_is_recorded_above_the_mark(
    world: World,
) -> None:
    offsets = world.offsets
    offsets.ends[(USAGE, PARTITION)] = 5  # more to come on both: neither topic is idle
    offsets.ends[(SUBS, PARTITION)] = 5
    newer = world.usage(0, "2024-01-01T12:00:00Z")
    older = world.usage(1, "2024-01-01T10:00:00Z")
    subscription = world.started(0, "2024-01-01T11:00:00Z")
    await world.scorer.process([newer, older, subscription])
    assert (newer.acked, older.acked, subscription.acked) == (0, 1, 1)  # 12:00 waits for SUBS

    record = decode_partition(world.clocks[f"clock-{PARTITION}"])
    assert record.offsets.next[USAGE] == 0 and record.offsets.above[USAGE] == [1]
    assert record.offsets.next[SUBS] == 1 and SUBS not in record.offsets.above

    restarted = World(restarted_from=world)
    restarted.offsets.ends.update(offsets.ends)
    again = [
        restarted.event(USAGE, 0, newer.message.value),
        restarted.event(USAGE, 1, older.message.value),
        restarted.event(SUBS, 0, subscription.message.value),
    ]
    await restarted.scorer.process(again)
    counters = restarted.scorer.counters
    assert counters.reread == 2 and counters.processed == 1  # only the held one is new
    assert [event.acked for event in again] == [0, 1, 1]


async def test_a_delivery_that_skips_offsets_is_refused_and_the_skipped_ones_read_again(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Accepted, such a delivery moved the merge past offset 1: its re-delivery was then dropped
    as already delivered, and the partition record claimed it as handled (lost for good)."""
    world.offsets.ends[(USAGE, PARTITION)] = 3
    await world.scorer.process([world.usage(0, T1)])
    skipped, after = world.usage(1, T1), world.usage(2, T2)
    await world.scorer.process([after])  # offset 1 never came
    assert after.acked == 0 and world.scorer.counters.accepted == 1  # refused: not applied
    assert world.offsets.seeks == [(USAGE, PARTITION, 1)]  # read again from the skipped one
    assert world.scorer.counters.gap_rereads == 1 and world.scorer.counters.offset_gaps == 0
    [line] = [r for r in caplog.records if "skipped input offsets" in r.getMessage()]
    assert (line.topic, line.partition, line.to) == (USAGE, PARTITION, 1)  # type: ignore[attr-defined]
    record = decode_partition(world.clocks[f"clock-{PARTITION}"])
    assert not record.offsets.contains(USAGE, 1)

    again = world.event(USAGE, 2, after.message.value)
    await world.scorer.process([skipped, again])  # the partition read again from 1
    assert (skipped.acked, again.acked) == (1, 1) and world.scorer.counters.accepted == 3


async def test_offsets_the_consumer_read_across_without_a_record_are_taken_as_empty(world: World) -> None:
    """A transactional producer's commit marker takes an offset that no read delivers: the
    consumer's fetcher skips it, and says so (`follows`). Refused, the partition was read again
    from the marker for ever (a skipped delivery, every time)."""
    world.offsets.ends[(USAGE, PARTITION)] = 5
    await world.scorer.process([world.usage(0, T1), world.usage(1, T1, follows=1)])
    after = world.usage(3, T2, follows=2)  # offset 2: the marker the fetcher passed over
    await world.scorer.process([after])
    assert after.acked == 1 and world.offsets.seeks == []
    assert world.offsets.empty == [(USAGE, PARTITION, 2, 3)]  # commits may pass it
    assert world.scorer.counters.empty_offsets == 1 and world.scorer.counters.gap_rereads == 0


async def test_a_gap_the_consumer_cannot_vouch_for_is_read_again_and_taken_from_the_seek(
    world: World,
) -> None:
    """After faust's seeks the consumer does not know what it skipped: a gap is read again from
    its first offset (it may be a lost delivery), and the read from there vouches for it."""
    world.offsets.ends[(USAGE, PARTITION)] = 6
    await world.scorer.process([world.usage(0, T1)])
    await world.scorer.process([world.usage(4, T2, follows=3)])  # 3 is vouched for; 1 and 2 are not
    assert world.offsets.seeks == [(USAGE, PARTITION, 1)] and world.offsets.empty == []
    again = world.usage(4, T2, follows=1)  # read again from 1 (the seek): the first record is 4
    await world.scorer.process([again])
    assert again.acked == 1 and world.offsets.seeks == [(USAGE, PARTITION, 1)]
    assert world.offsets.empty == [(USAGE, PARTITION, 1, 4)]
    assert world.scorer.counters.empty_offsets == 3 and world.scorer.counters.gap_rereads == 1


async def test_a_delivery_fetched_before_the_seek_is_no_evidence_of_a_gap(world: World) -> None:
    """Records fetched before the partition was sought back can reach the scorer after it and
    skip the same offsets again. Taking that as proof that the offsets hold no record lost
    1,589 messages in a kill test with a transactional producer."""
    world.offsets.ends[(USAGE, PARTITION)] = 6
    await world.scorer.process([world.usage(0, T1)])
    await world.scorer.process([world.usage(4, T2)])
    queued = world.usage(4, T2)  # fetched before the seek: the consumer says nothing of 1..3
    await world.scorer.process([queued])
    assert queued.acked == 0 and world.offsets.seeks == [(USAGE, PARTITION, 1)] * 2
    assert world.offsets.empty == []


async def test_a_different_gap_after_a_re_read_is_read_again(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 6
    await world.scorer.process([world.usage(0, T1)])
    await world.scorer.process([world.usage(4, T2)])
    await world.scorer.process([world.usage(5, T2)])  # read again from 1, and 1..4 skipped now
    assert world.offsets.seeks == [(USAGE, PARTITION, 1), (USAGE, PARTITION, 1)]
    assert world.offsets.empty == []


async def test_a_trailing_marker_lets_its_topic_count_as_idle_and_be_committed(world: World) -> None:
    """A transaction's last record is followed by its marker: the end offset stays one past the
    last delivery, so the topic never reached its end and held every other topic's events of
    the partition for ever. The consumer read past the marker with nothing to hand over."""
    world.offsets.ends.update({(USAGE, PARTITION): 2, (SUBS, PARTITION): 1})
    started = world.started(0, T2)
    await world.scorer.process([world.usage(0, T1), started])
    assert started.acked == 0  # usage may still deliver something older
    world.offsets.read[(USAGE, PARTITION)] = (1, 2)  # handed up to 1, read up to 2
    await world.scorer.release_idle()
    assert started.acked == 1
    assert world.offsets.empty == [(USAGE, PARTITION, 1, 2)]


async def test_a_record_read_but_not_handed_over_yet_keeps_its_topic_busy(world: World) -> None:
    world.offsets.ends.update({(USAGE, PARTITION): 3, (SUBS, PARTITION): 1})
    started = world.started(0, T2)
    await world.scorer.process([world.usage(0, T1), started])
    world.offsets.read[(USAGE, PARTITION)] = (2, 3)  # offset 1 is on its way to the scorer
    await world.scorer.release_idle()
    assert started.acked == 0 and world.offsets.empty == []


async def test_a_first_delivery_past_the_restart_offset_is_refused_unless_the_state_has_the_rest(
    world: World,
) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 4
    world.offsets.restarts[(USAGE, PARTITION)] = 1
    first = world.usage(3, T1)
    await world.scorer.process([first])  # 1 and 2 never came since the assignment
    assert first.acked == 0 and world.offsets.seeks == [(USAGE, PARTITION, 1)]
    await world.scorer.process([world.usage(1, T1), world.usage(2, T1), world.usage(3, T1)])
    assert world.scorer.counters.accepted == 3

    restarted = World(restarted_from=world)  # offsets 1..3 are in the stored state now
    restarted.offsets.ends[(USAGE, PARTITION)] = 5
    restarted.offsets.restarts[(USAGE, PARTITION)] = 1  # the committed offset lags behind
    fresh = restarted.usage(4, T2)
    await restarted.scorer.process([fresh])
    assert fresh.acked == 1 and restarted.offsets.seeks == []


async def test_a_first_delivery_is_checked_against_the_stored_state_when_the_broker_cannot_be_asked(
    world: World,
) -> None:
    """Where consumption restarted comes from the broker (the group's committed offset, or the
    topic's start). While it could not be asked, the first delivery since an assignment was
    taken as following on whatever its offset, and the next partition record claimed every
    offset before it as handled: those messages were never applied, nor read again."""
    world.offsets.ends[(USAGE, PARTITION)] = 4
    await world.scorer.process([world.usage(0, T1)])
    restarted = World(restarted_from=world)  # its stored state has offset 0
    restarted.offsets.ends[(USAGE, PARTITION)] = 4
    restarted.offsets.restarts[(USAGE, PARTITION)] = None  # the broker did not answer
    first = restarted.usage(3, T1)  # 1 and 2 never came since the assignment
    await restarted.scorer.process([first])
    assert first.acked == 0 and restarted.offsets.seeks == [(USAGE, PARTITION, 1)]
    await restarted.scorer.process([restarted.usage(offset, T1) for offset in (1, 2, 3)])
    assert restarted.scorer.counters.accepted == 3


async def test_offsets_in_the_stored_state_are_acknowledged_when_a_delivery_passes_them(world: World) -> None:
    """A restart from a committed offset that is a transaction marker: the first delivery is
    the record after it, and the stored state already covers the marker's offset. Nothing
    delivers or acknowledges that offset, and the group's commit stayed there for good."""
    world.offsets.ends[(USAGE, PARTITION)] = 4
    await world.scorer.process(
        [world.usage(0, T1), world.usage(1, T1, follows=1), world.usage(3, T2, follows=2)]
    )
    restarted = World(restarted_from=world)
    restarted.offsets.ends[(USAGE, PARTITION)] = 4
    restarted.offsets.restarts[(USAGE, PARTITION)] = 2  # the group committed up to the marker
    again = restarted.usage(3, T2)  # the first record after it, applied before the restart
    await restarted.scorer.process([again])
    assert again.acked == 1 and restarted.offsets.seeks == []
    assert restarted.offsets.empty == [(USAGE, PARTITION, 2, 3)]


async def test_offsets_deleted_before_they_were_read_are_counted_and_logged_as_lost(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 10
    world.offsets.starts[(USAGE, PARTITION)] = 7  # retention deleted 0..6
    event = world.usage(7)
    await world.scorer.process([event])
    assert event.acked == 1 and world.offsets.seeks == []
    assert world.scorer.counters.offset_gaps == 1
    [line] = [r for r in caplog.records if r.getMessage() == "skipped an offset range"]
    assert (line.topic, line.partition, line.to) == (USAGE, PARTITION, 6)  # type: ignore[attr-defined]
    assert world.offsets.empty == [(USAGE, PARTITION, 0, 7)]  # else the group's commit stays at 0


async def test_an_unreadable_partition_record_stops_processing_with_the_key(world: World) -> None:
    world.clocks[f"clock-{PARTITION}"] = b"\x80\x05garbage"  # a pickle of an older version
    world.offsets.ends[(USAGE, PARTITION)] = 1
    with pytest.raises(StateDecodeError, match=rf"clock-{PARTITION}.*pickle.*rebuild the state"):
        await world.scorer.process([world.usage(0)])


async def test_a_damaged_peer_references_record_is_rebuilt_not_fatal(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache of what the accounts give: it stopped the worker with advice to rebuild every
    table from the input topics; a missing one was rebuilt all along."""
    world.clocks[f"peers-{PARTITION}"] = b"\x02 not msgpack at all"
    world.offsets.ends[(USAGE, PARTITION)] = 1
    await world.scorer.process([world.usage(0)])
    assert world.scorer.counters.processed == 1 and not world.sink.dead_letters
    assert "stored peer references cannot be read; they are rebuilt" in caplog.text


async def test_the_state_of_a_deployment_reading_other_topics_stops_processing_with_why(world: World) -> None:
    """A new topic prefix with the default app id: the other deployment's stream time and offsets
    were taken as this one's without a word, and every event of a new history dead-lettered."""
    theirs = PartitionRecord(Clock(stream_time=1, next_tick=2), AppliedOffsets(next={"old.usage": 9}))
    world.clocks[f"clock-{PARTITION}"] = encode_partition(theirs)
    world.offsets.ends[(USAGE, PARTITION)] = 1
    with pytest.raises(StateDecodeError, match=r"reads old.usage, not .*: .*give this deployment an app id"):
        await world.scorer.process([world.usage(0)])
    assert world.sink.dead_letters == []


async def test_a_re_read_is_recognised_by_its_account_record_when_the_partition_record_was_lost(
    world: World,
) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 2
    early = world.usage(0, "2024-01-01T10:00:00Z")
    months_later = world.usage(1, "2024-03-01T10:00:00Z")
    await world.scorer.process([early, months_later])
    # Killed after the account records reached Kafka, before the partition record did.
    del world.clocks[f"clock-{PARTITION}"]

    restarted = World(restarted_from=world)
    restarted.offsets.ends[(USAGE, PARTITION)] = 2
    again = [
        restarted.event(USAGE, 0, early.message.value),
        restarted.event(USAGE, 1, months_later.message.value),
    ]
    await restarted.scorer.process(again)
    assert [event.acked for event in again] == [1, 1]
    assert not restarted.sink.dead_letters and restarted.scorer.counters.reread == 2


async def test_re_reads_known_from_account_records_move_stream_time_as_they_did_before_the_kill(
    world: World,
) -> None:
    """The partition record (stream time) is written after the account records: a kill between
    the two restarted the partition at its older stream time, the re-read messages were skipped
    without moving it, and an event more than the allowed lateness behind them was applied where
    offline, and the worker without the kill, refuse it (the stream and offline then differ)."""
    overlap, worlds = world.scorer.overlap, []
    for killed in (False, True):
        world = World(overlap=overlap)
        world.offsets.ends[(SUBS, PARTITION)] = 1
        world.offsets.ends[(USAGE, PARTITION)] = 3
        start = world.started(0, "2024-01-01T10:00:00Z")
        months_later = world.usage(0, "2024-03-01T10:00:00Z")
        await world.scorer.process([start, months_later])
        late = world.usage(1, "2024-02-01T10:00:00Z").message.value  # 29 days behind, lateness 7
        if killed:
            del world.clocks[f"clock-{PARTITION}"]  # after the account records, before this one
            world = World(restarted_from=world, overlap=overlap)
            world.offsets.ends[(SUBS, PARTITION)] = 1
            world.offsets.ends[(USAGE, PARTITION)] = 3
            again = [
                world.event(SUBS, 0, start.message.value),
                world.event(USAGE, 0, months_later.message.value),
            ]
            await world.scorer.process(again)
            assert world.scorer.counters.reread == 2 and [event.acked for event in again] == [1, 1]
        await world.scorer.process([world.event(USAGE, 1, late)])
        worlds.append(world)
    for world in worlds:
        [letter] = world.sink.dead_letters
        assert "too late" in str(letter), letter
        assert world.scorer.engines[PARTITION].clock.stream_time == to_ms(
            datetime(2024, 3, 1, 10, tzinfo=UTC)
        )


async def test_accounts_restored_without_their_first_partition_record_are_re_scored_at_ticks(
    world: World,
) -> None:
    """Stopped after the account records of its first checkpoint reached Kafka and before its
    partition record did, a worker left accounts and no stream time. The next owner read their
    events again, which only move stream time, and never scheduled the accounts: their
    re-scorings at the midnights after (a silence alert, a band moving) went missing, or came at
    their next event with other ids. Seen with a worker that stood still (integration test)."""
    overlap = world.scorer.overlap
    names = (f"n{n}" for n in range(100))
    neighbour = next(name for name in names if partition_of(name, SETTINGS.partitions) == PARTITION)

    def history(into: World) -> tuple[list[Any], list[Any]]:
        """The same events in every world: a fresh world numbers its event ids from e1."""
        into.offsets.ends[(SUBS, PARTITION)] = 1
        into.offsets.ends[(USAGE, PARTITION)] = 8
        first = [into.started(0, "2024-01-01T10:00:00Z")]
        first += [into.usage(day - 1, f"2024-01-0{day}T10:00:00Z") for day in range(1, 6)]
        later = [
            into.event(USAGE, 5 + n, into.value(usage_record(neighbour, when)), account=neighbour)
            for n, when in enumerate(("2024-01-12T10:00:00Z", "2024-01-25T10:00:00Z", "2024-02-08T10:00:00Z"))
        ]
        return first, later

    uninterrupted = World(overlap=overlap)
    first, later = history(uninterrupted)
    await uninterrupted.scorer.process(first)
    await uninterrupted.scorer.process(later)
    mine = [alert for alert in uninterrupted.sink.alerts if alert["account_id"] == ACCOUNT]
    assert any(alert["raised_at"] > "2024-01-06" for alert in mine), "no re-scoring at a midnight alerted"
    expected = {alert["alert_id"] for alert in mine}

    stopped = World(overlap=overlap)
    first, later = history(stopped)
    await stopped.scorer.process(first)
    del stopped.clocks[f"clock-{PARTITION}"]  # after the account records, before this one
    restarted = World(restarted_from=stopped, overlap=overlap)
    first, later = history(restarted)
    await restarted.scorer.process(first)  # read again: known from the account record
    await restarted.scorer.process(later)
    assert restarted.scorer.counters.reread == len(first)
    sent = stopped.sink.alerts + restarted.sink.alerts
    assert {alert["alert_id"] for alert in sent if alert["account_id"] == ACCOUNT} == expected


async def test_an_input_topic_created_again_counts_its_messages_from_its_new_start(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The topic was deleted and created again while the state kept offsets 0..2 as applied:
    its new messages reuse those offsets and were skipped as re-reads, without a word."""
    world.offsets.ends[(USAGE, PARTITION)] = 3
    await world.scorer.process([world.usage(0, T1), world.usage(1, T1), world.usage(2, T2)])
    restarted = World(restarted_from=world)
    restarted._ids = 100  # new events (new event ids)
    restarted.offsets.ends[(USAGE, PARTITION)] = 1  # created again: one message so far
    fresh = restarted.usage(0, T2)
    await restarted.scorer.process([fresh])
    assert restarted.scorer.counters.reread == 0 and restarted.scorer.counters.processed == 1
    [line] = [r for r in caplog.records if "created again" in r.getMessage()]
    assert (line.topic, line.end, line.applied_to, line.accounts) == (USAGE, 1, 3, 1)  # type: ignore[attr-defined]
    assert restarted.offsets.configured == [USAGE]  # LogAppendTime again

    again = World(restarted_from=restarted)  # and the next restart reads it as applied
    again.offsets.ends[(USAGE, PARTITION)] = 1
    await again.scorer.process([again.event(USAGE, 0, fresh.message.value)])
    assert again.scorer.counters.reread == 1 and again.scorer.counters.processed == 0


async def test_an_input_topic_created_again_found_at_an_assignment_is_read_from_its_new_start(
    world: World,
) -> None:
    """Found at the first delivery after an assignment, the consumer was not told: faust had
    sought to the old topic's committed offset, read the new topic from there (its messages
    before it never read), dropped the acknowledgements below it and committed nothing, so the
    next assignment started there again."""
    world.offsets.ends[(USAGE, PARTITION)] = 5
    await world.scorer.process([world.usage(offset, T1) for offset in range(5)])
    restarted = World(restarted_from=world)
    restarted._ids = 100  # new events
    restarted.offsets.restarts[(USAGE, PARTITION)] = 2  # the old topic's committed offset
    restarted.offsets.ends[(USAGE, PARTITION)] = 3  # created again: three messages so far
    await restarted.scorer.process([restarted.usage(2, T2)])  # read from where faust sought
    assert restarted.offsets.started_over == [(USAGE, PARTITION)]  # the consumer forgets the old
    assert restarted.offsets.seeks == [(USAGE, PARTITION, 0)]  # and reads the new from its start
    assert restarted.scorer.counters.processed == 0


async def test_an_input_topic_created_again_while_read_is_read_from_its_new_start(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleted and created again under a running worker: the consumer sat past the new topic's
    end and faust dropped its records below the old read offset, so it stalled without a word."""
    monkeypatch.setattr(stalls_module, "STALL_S", -1.0)  # everything counts as silent
    offsets = world.offsets
    offsets.ends[(USAGE, PARTITION)] = 3
    await world.scorer.process([world.usage(0, T1), world.usage(1, T1), world.usage(2, T2)])
    offsets.ends[(USAGE, PARTITION)] = 1  # created again: one message so far
    await world.scorer.reread_stalled()
    assert offsets.started_over == [(USAGE, PARTITION)] and offsets.seeks == [(USAGE, PARTITION, 0)]
    assert offsets.configured == [USAGE]
    assert world.scorer.counters.rereads == 0
    world._ids = 100  # new events
    fresh = world.usage(0, T2)
    await world.scorer.process([fresh])
    assert fresh.acked == 1 and world.scorer.counters.stale == 0 and world.scorer.counters.reread == 0


async def test_an_input_topic_created_again_while_an_old_message_is_held_counts_from_its_new_start(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message of the old topic was held in the merge (another topic had older events to come)
    as the topic was found created again: the next checkpoint took its offset (10) as the mark
    of the new topic, whose offsets 0-9 were then skipped as applied before, without a word."""
    offsets, scorer = world.offsets, world.scorer
    offsets.ends[(USAGE, PARTITION)] = 11
    offsets.restarts[(USAGE, PARTITION)] = 10
    offsets.ends[(SUBS, PARTITION)] = 100  # a backlog: the subscriptions topic holds the merge
    held = world.usage(10, T2)
    await scorer.process([held])
    assert len(scorer.merges[PARTITION]) == 1
    monkeypatch.setattr(stalls_module, "STALL_S", -1.0)  # everything counts as silent
    offsets.ends[(USAGE, PARTITION)] = 3  # created again: three messages so far
    await scorer.reread_stalled()
    assert offsets.started_over == [(USAGE, PARTITION)] and len(scorer.merges[PARTITION]) == 0
    offsets.restarts[(USAGE, PARTITION)] = 0
    offsets.ends[(SUBS, PARTITION)] = 1
    world._ids = 100  # new events
    fresh = [world.usage(offset, T2) for offset in range(3)]
    await scorer.process([world.started(0, T1), *fresh])
    assert scorer.counters.reread == 0 and [event.acked for event in fresh] == [1, 1, 1]
    assert held.acked == 0  # the deleted topic's: no commit of offset 11 on the new one
    assert decode_partition(world.clocks[f"clock-{PARTITION}"]).offsets.contiguous_to(USAGE) == 3


async def test_an_input_topic_created_again_under_a_checkpoint_in_flight_acknowledges_the_old_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A checkpoint of old messages (5-7) was waiting for the broker as the topic was found
    created again: it completed after the consumer forgot the old topic, and acknowledged 5-7
    there, under the new topic's offsets (its commit then passed new messages never applied).
    The checkpoint in flight now completes first."""
    world, changelogs = overlapping()
    offsets, scorer = world.offsets, world.scorer
    offsets.ends[(USAGE, PARTITION)] = 8
    offsets.restarts[(USAGE, PARTITION)] = 5
    old = [world.usage(offset, T1) for offset in range(5, 8)]
    await asyncio.wait_for(scorer.process(old), 5)
    await asyncio.wait_for(changelogs.waiting.wait(), 5)  # its checkpoint waits for the broker
    acked_at_start_over: list[list[int]] = []
    forget = offsets.start_over
    monkeypatch.setattr(
        offsets,
        "start_over",
        lambda *args: (acked_at_start_over.append([e.acked for e in old]), forget(*args)),
    )
    monkeypatch.setattr(stalls_module, "STALL_S", -1.0)  # everything counts as silent
    offsets.ends[(USAGE, PARTITION)] = 2  # created again
    finding = asyncio.ensure_future(scorer.reread_stalled())
    for _ in range(20):
        await asyncio.sleep(0)
    changelogs.gate.set()
    await asyncio.wait_for(finding, 5)
    assert acked_at_start_over == [[1, 1, 1]]


async def test_a_topic_created_again_before_a_checkpoint_leaves_no_span_holding_the_partition(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old topic's messages of 1 January were forgotten before their checkpoint, and the span
    they had opened (`CHECKPOINT_SPAN`) stayed: a subscription of 1 February was held back with
    nothing to checkpoint, and the release looped for ever under the scorer's lock."""
    offsets, scorer = world.offsets, world.scorer
    scorer.checkpoint_every_s = 3600.0  # the batch stays pending
    offsets.ends[(USAGE, PARTITION)] = 3
    await scorer.process([world.usage(n, f"2024-01-01T1{n}:00:00Z") for n in range(3)])
    monkeypatch.setattr(stalls_module, "STALL_S", -1.0)  # everything counts as silent
    offsets.ends[(USAGE, PARTITION)] = 0  # created again, empty so far
    await scorer.reread_stalled()
    offsets.ends[(SUBS, PARTITION)] = 1
    later = world.started(0, "2024-02-01T10:00:00Z")
    await asyncio.wait_for(scorer.process([later]), 5)
    assert scorer.counters.accepted == 4 and scorer.engines[PARTITION].clock.stream_time == to_ms(
        datetime(2024, 2, 1, 10, tzinfo=UTC)
    )


async def test_an_input_topic_created_again_before_a_checkpoint_lists_none_of_its_old_offsets(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old messages applied since the last checkpoint as the topic was found created again:
    listed as handled by the next checkpoint, their offsets (5-7) hid the new topic's."""
    offsets, scorer = world.offsets, world.scorer
    scorer.checkpoint_every_s = 60.0  # the batch stays pending
    offsets.ends[(USAGE, PARTITION)] = 8
    offsets.restarts[(USAGE, PARTITION)] = 5
    old = [world.usage(offset, T1) for offset in range(5, 8)]
    await scorer.process(old)
    assert scorer.counters.accepted == 3 and f"clock-{PARTITION}" not in world.clocks
    monkeypatch.setattr(stalls_module, "STALL_S", -1.0)  # everything counts as silent
    offsets.ends[(USAGE, PARTITION)] = 2  # created again
    await scorer.reread_stalled()
    offsets.restarts[(USAGE, PARTITION)] = 0
    offsets.ends[(USAGE, PARTITION)] = 8
    scorer.checkpoint_every_s = 0.0
    world._ids = 100  # new events
    fresh = [world.usage(offset, T2) for offset in range(8)]
    await scorer.process(fresh)
    assert scorer.counters.reread == 0 and [event.acked for event in fresh] == [1] * 8
    assert [event.acked for event in old] == [0, 0, 0]  # the deleted topic's offsets
    stored = decode_partition(world.clocks[f"clock-{PARTITION}"]).offsets
    assert stored.contiguous_to(USAGE) == 8 and stored.applied_to(USAGE) == 8


async def three_old_messages_applied(world: World) -> None:
    """The old topic's messages 0-2, applied and checkpointed."""
    world.offsets.ends[(USAGE, PARTITION)] = 3
    await world.scorer.process([world.usage(offset, T1) for offset in range(3)])


async def read_after_a_kill(before: World) -> Counters:
    """The counters of a worker started over the tables `before` left (killed), once the new topic
    holds 5 messages (past the old offsets) with the new events' ids, after it read all 5."""
    killed = World(restarted_from=before)
    killed._ids = 100  # the new events' ids
    killed.offsets.ends[(USAGE, PARTITION)] = 5
    await killed.scorer.process([killed.usage(offset, T2) for offset in range(5)])
    return killed.scorer.counters


async def test_a_topic_found_created_again_is_checkpointed_at_once(world: World) -> None:
    """Found created again at a restart, the forgotten offsets stayed in memory until the
    partition's next checkpoint was due. Killed before it, with the new topic grown past the old
    offsets by the next start (so that nothing looked created again), its first messages were
    taken for the old ones applied before and skipped, without a word."""
    await three_old_messages_applied(world)
    restarted = World(restarted_from=world)
    restarted.scorer.checkpoint_every_s = 3600.0  # no checkpoint due by time
    restarted._ids = 100  # new events
    restarted.offsets.ends[(USAGE, PARTITION)] = 1  # created again: one message so far
    await restarted.scorer.process([restarted.usage(0, T2)])
    counters = await read_after_a_kill(restarted)
    assert (counters.reread, counters.processed) == (1, 4)


async def test_a_topic_found_created_again_with_its_message_held_is_checkpointed_at_once(
    world: World,
) -> None:
    """The same with the new topic's first message held in the merge (another topic has older
    events to come): nothing of the partition was applied, and its record not written."""
    await three_old_messages_applied(world)
    restarted = World(restarted_from=world)
    restarted._ids = 100  # new events
    restarted.offsets.ends[(SUBS, PARTITION)] = 100  # a backlog: the subscriptions topic holds the merge
    restarted.offsets.ends[(USAGE, PARTITION)] = 1  # created again: one message so far
    await restarted.scorer.process([restarted.usage(0, T2)])
    assert len(restarted.scorer.merges[PARTITION]) == 1
    counters = await read_after_a_kill(restarted)
    assert (counters.reread, counters.processed) == (0, 5)


async def test_a_topic_found_created_again_sets_the_groups_offset_to_its_start_after_its_record(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of the new topic acknowledged (its first message held), the group kept the old
    topic's committed offset (3) until a new message was: an assignment meanwhile sought there,
    and the new topic's messages 0-2 were never read, without a word."""
    await three_old_messages_applied(world)
    restarted = World(restarted_from=world)
    restarted._ids = 100  # new events
    restarted.offsets.ends[(SUBS, PARTITION)] = 100  # a backlog: the subscriptions topic holds the merge
    restarted.offsets.ends[(USAGE, PARTITION)] = 1  # created again: one message so far
    restarted.offsets.restarts[(USAGE, PARTITION)] = 3  # the old topic's committed offset
    stored_at_commit: list[int] = []
    commit = restarted.offsets.commit_start

    async def watched(topic: str, partition: int, offset: int) -> None:
        stored = decode_partition(restarted.clocks[f"clock-{PARTITION}"]).offsets
        stored_at_commit.append(stored.applied_to(USAGE))
        await commit(topic, partition, offset)

    monkeypatch.setattr(restarted.offsets, "commit_start", watched)
    await restarted.scorer.process([restarted.usage(0, T2)])
    assert restarted.offsets.commits == [(USAGE, PARTITION, 0)]
    assert stored_at_commit == [0]  # after the record that forgot the old offsets


async def test_a_topic_found_created_again_in_a_partition_that_delivered_nothing_is_checkpointed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the stall check in a partition with no delivery since the assignment (so no
    merge): its forced checkpoint was dropped, the record kept the old offsets, and the group's
    offset was never set to the new start."""
    await three_old_messages_applied(world)
    monkeypatch.setattr(stalls_module, "STALL_S", -1.0)  # everything counts as silent
    restarted = World(restarted_from=world)
    restarted.offsets.restarts[(USAGE, PARTITION)] = 3
    restarted.offsets.read[(USAGE, PARTITION)] = (3, 3)
    restarted.offsets.ends[(USAGE, PARTITION)] = 0  # created again, empty so far
    await restarted.scorer.reread_stalled()
    assert decode_partition(restarted.clocks[f"clock-{PARTITION}"]).offsets.applied_to(USAGE) == 0
    assert restarted.offsets.commits == [(USAGE, PARTITION, 0)]


async def test_a_topic_found_created_again_while_read_is_checkpointed_at_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same when found by the stall check of a running worker: its old offsets stayed in the
    stored partition record until a message of the new topic was checkpointed."""
    monkeypatch.setattr(stalls_module, "STALL_S", -1.0)  # everything counts as silent
    await three_old_messages_applied(world)
    world.offsets.ends[(USAGE, PARTITION)] = 1  # created again: one message so far
    await world.scorer.reread_stalled()
    counters = await read_after_a_kill(world)
    assert (counters.reread, counters.processed) == (0, 5)


async def test_a_restart_with_the_topic_as_it_was_reads_applied_messages_as_re_reads(world: World) -> None:
    world.offsets.ends[(USAGE, PARTITION)] = 2
    first = world.usage(0, T1)
    await world.scorer.process([first, world.usage(1, T2)])
    restarted = World(restarted_from=world)
    restarted.offsets.ends[(USAGE, PARTITION)] = 2
    await restarted.scorer.process([restarted.event(USAGE, 0, first.message.value)])
    assert restarted.scorer.counters.reread == 1  # the end equals what was applied: not created again


# -- 8. the projection of quiet partitions ---------------------------------------------------------


async def test_every_owned_partition_gets_its_engine_without_a_delivery(world: World) -> None:
    """A restarted worker re-stages the Redis projection of each partition it has an engine for:
    a partition that receives nothing new must get one too (it may hold snapshots a killed
    worker staged and never wrote)."""
    world.offsets.ends[(USAGE, PARTITION)] = 1
    await world.scorer.process([world.usage(0, T1)])
    restarted = World(restarted_from=world)
    assert not restarted.scorer.engines
    restarted.offsets.rebalancing = True
    await restarted.scorer.open_assigned()
    assert not restarted.scorer.engines  # not during a rebalance (the tables recover then)
    restarted.offsets.rebalancing = False
    await restarted.scorer.open_assigned()
    assert set(restarted.scorer.engines) == {PARTITION}
    assert ACCOUNT in restarted.scorer.engines[PARTITION].members
    assert not restarted.acks and not restarted.sink.snapshots  # nothing applied or published
    await restarted.scorer.revoked()
    await restarted.scorer.open_assigned()
    assert not restarted.scorer.engines  # nor between a revocation and the next assignment


# -- 9. an orderly stop ------------------------------------------------------------------------------


class GatedSink(FakeSink):
    """A sink whose flush waits until the test opens the gate (a broker taking its time)."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__(journal)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def flush(self) -> None:
        self.waiting.set()
        await self.gate.wait()
        await super().flush()


async def test_a_message_held_at_a_stop_is_not_applied_by_a_batch_after_it(world: World) -> None:
    """The stop's checkpoint is the last write: a message the merge still holds then (waiting for
    another topic) is read again at the next start, even if a later call finds it ready. Applied
    after the stop, it wrote to the tables and the producer while faust closed them (the
    shutdown watchdog ended the worker), after the local stores were declared consistent."""
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.ends[(SUBS, PARTITION)] = 1  # a subscriptions message not delivered yet
    held = world.usage(0)
    await world.scorer.process([held])
    assert held.acked == 0 and not world.sink.snapshots  # held for the subscriptions topic
    await world.scorer.stop()
    journal = list(world.journal)
    world.offsets.ends[(SUBS, PARTITION)] = 0  # the subscriptions topic turns out to be idle
    await world.scorer.process([])
    await world.scorer.release_idle()
    assert world.journal == journal and held.acked == 0 and not world.sink.snapshots


async def test_stop_leaves_the_batch_in_flight_unacknowledged_and_applies_nothing_after(world: World) -> None:
    """SIGTERM mid-batch: the batch writes no table and acknowledges nothing once it is told to
    stop (faust closes the tables next), and stop() returns only when the batch has left."""
    world.sink = world.scorer.sink = GatedSink(world.journal)
    world.offsets.ends[(USAGE, PARTITION)] = 2
    event = world.usage(0)
    batch = asyncio.create_task(world.scorer.process([event]))
    await world.sink.waiting.wait()  # the batch waits for the broker to take its outputs
    stopping = asyncio.create_task(world.scorer.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # waits for the batch in flight
    world.sink.gate.set()
    await asyncio.wait_for(asyncio.gather(batch, stopping), 5)
    journal = list(world.journal)  # the batch completed while the tables were open

    later = world.usage(1)
    await world.scorer.process([later])
    await world.scorer.release_idle()
    await world.scorer.assigned()  # a rebalance callback during the shutdown changes nothing
    await world.scorer.process([world.usage(1)])
    assert later.acked == 0 and world.journal == journal


# -- 10. checkpoints less often than batches (the worker's `checkpoint_every_s`) ----------------------


async def test_between_checkpoints_a_batch_sends_its_outputs_and_keeps_its_state_for_the_next(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]  # the scorer's clock: a busy machine must not make the checkpoint due early
    fake_time = SimpleNamespace(monotonic=lambda: clock[0], time=time.time, perf_counter=time.perf_counter)
    monkeypatch.setattr(scorer_module, "time", fake_time)
    world.scorer.checkpoint_every_s = 0.2
    world.offsets.ends[(USAGE, PARTITION)] = 2
    first, second = world.usage(0, T1), world.usage(1, T2)
    await world.scorer.process([first])
    await world.scorer.process([second])
    # Each batch's outputs are in Kafka at once; no account, partition record or acknowledgement.
    assert world.journal == ["flush", "flush"]
    assert len(world.sink.snapshots) == 2 and first.acked == second.acked == 0
    assert not world.accounts and not world.clocks
    await world.scorer.release_idle()  # not due yet
    assert first.acked == 0
    clock[0] += 0.25
    await world.scorer.release_idle()  # due: both batches in one checkpoint
    assert first.acked == second.acked == 1
    assert world.journal[2:] == [
        "flush",
        f"write {ACCOUNT}",
        "changelog written",
        f"write clock-{PARTITION}",
        "changelog written",
        f"ack {USAGE}@0",
        f"ack {USAGE}@1",
    ]
    record = decode_partition(world.clocks[f"clock-{PARTITION}"])
    assert record.offsets.contains(USAGE, 0) and record.offsets.contains(USAGE, 1)


async def test_a_rebalance_or_a_stop_makes_the_batches_since_the_last_checkpoint_durable(
    world: World,
) -> None:
    world.scorer.checkpoint_every_s = 60.0
    world.offsets.ends[(USAGE, PARTITION)] = 2
    before_rebalance, before_stop = world.usage(0, T1), world.usage(1, T2)
    await world.scorer.process([before_rebalance])
    assert before_rebalance.acked == 0
    await world.scorer.revoked()
    assert before_rebalance.acked == 1 and ACCOUNT in world.accounts
    await world.scorer.assigned()
    await world.scorer.process([before_stop])
    assert before_stop.acked == 0
    await world.scorer.stop()
    assert before_stop.acked == 1
    assert decode_partition(world.clocks[f"clock-{PARTITION}"]).offsets.contains(USAGE, 1)


async def test_a_worker_killed_between_checkpoints_applies_those_batches_again_to_the_same_end(
    world: World,
) -> None:
    """Killed after two batches and no checkpoint: nothing of them was stored or acknowledged, so
    a new worker reads them again and ends with the state and the snapshots of a worker that
    checkpointed every batch (its outputs are sent twice, with the same contents)."""
    reference = World()  # a checkpoint per batch
    reference.offsets.ends[(USAGE, PARTITION)] = 3
    values = [reference.value({**usage, "occurred_at": when}) for usage, when in _three_usages()]
    for offset, value in enumerate(values):
        await reference.scorer.process([reference.event(USAGE, offset, value)])

    world.scorer.checkpoint_every_s = 60.0
    world.offsets.ends[(USAGE, PARTITION)] = 3
    await world.scorer.process([world.event(USAGE, 0, values[0])])
    await world.scorer.process([world.event(USAGE, 1, values[1])])
    assert not world.accounts and not world.acks  # killed here

    restarted = World(restarted_from=world)
    restarted.offsets.ends[(USAGE, PARTITION)] = 3
    for offset, value in enumerate(values):
        await restarted.scorer.process([restarted.event(USAGE, offset, value)])
    assert restarted.scorer.counters.accepted == 3 and restarted.scorer.counters.reread == 0
    assert restarted.accounts[ACCOUNT] == reference.accounts[ACCOUNT]
    assert restarted.sink.snapshots[-1] == reference.sink.snapshots[-1]
    assert world.sink.snapshots == reference.sink.snapshots[:2]  # the same outputs, sent again


def _three_usages() -> list[tuple[dict[str, Any], str]]:
    usage = {"event_type": "usage.recorded", "account_id": ACCOUNT, "user_id": "u1", "feature": "reports"}
    return [(usage, "2024-01-01T10:00:00Z"), (usage, "2024-01-01T12:00:00Z"), (usage, "2024-01-02T09:00:00Z")]


# -- 11. checkpoints that overlap the batches after them (the worker's `overlap`) --------------------


class GatedChangelogs:
    """The tables' changelogs, acknowledged by the broker once the test opens the gate (or failing)."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        self.error: Exception | None = None

    async def written(self) -> None:
        self.waiting.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.journal.append("changelog written")


def overlapping(restarted_from: World | None = None) -> tuple[World, GatedChangelogs]:
    world = World(restarted_from, overlap=True, settling=False)
    world.offsets.ends[(USAGE, PARTITION)] = 3
    changelogs = world.scorer.changelogs = GatedChangelogs(world.journal)
    return world, changelogs


async def test_overlapping_the_next_batch_is_applied_while_a_checkpoint_waits_and_stored_after_it() -> None:
    world, changelogs = overlapping()
    values = [world.value({**usage, "occurred_at": when}) for usage, when in _three_usages()]
    first, second = world.event(USAGE, 0, values[0]), world.event(USAGE, 1, values[1])
    # returns while its checkpoint waits for the broker
    await asyncio.wait_for(world.scorer.process([first]), 5)
    await asyncio.wait_for(changelogs.waiting.wait(), 5)
    assert first.acked == 0 and world.journal == ["flush", f"write {ACCOUNT}"]
    stored = decode_account_record(world.accounts[ACCOUNT])[1]

    applying = asyncio.create_task(world.scorer.process([second]))
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(world.sink.snapshots) == 2 and not applying.done()  # applied; its checkpoint waits
    assert first.acked == 0 and world.journal == ["flush", f"write {ACCOUNT}"]
    # The record in flight holds the state its checkpoint captured, not the batch applied since.
    assert stored.contains(USAGE, 0) and not stored.contains(USAGE, 1)

    changelogs.gate.set()
    await asyncio.wait_for(applying, 5)
    await world.scorer.settled()
    # the first checkpoint complete before the second is prepared
    assert world.journal == one_checkpoint(f"ack {USAGE}@0") + one_checkpoint(f"ack {USAGE}@1")
    assert decode_account_record(world.accounts[ACCOUNT])[1].contains(USAGE, 1)


async def test_overlapping_a_worker_killed_while_a_checkpoint_waits_ends_like_one_that_waited() -> None:
    reference = World()  # waits for every checkpoint
    reference.offsets.ends[(USAGE, PARTITION)] = 3
    values = [reference.value({**usage, "occurred_at": when}) for usage, when in _three_usages()]
    for offset, value in enumerate(values):
        await reference.scorer.process([reference.event(USAGE, offset, value)])

    world, changelogs = overlapping()
    await asyncio.wait_for(world.scorer.process([world.event(USAGE, 0, values[0])]), 5)
    applying = asyncio.create_task(world.scorer.process([world.event(USAGE, 1, values[1])]))
    await asyncio.wait_for(changelogs.waiting.wait(), 5)
    for _ in range(50):
        await asyncio.sleep(0)
    applying.cancel()  # killed: the first account record written, no partition record, no ack
    assert not world.acks and f"clock-{PARTITION}" not in world.clocks

    restarted = World(restarted_from=world, overlap=True)
    restarted.offsets.ends[(USAGE, PARTITION)] = 3
    for offset, value in enumerate(values):
        await restarted.scorer.process([restarted.event(USAGE, offset, value)])
    assert restarted.scorer.counters.reread == 1 and restarted.scorer.counters.accepted == 2
    assert restarted.accounts[ACCOUNT] == reference.accounts[ACCOUNT]
    assert restarted.clocks[f"clock-{PARTITION}"] == reference.clocks[f"clock-{PARTITION}"]
    assert restarted.sink.snapshots[-2:] == reference.sink.snapshots[-2:]


async def test_overlapping_a_midnight_is_re_scored_published_and_stored_with_the_loop_turning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A midnight re-scores every active account of the partition within one event: the loop
    turns every `YIELD_EVERY` accounts of it and of their snapshots, and every `TURN_EVERY` of
    their records encoded and written to the table, not once it is all done (100k accounts
    held the worker's loop for seconds: Redis timed out, a stop waited)."""
    monkeypatch.setattr(scorer_module, "YIELD_EVERY", 3)
    monkeypatch.setattr(accounts_module, "TURN_EVERY", 3)
    encoded: list[str] = []
    encode = accounts_module.encode_account

    def counted(account: Any, offsets: Any) -> bytes:
        encoded.append(account.account_id)
        return encode(account, offsets)

    monkeypatch.setattr(accounts_module, "encode_account", counted)
    world = World(overlap=True)
    accounts = [
        f"acct-{n}" for n in range(200) if partition_of(f"acct-{n}", SETTINGS.partitions) == PARTITION
    ]
    accounts = accounts[:10]
    world.offsets.ends[(SUBS, PARTITION)] = 10
    starts = [
        world.event(SUBS, offset, world.value(started_record(account, T1)), account=account)
        for offset, account in enumerate(accounts)
    ]
    await asyncio.wait_for(world.scorer.process(starts), 5)
    engine, published = world.scorer.engines[PARTITION], len(world.sink.snapshots)
    world.offsets.ends[(USAGE, PARTITION)] = 1
    encoded.clear()
    written = len(world.journal)
    # at each turn of the loop: accounts re-scored, snapshots sent, records encoded and written
    seen: dict[str, list[int]] = {"scored": [], "sent": [], "encoded": [], "written": []}
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen["scored"].append(len(engine.dirty))
            seen["sent"].append(len(world.sink.snapshots) - published)
            seen["encoded"].append(len(encoded))
            seen["written"].append(sum(entry.startswith("write acct-") for entry in world.journal[written:]))
            await asyncio.sleep(0)

    watching = asyncio.create_task(watch())
    crossing = world.usage(0, "2024-01-02T10:00:00Z", account=accounts[0])
    await asyncio.wait_for(world.scorer.process([crossing]), 5)
    done.set()
    await watching
    assert len(world.sink.snapshots) - published == 10  # every account, re-scored at the midnight
    assert len(encoded) == 10 and crossing.acked == 1  # and stored
    for step, counts in seen.items():
        assert 0 < min(n for n in counts if n) < 10, step  # the loop turned amid each step


async def test_overlapping_a_checkpoint_that_failed_stops_the_next_call_and_acknowledges_nothing() -> None:
    world, changelogs = overlapping()
    first = world.usage(0, T1)
    await asyncio.wait_for(world.scorer.process([first]), 5)
    changelogs.error = ConnectionError("broker gone")
    changelogs.gate.set()
    for _ in range(50):
        await asyncio.sleep(0)  # the checkpoint fails in the background
    for call in (world.scorer.release_idle, world.scorer.release_idle, world.scorer.stop):
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(call(), 5)
    assert first.acked == 0 and f"clock-{PARTITION}" not in world.clocks


async def test_overlapping_a_rebalance_waits_for_the_checkpoint_in_flight() -> None:
    world, changelogs = overlapping()
    first = world.usage(0, T1)
    await asyncio.wait_for(world.scorer.process([first]), 5)
    revoking = asyncio.create_task(world.scorer.revoked())
    for _ in range(50):
        await asyncio.sleep(0)
    assert not revoking.done() and first.acked == 0
    changelogs.gate.set()
    await asyncio.wait_for(revoking, 5)
    assert first.acked == 1 and world.scorer.paused


async def test_overlapping_a_long_release_lets_the_checkpoint_in_flight_move_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop turns every `YIELD_EVERY` messages of a release: the checkpoint before it (and
    the Kafka client) progress while the batch is applied, not only once it is done."""
    monkeypatch.setattr(scorer_module, "YIELD_EVERY", 3)
    world, changelogs = overlapping()
    world.offsets.ends[(USAGE, PARTITION)] = 6
    await asyncio.wait_for(world.scorer.process([world.usage(0, T1)]), 5)
    seen: list[int] = []  # messages accepted when the other task first ran

    async def broker_acknowledges() -> None:
        while world.scorer.counters.accepted < 2:  # once the release has begun
            await asyncio.sleep(0)
        seen.append(world.scorer.counters.accepted)
        changelogs.gate.set()

    # One event-time day: the ticks a release passes turn the loop too (the next test).
    days = [f"2024-01-02T1{hour}:00:00Z" for hour in range(5)]
    # Two of the five on the account's partition, three on another (released after it): the
    # turns count the release's messages, whatever partitions they come from.
    for topic in (SUBS, USAGE, TICKETS, SURVEYS):
        world.offsets.owned.add((topic, OTHER_PARTITION))
        world.offsets.ends[(topic, OTHER_PARTITION)] = 0
    world.offsets.ends[(USAGE, PARTITION)], world.offsets.ends[(USAGE, OTHER_PARTITION)] = 3, 3
    batch = [world.usage(1, days[0]), world.usage(2, days[1])]
    batch += [world.usage(n, when, account=OTHER) for n, when in enumerate(days[2:])]
    other = asyncio.create_task(broker_acknowledges())
    await asyncio.wait_for(world.scorer.process(batch), 5)
    await other
    await world.scorer.settled()
    assert seen == [4]  # during the release: the first checkpoint's message, then three of five
    assert world.scorer.counters.accepted == 6 and len(world.acks) == 6
