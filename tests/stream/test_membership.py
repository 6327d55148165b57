"""A worker fences itself while its group membership is in doubt (`stream/membership.py`): paused
past its session timeout, it applied a batch of partitions the group had given to another worker,
and wrote its state and snapshots over the new owner's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from streamer.partitioning import partition_of
from streamer.stream.membership import Doubt, Fence, Fenced, Membership
from tests.fixtures import FakeEvent, FakeSink
from tests.stream.world import ACCOUNT, PARTITION, SETTINGS, SUBS, USAGE, World

IN_DOUBT = Doubt("no heartbeat succeeded for 76 s (the group may have moved its partitions)", alarming=True)


class Coordinator:
    """aiokafka's group coordinator, as far as the lease reads it."""

    def __init__(self) -> None:
        self.generation = 7
        self.answers: list[bool] = []

    async def _do_heartbeat(self) -> bool:
        return self.answers.pop(0)

    def beat(self, succeeds: bool = True) -> bool:
        """One heartbeat through the attribute the lease replaced (as aiokafka calls it)."""
        self.answers.append(succeeds)
        heartbeat: Any = self._do_heartbeat
        return bool(asyncio.run(heartbeat()))


def leased(coordinator: Coordinator, now: list[float]) -> Membership:
    """A membership of session 10 s and heartbeat 1 s (a lease of 9 s) on a clock the test moves."""
    return Membership(lambda: coordinator, 10.0, 1.0, clock=lambda: now[0])


def test_the_membership_is_in_doubt_once_no_heartbeat_succeeded_for_the_session_less_one_beat() -> None:
    now, coordinator = [100.0], Coordinator()
    membership = leased(coordinator, now)
    assert membership.problem() is not None  # no heartbeat yet
    assert coordinator.beat()
    assert membership.problem() is None
    now[0] += 8.9
    assert membership.problem() is None
    now[0] += 0.2
    assert membership.problem() == Doubt(
        "no heartbeat succeeded for 9 s (the group may have moved its partitions)", alarming=True
    )
    assert not coordinator.beat(succeeds=False)
    assert membership.problem() is not None  # a failed heartbeat renews nothing
    assert coordinator.beat()
    assert membership.problem() is None


def test_a_generation_no_heartbeat_confirmed_yet_is_in_doubt_quietly() -> None:
    """Stopped right after its assignment, a member resumed with a lease renewed by that
    assignment and wrote over the new owner (a reviewer, 3 of 3 tries): an assignment proves
    nothing once the process may have stood still since. Every worker waits for the first
    heartbeat after a join, without a warning."""
    now, coordinator = [0.0], Coordinator()
    membership = leased(coordinator, now)
    first = membership.problem()
    assert first is not None and not first.alarming  # the consumer has just joined
    assert coordinator.beat()
    coordinator.generation = 8  # a rebalance assigned a new generation
    now[0] += 30.0  # a long join (or a stop right after it)
    doubt = membership.problem()
    assert doubt == Doubt("no heartbeat yet in generation 8", alarming=False)
    assert coordinator.beat()
    assert membership.problem() is None


def test_a_member_the_group_dropped_after_it_stood_still_is_in_doubt_with_a_warning() -> None:
    now, coordinator = [0.0], Coordinator()
    membership = leased(coordinator, now)
    assert membership.problem() is not None  # watched from here: its heartbeats are recorded
    assert coordinator.beat()
    now[0] += 76.0
    coordinator.generation = -1  # its first heartbeat after the pause failed: aiokafka reset it
    doubt = membership.problem()
    assert doubt is not None and doubt.alarming


def test_nothing_to_fence_before_the_consumer_started() -> None:
    assert Membership(lambda: None, 60.0, 3.0).problem() is None


async def test_a_write_waits_at_the_fence_until_the_lease_holds_and_is_given_up_at_a_rebalance() -> None:
    problem: list[Doubt | None] = [IN_DOUBT]
    fence = Fence(lambda: problem[0], poll_s=0.001)
    waiting = asyncio.ensure_future(fence.passed("outputs"))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    problem[0] = None
    await asyncio.wait_for(waiting, 1)
    assert fence.episodes == 1

    problem[0] = IN_DOUBT
    waiting = asyncio.ensure_future(fence.passed("outputs"))
    await asyncio.sleep(0.01)
    fence.giving_up = True
    with pytest.raises(Fenced):
        await asyncio.wait_for(waiting, 1)
    assert fence.episodes == 2


