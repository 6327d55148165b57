"""A checkpoint applies at most `CHECKPOINT_SPAN` of a partition's event time, so that a worker
killed while it writes its account records leaves none far ahead of the partition record.

The next owner starts from the older partition record, with some account records ahead of it and
the rest behind, and builds the peer references of the midnights in between from the accounts as
they are. An account further ahead than the usage days it keeps lets go of days a reference
reads, and the accounts behind it, scored at those midnights against that reference, raised
alerts that the worker without the kill and `streamer offline` never raise (seen once in a CI run
of the stood-still integration test: four extra alerts).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import orjson

from streamer.core.clock import DAY, to_ms
from streamer.partitioning import partition_of
from streamer.sim.config import SimulationConfig
from streamer.sim.generate import generate_events
from streamer.stream.scorer import CHECKPOINT_SPAN
from tests.fixtures import FakeEvent, JournaledTable
from tests.stream.world import SETTINGS, TOPICS, World, input_messages, usage_record

# A backlog like the stood-still test's: 4,000 messages of one partition then span 50 days.
SIMULATION = SimulationConfig(accounts=120, months=4, seed=17, usage_density=0.3)
CUT_PARTITION = 1


class Killed(Exception):
    """The worker dies here (SIGKILL): nothing after this step happens."""


class DyingAccounts(JournaledTable):
    """An accounts table whose owner is killed after `left` more account records."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__(journal)
        self.left: int | None = None

    def __setitem__(self, key: str, value: bytes) -> None:
        if self.left is not None:
            if self.left == 0:
                self.left = None
                raise Killed(key)
            self.left -= 1
        super().__setitem__(key, value)


def world_over(ends: dict[tuple[str, int], int], restarted_from: World | None = None) -> World:
    world = World(restarted_from)
    world.offsets.owned = {(topic, p) for topic in TOPICS.values() for p in range(SETTINGS.partitions)}
    world.offsets.ends = {tp: ends.get(tp, 0) for tp in world.offsets.owned}
    return world


async def feed(world: World, events: list[FakeEvent]) -> None:
    for start in range(0, len(events), 4000):
        await world.scorer.process(events[start : start + 4000])
        await world.scorer.release_idle()


async def test_a_kill_amid_a_checkpoints_account_records_raises_no_alert_the_worker_without_it_lacks() -> (
    None
):
    lines = [orjson.dumps(event) for event in generate_events(SIMULATION)]
    lines = [line for line in lines if partition_of(orjson.loads(line)["account_id"], 4) == CUT_PARTITION]
    made, ends = input_messages(lines)

    uninterrupted = world_over(ends)
    await feed(uninterrupted, [FakeEvent(m, uninterrupted.acks, uninterrupted.journal) for m in made])
    expected = {alert["alert_id"] for alert in uninterrupted.sink.alerts}

    killed = world_over(ends)
    killed.accounts = killed.scorer.accounts_table = DyingAccounts(killed.journal)
    events = [FakeEvent(m, killed.acks, killed.journal) for m in made]
    await feed(killed, events[:1000])
    killed.accounts.left = 3  # the next checkpoint writes three account records, then dies
    with contextlib.suppress(Killed):
        await feed(killed, events[1000:5000])
    assert killed.accounts.left is None, "the kill came"
    raised = {alert["alert_id"] for alert in killed.sink.alerts}  # outputs go before the state

    restarted = world_over(ends, restarted_from=killed)
    committed = dict(restarted.offsets.ends)
    for event in reversed(events):
        if not event.acked:
            committed[(event.message.topic, event.message.partition)] = event.message.offset
    restarted.offsets.restarts = committed
    await feed(
        restarted, [FakeEvent(e.message, restarted.acks, restarted.journal) for e in events if not e.acked]
    )
    raised |= {alert["alert_id"] for alert in restarted.sink.alerts}
    assert raised - expected == set(), (
        f"{len(raised - expected)} alerts the worker without the kill never raised"
    )
    assert expected - raised == set()


async def test_a_checkpoint_applies_at_most_its_span_of_a_partitions_event_time() -> None:
    """Four spans and some days of one account's use, a message a day, in one batch: a
    checkpoint per span, each acknowledging only messages within `CHECKPOINT_SPAN` of where the
    partition stood (or of its first message, a day later here: a message cannot be split)."""
    world = World()
    account = "acme"
    partition = partition_of(account, SETTINGS.partitions)
    usage = TOPICS["usage"]
    start = datetime(2024, 1, 1, 10, tzinfo=UTC)
    days = [start + timedelta(days=n) for n in range(4 * CHECKPOINT_SPAN // DAY + 4)]
    world.offsets.ends[(usage, partition)] = len(days)
    events = [
        world.event(usage, n, world.value(usage_record(account, when.strftime("%Y-%m-%dT%H:%M:%SZ"))))
        for n, when in enumerate(days)
    ]
    await world.scorer.process(events)
    checkpoints: list[list[int]] = []  # the offsets each checkpoint acknowledged, after its record
    for entry in world.journal:
        if entry == f"write clock-{partition}":
            checkpoints.append([])
        elif entry.startswith(f"ack {usage}@"):
            checkpoints[-1].append(int(entry.rsplit("@", 1)[1]))
    assert sorted(n for offsets in checkpoints for n in offsets) == list(range(len(days)))
    assert len(checkpoints) >= 4
    stood = -1  # the partition's stream time: where the last checkpoint left it
    for offsets in checkpoints:
        first, last = to_ms(days[min(offsets)]), to_ms(days[max(offsets)])
        assert last - max(stood, first) <= CHECKPOINT_SPAN, (days[min(offsets)], days[max(offsets)])
        stood = last