async def test_a_rebalance_gives_up_what_waits_at_the_fence_before_the_scorer_hears_of_it() -> None:
    """faust flushes the producer as a revocation begins, before the scorer's `revoked`: that
    flush waited for ever on the produce requests held at the fence."""
    rebalancing = [False]
    fence = Fence(lambda: IN_DOUBT, rebalancing=lambda: rebalancing[0], poll_s=0.001)
    waiting = asyncio.ensure_future(fence.passed("produce requests"))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    rebalancing[0] = True
    with pytest.raises(Fenced):
        await asyncio.wait_for(waiting, 1)


async def test_a_worker_whose_membership_is_in_doubt_applies_nothing_until_it_holds_again() -> None:
    world = World()
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.offsets.membership = IN_DOUBT
    event = world.usage(0)
    await world.scorer.process([event])
    assert event.acked == 0 and not world.applied()
    assert world.scorer.fence.episodes == 1 and world.scorer.counters.accepted == 0

    world.offsets.membership = None  # a heartbeat succeeded: the member holds its partitions
    await world.scorer.release_idle()
    assert event.acked == 1 and world.scorer.counters.accepted == 1 and ACCOUNT in world.accounts


async def test_a_bad_message_met_while_in_doubt_is_acknowledged_once_the_lease_is_renewed() -> None:
    """Its dead letter and acknowledgement wait with the rest: dropped, its offset was never
    acknowledged and the partition's committed offset stood still behind it for good."""
    world = World()
    world.offsets.ends[(SUBS, PARTITION)] = 1
    world.offsets.membership = IN_DOUBT
    bad = world.event(SUBS, 0, b"{not json")
    await world.scorer.process([bad])
    assert bad.acked == 0 and world.sink.flushes == 0

    world.offsets.membership = None
    await world.scorer.release_idle()
    assert bad.acked == 1 and len(world.sink.dead_letters) == 1


def answers(*problems: Doubt | None) -> Iterator[Doubt | None]:
    yield from problems
    while True:
        yield problems[-1]


async def test_a_batch_applied_as_the_doubt_arose_is_written_only_once_the_lease_is_renewed() -> None:
    """The process stood still in the middle of a batch: its outputs and state wait."""
    world = World()
    world.offsets.ends[(USAGE, PARTITION)] = 1
    lease = answers(None, IN_DOUBT)  # holds as the release begins, in doubt once it applied
    world.scorer.fence.problem = lambda: next(lease)
    event = world.usage(0)
    await world.scorer.process([event])
    assert world.scorer.counters.accepted == 1  # applied in memory
    assert event.acked == 0 and world.sink.flushes == 0 and ACCOUNT not in world.accounts

    lease = answers(None)
    await world.scorer.release_idle()
    assert event.acked == 1 and world.sink.snapshots and ACCOUNT in world.accounts


async def test_a_rebalance_while_in_doubt_drops_the_batch_unwritten() -> None:
    """faust revokes the partitions only as the dropped member rejoins: written then, the batch
    overwrote the state and snapshots of the member that owns the partitions now."""
    world = World()
    world.offsets.ends[(USAGE, PARTITION)] = 1
    lease = answers(None, IN_DOUBT)
    world.scorer.fence.problem = lambda: next(lease)
    event = world.usage(0)
    await world.scorer.process([event])
    assert world.scorer.counters.accepted == 1

    await world.scorer.revoked()
    assert not world.applied() and "discard" in world.journal
    assert event.acked == 0  # read again by the partition's owner, from the committed offset

    await world.scorer.assigned()


async def test_a_rebalance_while_the_lease_holds_writes_the_batches_since_the_last_checkpoint() -> None:
    world = World()
    world.scorer.checkpoint_every_s = 60.0  # the batch stays pending
    world.offsets.ends[(USAGE, PARTITION)] = 1
    event = world.usage(0)
    await world.scorer.process([event])
    assert ACCOUNT not in world.accounts  # not durable yet

    await world.scorer.revoked()
    assert ACCOUNT in world.accounts and event.acked == 1


class SlowSink(FakeSink):
    """A sink whose flush waits until the test opens the gate (a broker taking its time)."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__(journal)
        self.gate = asyncio.Event()

    async def flush(self) -> None:
        await self.gate.wait()
        await super().flush()


async def test_a_checkpoint_in_flight_as_the_doubt_arose_writes_no_state_and_a_rebalance_drops_it() -> None:
    """The process stood still while a checkpoint's outputs were on their way: resumed, the
    checkpoint waits at the fence instead of writing the accounts, and the rebalance drops it."""
    world = World(overlap=True, settling=False)
    world.scorer.sink = world.sink = sink = SlowSink(world.journal)
    world.scorer.fence.poll_s = 0.001
    world.offsets.ends[(USAGE, PARTITION)] = 1
    event = world.usage(0)
    await world.scorer.process([event])  # the checkpoint is prepared and in flight
    world.offsets.membership = IN_DOUBT  # the process stood still
    sink.gate.set()  # the outputs reach the broker
    await asyncio.sleep(0.05)
    assert ACCOUNT not in world.accounts and event.acked == 0

    await asyncio.wait_for(world.scorer.revoked(), 5)
    assert ACCOUNT not in world.accounts and event.acked == 0


class GivenUpChangelogs:
    """Table writes the producer gave up at the fence: waiting for them fails until they are
    forgotten (as `DurableTable` keeps the future of every record it sent)."""

    def __init__(self) -> None:
        self.given_up = True

    async def written(self) -> None:
        if self.given_up:
            raise Fenced("produce requests")

    def forget(self) -> None:
        self.given_up = False


async def test_a_stop_while_in_doubt_writes_nothing_stops_and_has_the_local_stores_rebuilt() -> None:
    """`stopped` tells the next start that its local stores agree with the changelogs: not so
    after a stop that dropped what it had not written (table records given up at the fence)."""
    world = World()
    world.scorer.checkpoint_every_s = 60.0  # the batch stays pending
    world.offsets.ends[(USAGE, PARTITION)] = 1
    event = world.usage(0)
    await world.scorer.process([event])
    world.offsets.membership = IN_DOUBT
    world.scorer.changelogs = GivenUpChangelogs()
    await asyncio.wait_for(world.scorer.stop(), 5)
    assert world.scorer.paused and ACCOUNT not in world.accounts and event.acked == 0
    assert not world.scorer.stopped


def other_account_of_the_partition() -> str:
    return next(
        name
        for name in (f"acct{n}" for n in range(1000))
        if partition_of(name, SETTINGS.partitions) == PARTITION and name != ACCOUNT
    )


async def given_up_then_renewed(world: World, ends: Callable[[], Awaitable[None]]) -> list[FakeEvent]:
    """A checkpoint in flight (of `ACCOUNT`'s event) as the process stood still, a later batch
    applied (another account's), then `ends` (a stop or a rebalance) gives the checkpoint up at
    the fence, and a heartbeat renews the lease before `ends` decides what to write."""
    scorer = world.scorer
    scorer.sink = world.sink = sink = SlowSink(world.journal)
    scorer.fence.poll_s = 0.001
    world.offsets.ends[(USAGE, PARTITION)] = 2
    scorer.checkpoint_every_s = 0.0
    first = world.usage(0)
    await scorer.process([first])  # its checkpoint is prepared and in flight (its outputs wait)
    scorer.checkpoint_every_s = 60.0
    second = world.usage(1, account=other_account_of_the_partition())
    await scorer.process([second])  # applied, pending
    world.offsets.membership = IN_DOUBT  # the process stood still
    sink.gate.set()
    await wait_for_condition(lambda: "flush" in world.journal)  # the checkpoint waits at the fence
    await scorer.lock.acquire()  # a batch in flight
    ending = asyncio.ensure_future(ends())  # gives up what waits at the fence
    await wait_for_condition(lambda: scorer._inflight is None or scorer._inflight.done())
    world.offsets.membership = None  # a heartbeat renews the lease
    scorer.lock.release()
    await asyncio.wait_for(ending, 5)
    return [first, second]


async def wait_for_condition(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):  # bounds a hang only
        while not condition():
            await asyncio.sleep(0.001)


async def test_a_checkpoint_given_up_at_a_stop_is_not_claimed_by_a_later_one() -> None:
    """The stop found the lease renewed and wrote a checkpoint of the later batch. Its partition
    record claimed the given-up checkpoint's message applied (that checkpoint's `prepare` had
    moved the record past it) while its account was never written: read again after the
    restart, it was skipped as applied before, lost for good."""
    world = World(overlap=True, settling=False)
    events = await given_up_then_renewed(world, world.scorer.stop)
    assert not world.scorer.stopped  # the local stores are rebuilt from the changelogs
    assert f"clock-{PARTITION}" not in world.clocks and [event.acked for event in events] == [0, 0]

    restarted = World(restarted_from=world)
    restarted.offsets.ends[(USAGE, PARTITION)] = 2
    again = [restarted.usage(0), restarted.usage(1, account=other_account_of_the_partition())]
    await restarted.scorer.process(again)
    assert restarted.scorer.counters.reread == 0 and [event.acked for event in again] == [1, 1]
    assert ACCOUNT in restarted.accounts and other_account_of_the_partition() in restarted.accounts


async def test_a_checkpoint_given_up_at_a_rebalance_is_not_claimed_by_a_later_one() -> None:
    """The same at a rebalance: a heartbeat renews the lease during the revocation (aiokafka's
    counts one answered "rebalance in progress" as a success)."""
    world = World(overlap=True, settling=False)
    events = await given_up_then_renewed(world, world.scorer.revoked)
    assert f"clock-{PARTITION}" not in world.clocks and [event.acked for event in events] == [0, 0]
    assert "discard" in world.journal  # the outputs not yet in Kafka are dropped


async def test_records_dropped_with_a_membership_that_ended_in_doubt_fail_no_later_checkpoint() -> None:
    """The table records of a batch dropped at a rebalance failed at the fence. The next
    generation's first checkpoint waited for them too: it failed, was dropped as given up at the
    fence, and its messages were never acknowledged while the worker went on applying."""
    world = World()
    world.scorer.checkpoint_every_s = 60.0  # the batch stays pending
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.scorer.changelogs = changelogs = GivenUpChangelogs()
    await world.scorer.process([world.usage(0)])
    world.offsets.membership = IN_DOUBT
    await world.scorer.revoked()
    await world.scorer.assigned()
    # once more at the assignment: sends that waited for room as the first drop came went on
    assert world.journal.count("discard") == 2 and not changelogs.given_up

    world.offsets.membership = None  # the new generation's lease holds
    world.scorer.checkpoint_every_s = 0.0
    event = world.usage(0)  # read again from the committed offset
    await world.scorer.process([event])
    assert event.acked == 1 and ACCOUNT in world.accounts


def test_a_heartbeat_renews_the_lease_from_when_it_was_sent_not_when_its_answer_was_read() -> None:
    """An answer read after the process stood still (the broker gave it before) renewed the
    lease from the moment it was read: a fresh lease for a member the group may have dropped."""
    now, coordinator = [0.0], Coordinator()

    async def answered_after_a_pause() -> bool:
        now[0] += 60.0  # the process stood still with the answer on its way
        return True

    coordinator._do_heartbeat = answered_after_a_pause  # type: ignore[method-assign]
    membership = leased(coordinator, now)
    assert membership.problem() is not None  # watched from here
    heartbeat: Any = coordinator._do_heartbeat
    assert asyncio.run(heartbeat())
    doubt = membership.problem()
    assert doubt is not None and doubt.alarming


async def test_accounts_a_given_up_checkpoint_wrote_locally_are_written_again_when_it_comes_back() -> None:
    """The changelog sends of a checkpoint's account records were given up at the fence after
    the local store had them. The same worker got the partition back: its re-read message was
    found in that local record and acknowledged, and the account's record never reached the
    changelog (a later owner recovering from it lost the message for good). It is written again
    at the partition's next checkpoint, before the partition record; until then a stop is not
    clean (the next start rebuilds the local stores)."""
    world = World()
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.scorer.changelogs = changelogs = GivenUpChangelogs()
    first = world.usage(0)
    await world.scorer.process([first])
    assert ACCOUNT in world.accounts and f"clock-{PARTITION}" not in world.clocks  # local only
    await world.scorer.revoked()
    await world.scorer.assigned()
    changelogs.given_up = False
    world.journal.clear()
    again = world.event(USAGE, 0, first.message.value)
    await world.scorer.process([again])
    assert world.scorer.counters.reread == 1 and again.acked == 1
    assert world.journal.index(f"write {ACCOUNT}") < world.journal.index(f"write clock-{PARTITION}")
    await world.scorer.stop()
    assert world.scorer.stopped


async def test_a_stop_before_the_accounts_of_a_given_up_checkpoint_are_written_again_is_not_clean() -> None:
    world = World()
    world.offsets.ends[(USAGE, PARTITION)] = 1
    world.scorer.changelogs = changelogs = GivenUpChangelogs()
    await world.scorer.process([world.usage(0)])
    await world.scorer.revoked()
    await world.scorer.assigned()
    changelogs.given_up = False
    await world.scorer.stop()
    assert not world.scorer.stopped
