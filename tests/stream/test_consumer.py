"""`RebalanceSafeConsumer`: a fetch that overlapped a seek never delivers input records (no broker).

faust's own consumer machinery is replaced by fakes on its base class: the fetch, the seeks, the
assignment and the committed offsets; what is under test is only what our subclass adds.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiokafka
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree

from streamer.stream.clients import FETCH_WAIT_MS
from streamer.stream.consumer import RebalanceSafeConsumer, SafeCommitThread
from streamer.stream.input_lane import InputLane, InputRecord

USAGE, SUBS = TP("in.usage", 0), TP("in.subscriptions", 0)
CHANGELOG = TP("app-accounts-changelog", 0)
GENERATION = 5


class Harness:
    """A consumer whose base-class fetch returns `records`, running `during` while it waits."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records: dict[TP, list[str]] = {}
        self.during: Callable[[RebalanceSafeConsumer], Awaitable[None]] | None = None
        self.sought: list[tuple[TP, int]] = []
        self.earliest: dict[TP, int] = {}
        consumer = self.consumer = RebalanceSafeConsumer.__new__(RebalanceSafeConsumer)
        consumer._committed_offset = {USAGE: 40, SUBS: None, CHANGELOG: 7}
        self.app = consumer.app = SimpleNamespace(
            consumer_generation_id=GENERATION, monitor=SimpleNamespace(stream_inbound_time={})
        )
        self.active = {USAGE, SUBS, CHANGELOG}
        harness = self

        async def fetch(self: Any, timeout: float) -> tuple[dict[TP, list[str]], set[TP]]:
            if harness.during is not None:
                await harness.during(consumer)
            return dict(harness.records), set(harness.active)

        async def seek(self: Any, partition: TP, offset: int) -> None:
            harness.sought.append((partition, offset))

        async def perform_seek(self: Any) -> None:
            return None

        async def earliest_offsets(self: Any, *partitions: TP) -> dict[TP, int]:
            return {tp: harness.earliest[tp] for tp in partitions if tp in harness.earliest}

        async def group_committed(tps: list[TP]) -> dict[TP, int]:
            return {tp: harness.group[tp] for tp in tps if tp in harness.group}

        self.group: dict[TP, int] = {}  # what the broker has committed for the group
        self.positions: dict[TP, int] = {}  # aiokafka's fetch positions (unset: none)
        position = lambda self, tp: harness.positions.get(tp)  # noqa: E731
        monkeypatch.setattr(RebalanceSafeConsumer, "_fetch_position", position)
        consumer._group_committed = group_committed  # type: ignore[method-assign]

        base = faust_aiokafka.Consumer
        monkeypatch.setattr(base, "_wait_next_records", fetch)
        monkeypatch.setattr(base, "seek", seek)
        monkeypatch.setattr(base, "perform_seek", perform_seek)
        monkeypatch.setattr(base, "earliest_offsets", earliest_offsets)
        monkeypatch.setattr(base, "assignment", lambda self: {USAGE, SUBS, CHANGELOG})
        monkeypatch.setattr(base, "_is_changelog_tp", lambda self, tp: tp.topic.endswith("-changelog"))

    async def fetch(self) -> dict[TP, list[str]]:
        records, _active = await self.consumer._wait_next_records(1.0)
        assert isinstance(records, dict)
        return records


async def rebalance(consumer: RebalanceSafeConsumer) -> None:
    await consumer.perform_seek()  # what faust does after every rebalance


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(monkeypatch)


async def test_a_fetch_without_a_seek_meanwhile_is_delivered_whole(harness: Harness) -> None:
    harness.records = {USAGE: ["u40", "u41"], CHANGELOG: ["c7"]}
    assert await harness.fetch() == {USAGE: ["u40", "u41"], CHANGELOG: ["c7"]}
    assert harness.sought == [] and harness.consumer.dropped_fetches == 0


async def test_input_records_of_a_fetch_that_overlapped_a_seek_are_read_again(harness: Harness) -> None:
    harness.records = {USAGE: ["u55", "u56"], SUBS: ["s3"], CHANGELOG: ["c7"]}
    harness.earliest = {SUBS: 0}  # no committed offset: read from the start
    harness.during = rebalance
    # Changelog records pass: table recovery reads them by its own offsets.
    assert await harness.fetch() == {CHANGELOG: ["c7"]}
    assert sorted(harness.sought) == sorted([(USAGE, 40), (SUBS, 0)])
    assert harness.consumer.dropped_fetches == 1

    harness.during = None  # the fetch after that is current again
    harness.records = {USAGE: ["u40"]}
    assert await harness.fetch() == {USAGE: ["u40"]}


async def test_records_are_kept_when_they_could_not_be_sought_back(harness: Harness) -> None:
    harness.records = {SUBS: ["s3"]}
    harness.during = rebalance  # SUBS has no committed offset and the broker gave no start
    assert await harness.fetch() == {SUBS: ["s3"]}  # dropping them would lose them
    assert harness.sought == [] and harness.consumer.dropped_fetches == 0


async def test_our_own_seeks_count_too(harness: Harness) -> None:
    async def reread(consumer: RebalanceSafeConsumer) -> None:
        await consumer.seek(USAGE, 40)  # the scorer re-reading a stalled partition

    harness.records = {USAGE: ["u57"]}
    harness.during = reread
    assert await harness.fetch() == {}
    assert harness.sought == [(USAGE, 40), (USAGE, 40)]


async def test_an_input_offset_range_faust_passed_over_is_never_counted_as_acknowledged(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recorded: list[tuple[TP, int, int]] = []

    async def add_gap(self: Any, tp: TP, offset_from: int, offset_to: int) -> None:
        recorded.append((tp, offset_from, offset_to))

    monkeypatch.setattr(faust_aiokafka.Consumer, "_add_gap", add_gap)
    await harness.consumer._add_gap(USAGE, 41, 44)  # faust: offsets 41..43 were never delivered
    assert recorded == []  # faust would commit past them as if acknowledged: it never hears of it
    assert (harness.consumer.jumps, harness.consumer.gaps) == (1, 0)
    [line] = [r for r in caplog.records if "passed over input offsets" in r.getMessage()]
    assert (line.topic, line.partition, line.to) == (USAGE.topic, 0, 43)  # type: ignore[attr-defined]


async def test_a_changelog_gap_keeps_fausts_bookkeeping_and_is_counted_and_logged(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recorded: list[tuple[TP, int, int]] = []

    async def add_gap(self: Any, tp: TP, offset_from: int, offset_to: int) -> None:
        recorded.append((tp, offset_from, offset_to))

    monkeypatch.setattr(faust_aiokafka.Consumer, "_add_gap", add_gap)
    await harness.consumer._add_gap(CHANGELOG, 7, 9)
    assert recorded == [(CHANGELOG, 7, 9)]
    assert (harness.consumer.jumps, harness.consumer.gaps) == (0, 1)
    [line] = [r for r in caplog.records if r.getMessage() == "skipped an offset range"]
    assert (line.topic, line.to) == (CHANGELOG.topic, 8)  # type: ignore[attr-defined]


async def test_a_partition_faust_has_no_committed_offset_for_yet_is_read_from_the_groups(
    harness: Harness,
) -> None:
    """A member that just joined: faust has not read the group's committed offsets yet, the
    broker has them. Reading from the start instead re-read what the group had committed, and
    faust's own seek then jumped forward: an offset gap in the scorer's view."""
    harness.records = {SUBS: ["s0"]}
    harness.group = {SUBS: 9}
    harness.earliest = {SUBS: 0}
    harness.during = rebalance
    assert await harness.fetch() == {}
    assert harness.sought == [(SUBS, 9)]


async def test_a_commit_whose_partitions_were_all_revoked_meanwhile_commits_nothing_and_does_not_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust handed aiokafka an empty commit then (ValueError({})), crashed its consumer thread,
    and the worker exited with 1 (seen in the soak, during a rebalance)."""
    committed: list[dict[TP, int]] = []

    async def base_commit(self: Any, offsets: dict[TP, int]) -> bool:
        committed.append(dict(offsets))
        return True

    thread = SafeCommitThread.__new__(SafeCommitThread)
    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "_commit", base_commit)
    monkeypatch.setattr(SafeCommitThread, "assignment", lambda self: {USAGE})
    assert await thread._commit({SUBS: 4}) is False
    assert committed == []
    assert await thread._commit({SUBS: 4, USAGE: 41}) is True
    assert committed == [{SUBS: 4, USAGE: 41}]  # faust keeps only the assigned ones itself


async def test_the_worker_consumer_lets_the_broker_hold_a_fetch_only_briefly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust builds it with fetch_max_wait_ms=1500: a fetch of the quiet partitions then kept the
    busy ones from being fetched for up to 1.5 s (publish -> alert p50 1.4 s at 2,000 events/s)."""

    def base_create(self: Any, transport: Any) -> aiokafka.AIOKafkaConsumer:
        return aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", fetch_max_wait_ms=1500)

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", base_create)
    thread = SafeCommitThread.__new__(SafeCommitThread)
    consumer = thread._create_worker_consumer(None)
    try:
        assert consumer._fetch_max_wait_ms == FETCH_WAIT_MS <= 100  # what its fetcher starts with
    finally:
        await consumer.stop()


# -- the input lane ---------------------------------------------------------------------------------


def record(offset: int, value: bytes = b"{}", headers: tuple[tuple[str, bytes], ...] = ()) -> SimpleNamespace:
    """An aiokafka ConsumerRecord, as far as the lane reads one."""
    return SimpleNamespace(
        offset=offset, key=b"acc-1", value=value, timestamp=1_700_000_000_123, headers=headers
    )


def with_lane(harness: Harness) -> InputLane:
    lane = InputLane([USAGE.topic, SUBS.topic])
    harness.app.input_lane = lane
    consumer = harness.consumer
    consumer.flow_active = True
    consumer._buffered_partitions = set()
    consumer._read_offset = defaultdict(lambda: None)
    consumer._acked, consumer._acked_index, consumer._n_acked = defaultdict(list), defaultdict(set), 0
    consumer._waiting_for_ack = None
    consumer._gap = defaultdict(IntervalTree)
    return lane


async def test_the_lane_takes_a_fetchs_input_records_and_faust_keeps_the_changelog_ones(
    harness: Harness,
) -> None:
    lane = with_lane(harness)
    harness.records = {USAGE: [record(40), record(41)], SUBS: [record(3)], CHANGELOG: ["c7"]}  # type: ignore[list-item]
    assert await harness.fetch() == {CHANGELOG: ["c7"]}
    [batch] = [b async for b in _first(lane)]
    assert [(r.topic, r.partition, r.offset) for r in batch] == [
        (USAGE.topic, 0, 40),
        (USAGE.topic, 0, 41),
        (SUBS.topic, 0, 3),
    ]
    first = batch[0]
    assert first.message is first and (first.key, first.value) == (b"acc-1", b"{}")
    assert first.timestamp == 1_700_000_000.123 and first.generation_id == GENERATION
    assert harness.consumer._read_offset[USAGE] == 41  # faust's read position follows the lane


async def test_the_lane_keeps_a_rerouted_copys_origin_header(harness: Harness) -> None:
    lane = with_lane(harness)
    copy = record(40, headers=(("trace", b"t"), ("healthstream-origin", b"2:17:9")))
    harness.records = {USAGE: [copy, record(41, headers=(("trace", b"t"),))]}  # type: ignore[list-item]
    await harness.fetch()
    [batch] = [b async for b in _first(lane)]
    assert [r.origin for r in batch] == [b"2:17:9", None]


async def test_the_lane_skips_paused_partitions_and_leaves_a_stopped_flow_to_faust(
    harness: Harness,
) -> None:
    lane = with_lane(harness)
    harness.active = {USAGE, CHANGELOG}  # SUBS paused: faust's getmany would not deliver it
    harness.records = {USAGE: [record(40)], SUBS: [record(3)]}  # type: ignore[list-item]
    assert await harness.fetch() == {}
    [batch] = [b async for b in _first(lane)]
    assert [r.topic for r in batch] == [USAGE.topic]

    harness.consumer.flow_active = False  # a rebalance: faust drops the fetch and seeks back
    harness.records = {USAGE: [record(41)]}  # type: ignore[list-item]
    assert await harness.fetch() == harness.records
    assert lane._queue.empty()


async def test_each_record_says_where_the_consumer_read_from_before_it(harness: Harness) -> None:
    """`follows`: offsets between it and the record were passed over by the fetcher (a
    transaction's marker, aborted records): the scorer takes such a gap without reading again."""
    lane = with_lane(harness)
    consumer = harness.consumer
    harness.positions = {USAGE: 40, SUBS: 3}
    await harness.fetch()  # faust's seek left the position at 40: not known to be a start
    assert consumer.read_position(USAGE) is None
    harness.records = {USAGE: [record(40), record(42)]}  # type: ignore[list-item]
    harness.positions = {USAGE: 44, SUBS: 3}  # 41 and 43 were markers
    await harness.fetch()
    [batch] = [b async for b in _first(lane)]
    assert [(r.offset, r.follows) for r in batch] == [(40, None), (42, 41)]
    assert consumer.read_position(USAGE) == (43, 44)  # nothing between 43 and 44
    harness.records = {USAGE: [record(45)]}  # type: ignore[list-item]
    harness.positions = {USAGE: 46, SUBS: 3}
    await harness.fetch()
    [batch] = [b async for b in _first(lane)]
    assert [(r.offset, r.follows) for r in batch] == [(45, 43)]  # 43 and 44 were passed over
    assert consumer.read_position(USAGE) == (46, 46)


async def test_after_faust_s_seek_or_a_dropped_fetch_the_consumer_vouches_for_no_gap(
    harness: Harness,
) -> None:
    """Records fetched before a rebalance's seek and dropped by faust, or a paused partition's
    records, were read and never handed over: the position says nothing of them. A seek of
    ours (the scorer's re-read) anchors the partition again at its offset."""
    lane = with_lane(harness)
    consumer = harness.consumer
    await consumer.seek(USAGE, 30)  # ours: reading goes on from 30
    assert consumer.read_position(USAGE) == (30, 30)
    harness.records = {USAGE: [record(32)]}  # type: ignore[list-item]
    harness.positions = {USAGE: 33, SUBS: 3}
    await harness.fetch()
    [batch] = [b async for b in _first(lane)]
    assert batch[0].follows == 30
    await consumer.perform_seek()  # faust's, after a rebalance: where to is not known here
    assert consumer.read_position(USAGE) is None
    harness.records = {}
    harness.positions = {USAGE: 50, SUBS: 3}
    await harness.fetch()
    assert consumer.read_position(USAGE) is None  # a position alone anchors nothing

    await consumer.seek(SUBS, 3)
    harness.active = {USAGE, CHANGELOG}  # SUBS paused: its records are dropped
    harness.records = {SUBS: [record(3)]}  # type: ignore[list-item]
    harness.positions = {USAGE: 50, SUBS: 4}
    await harness.fetch()
    assert consumer.read_position(SUBS) is None  # 3 was read and not handed over
    harness.active, harness.records = {USAGE, SUBS, CHANGELOG}, {}
    await harness.fetch()
    assert consumer.read_position(SUBS) is None

    await consumer.seek(SUBS, 3)
    harness.consumer.flow_active = False  # a rebalance: faust drops the fetch
    harness.records = {SUBS: [record(3)]}  # type: ignore[list-item]
    await harness.fetch()
    harness.consumer.flow_active = True
    harness.records = {}
    await harness.fetch()
    assert consumer.read_position(SUBS) is None


async def test_faust_s_seek_reads_input_partitions_without_a_committed_offset_from_their_start(
    harness: Harness,
) -> None:
    """aiokafka's `seek_to_committed` leaves a partition without a committed offset where it was
    read to. After a rebalance that kept it (nothing committed yet), what the reads before had
    delivered or faust had dropped was never read again: two workers starting together lost
    13 and 16 s to the stall check in 2 of 17 runs."""
    with_lane(harness)
    harness.earliest = {SUBS: 12, USAGE: 0}  # SUBS: retention moved its start
    await rebalance(harness.consumer)
    assert harness.sought == [(SUBS, 12)]  # USAGE has its committed 40; changelogs are recovery's
    assert harness.consumer.read_position(SUBS) == (12, 12)


async def test_without_the_lane_faust_s_seek_is_faust_s_alone(harness: Harness) -> None:
    harness.earliest = {SUBS: 0}
    await rebalance(harness.consumer)
    assert harness.sought == []


async def test_a_seek_is_made_in_the_consumer_thread() -> None:
    """faust called aiokafka's seek from the event loop's thread, under the consumer thread
    handing out a fetch: the fetcher crashed (KeyError in `fetched_records`)."""
    calls: list[tuple[Any, ...]] = []
    assigned = {SUBS}
    kafka = SimpleNamespace(
        seek=lambda tp, offset: calls.append(("direct", tp, offset)), assignment=lambda: set(assigned)
    )

    async def call_thread(method: Callable[..., Any], *args: Any) -> Any:
        calls.append(("in the thread", *args[1:]))
        return await method(*args)

    consumer = RebalanceSafeConsumer.__new__(RebalanceSafeConsumer)
    consumer._thread = SimpleNamespace(call_thread=call_thread, _ensure_consumer=lambda: kafka)  # type: ignore[assignment]
    await consumer._seek(SUBS, 5)
    assert calls == [("in the thread", SUBS, 5), ("direct", SUBS, 5)]
    # assigned elsewhere since the seek was decided: aiokafka's seek raised, the worker ended
    assigned.clear()
    await consumer._seek(SUBS, 6)
    assert calls[2:] == [("in the thread", SUBS, 6)]


async def test_offsets_without_records_are_acknowledged_for_the_commit(harness: Harness) -> None:
    with_lane(harness)
    consumer = harness.consumer
    consumer.ack_inputs([InputRecord(USAGE, 40, None, b"", 0.0, GENERATION)])
    consumer.acknowledge_passed(USAGE, 41, 43)  # a marker and an aborted record
    consumer.ack_inputs([InputRecord(USAGE, 43, None, b"", 0.0, GENERATION)])
    assert consumer._new_offset(USAGE) == 44
    consumer.acknowledge_passed(USAGE, 38, 45)  # below the committed offset: ignored, as faust does
    assert consumer._acked[USAGE][:1] == [40] and 39 not in consumer._acked_index[USAGE]


async def test_a_range_deleted_by_retention_is_passed_as_a_range_not_offset_by_offset(
    harness: Harness,
) -> None:
    """A worker down longer than the topic's retention passes every offset deleted meanwhile
    (`Scorer._missing`): acknowledged one by one, ten million of them took 0.7 GB and seconds of
    the event loop, and a day of them at 1,000 events/s got the worker killed at every start."""
    with_lane(harness)
    consumer = harness.consumer
    consumer.acknowledge_passed(USAGE, 40, 10_000_040)  # from the committed offset (40) on
    assert len(consumer._acked[USAGE]) <= 1
    assert consumer._new_offset(USAGE) == 10_000_040
    consumer._committed_offset[USAGE] = 10_000_040  # as faust notes a commit that succeeded
    consumer.ack_inputs(
        [InputRecord(USAGE, offset, None, b"", 0.0, GENERATION) for offset in (10_000_040, 10_000_041)]
    )
    assert consumer._new_offset(USAGE) == 10_000_042


async def test_a_passed_range_waits_for_the_offsets_before_it(harness: Harness) -> None:
    with_lane(harness)
    consumer = harness.consumer
    consumer.acknowledge_passed(USAGE, 60, 20_060)  # 40-59 are still to come
    consumer.ack_inputs([InputRecord(USAGE, offset, None, b"", 0.0, GENERATION) for offset in range(40, 50)])
    assert consumer._new_offset(USAGE) == 50  # up to the first offset not acknowledged
    consumer._committed_offset[USAGE] = 50
    assert consumer._new_offset(USAGE) is None
    consumer.ack_inputs([InputRecord(USAGE, offset, None, b"", 0.0, GENERATION) for offset in range(50, 60)])
    consumer.ack_inputs([InputRecord(USAGE, 20_060, None, b"", 0.0, GENERATION)])
    assert consumer._new_offset(USAGE) == 20_061


async def test_batches_join_the_fetches_waiting_and_never_linger() -> None:
    lane = InputLane([USAGE.topic])
    records = [InputRecord(USAGE, offset, None, b"", 0.0, 1) for offset in range(5)]
    await lane.put(records[:2])
    await lane.put(records[2:4])
    batches = lane.batches(max_records=3)
    assert [r.offset for r in await anext(batches)] == [0, 1, 2, 3]  # whole fetches
    waiting = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing left: waits for the next fetch
    await lane.put(records[4:])
    assert [r.offset for r in await asyncio.wait_for(waiting, 5)] == [4]


async def test_the_first_batch_after_an_assignment_is_one_fetch() -> None:
    lane = InputLane([USAGE.topic])
    records = [InputRecord(USAGE, offset, None, b"", 0.0, 1) for offset in range(6)]
    for start in (0, 2, 4):
        await lane.put(records[start : start + 2])
    lane.restart()
    batches = lane.batches(max_records=100)
    assert [r.offset for r in await anext(batches)] == [0, 1]  # one fetch: committed sooner
    assert [r.offset for r in await anext(batches)] == [2, 3, 4, 5]  # then all that waits


async def test_acknowledged_input_records_are_what_faust_commits(harness: Harness) -> None:
    with_lane(harness)
    consumer = harness.consumer
    records = [InputRecord(USAGE, offset, None, b"", 0.0, GENERATION) for offset in (39, 40, 41, 41)]
    consumer.ack_inputs(records)
    # 39 is below the committed offset 40 (acknowledged before): faust ignores it too.
    assert consumer._acked[USAGE] == [40, 41] and consumer._n_acked == 2
    assert consumer._new_offset(USAGE) == 42  # faust commits up to the acknowledged ones


async def _first(lane: InputLane) -> Any:
    batches = lane.batches(max_records=10_000)
    yield await asyncio.wait_for(anext(batches), 5)


async def test_nothing_is_committed_past_an_input_offset_never_acknowledged(harness: Harness) -> None:
    """The watermark merge acknowledges out of offset order: a message held for its event time
    (at the committed offset) while newer offsets of its topic, older in event time (events a
    producer sent again after a broker restart), are applied. faust's commit allowed a hole of
    exactly one offset at the head and committed past the held message: a kill or a rebalance
    then lost it for good (the soak's final snapshots differed from offline's)."""
    with_lane(harness)
    consumer = harness.consumer
    consumer.ack_inputs([InputRecord(USAGE, offset, None, b"", 0.0, GENERATION) for offset in (41, 42)])
    assert consumer._new_offset(USAGE) is None  # 40 (the committed offset) is still held
    consumer.ack_inputs([InputRecord(USAGE, 40, None, b"", 0.0, GENERATION)])
    assert consumer._new_offset(USAGE) == 43


async def test_without_a_committed_offset_nothing_is_committed_past_the_first_offset_read(
    harness: Harness,
) -> None:
    with_lane(harness)
    consumer = harness.consumer
    harness.records = {SUBS: [record(3), record(4), record(5)]}  # type: ignore[list-item]
    await harness.fetch()  # SUBS has no committed offset: reading started at 3
    consumer.ack_inputs([InputRecord(SUBS, offset, None, b"", 0.0, GENERATION) for offset in (4, 5)])
    assert consumer._new_offset(SUBS) is None
    consumer.ack_inputs([InputRecord(SUBS, 3, None, b"", 0.0, GENERATION)])
    assert consumer._new_offset(SUBS) == 6


async def test_a_topic_created_again_commits_its_new_offsets_from_where_reading_goes_on(
    harness: Harness,
) -> None:
    """The old topic's committed offset (40) dropped the new topic's acknowledgements below it,
    and without a head known since (no seek follows at an assignment) nothing was committed."""
    with_lane(harness)
    consumer = harness.consumer
    consumer._committed_offset = defaultdict(lambda: None, consumer._committed_offset)  # as faust's
    consumer.start_over(USAGE, 0)
    consumer.ack_inputs([InputRecord(USAGE, offset, None, b"", 0.0, GENERATION) for offset in (0, 1, 2)])
    assert consumer._new_offset(USAGE) == 3


class LivelockCheck:
    """faust's livelock check of one input partition (`verify_event_path`), as its consumer thread
    runs it every few seconds, on a worker started 10 min ago whose partition still has unread
    records; aiokafka's part (fetching) and the commits are healthy. `errors` are what it logged."""

    def __init__(self, monitor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.errors: list[str] = []
        thread = self.thread = SafeCommitThread.__new__(SafeCommitThread)
        app = SimpleNamespace(monitor=monitor, topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        app.conf = SimpleNamespace(stream_processing_timeout=300.0, broker_commit_livelock_soft_timeout=300.0)
        thread.consumer = SimpleNamespace(app=app)  # type: ignore[assignment]
        now = self.now = 10_000.0
        thread.time_started = now - 600
        thread.tp_stream_timeout_secs = thread.tp_commit_timeout_secs = 300.0
        unread = SimpleNamespace(highwater=50, position=40)
        assignment = SimpleNamespace(state_value=lambda tp: unread)
        fetcher = SimpleNamespace(
            _subscriptions=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
        )
        monkeypatch.setattr(thread, "_ensure_consumer", lambda: SimpleNamespace(_fetcher=fetcher))
        monkeypatch.setattr(thread, "_verify_aiokafka_event_path", lambda now, tp: False)
        logger = SimpleNamespace(error=lambda message, *args: self.errors.append(message % args))
        monkeypatch.setattr(thread, "log", logger, raising=False)

    def run(self, at: float) -> list[str]:
        self.errors.clear()
        self.thread.tp_last_committed_at = {USAGE: self.now + at - 1}  # commits are healthy
        self.thread.verify_event_path(self.now + at, USAGE)
        return self.errors


async def test_acknowledged_batches_tell_fausts_livelock_check_their_partitions_are_processed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane bypasses faust's streams, which note when they take an event; without the same
    note faust logged "Stream has not started processing" for every busy input partition of a
    worker running normally. With it the check keeps its meaning: it fires when no batch of the
    partition was acknowledged for `stream_processing_timeout`."""
    with_lane(harness)
    check = LivelockCheck(harness.app.monitor, monkeypatch)
    monkeypatch.setattr("streamer.stream.consumer.monotonic", lambda: check.now)
    assert "Stream has not started processing" in check.run(at=0)[0]  # what the workers logged
    harness.consumer.ack_inputs([InputRecord(USAGE, 40, None, b"", 0.0, GENERATION)])
    assert harness.app.monitor.stream_inbound_time == {USAGE: check.now}
    assert check.run(at=0) == []  # processing: nothing logged
    assert check.run(at=299) == []
    assert "Stream stopped processing, or is slow" in check.run(at=300)[0]  # a real stall still shows


async def test_a_seek_overtaken_by_a_later_one_anchors_nothing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeks run in the consumer thread in the order they begin, and the coroutines waiting on
    them resume in any order. The scorer's re-read from 16 and the fetch loop's seek to 19 both
    begin; the consumer reads from 19. The scorer's coroutine resuming first anchored the
    partition at 16: the next record (at 19) said 16-18 held no record, whatever they held."""
    with_lane(harness)
    consumer = harness.consumer
    done = {16: asyncio.Event(), 19: asyncio.Event()}

    async def seek(self: Any, partition: TP, offset: int) -> None:
        harness.sought.append((partition, offset))
        await done[offset].wait()

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek", seek)
    scorers = asyncio.ensure_future(consumer.seek(USAGE, 16))
    await asyncio.sleep(0)
    fetch_loops = asyncio.ensure_future(consumer.seek(USAGE, 19))
    await asyncio.sleep(0)
    assert harness.sought == [(USAGE, 16), (USAGE, 19)]  # the consumer is at 19
    done[16].set()
    await scorers
    assert consumer.read_position(USAGE) is None  # not known yet: another seek began since
    done[19].set()
    await fetch_loops
    assert consumer.read_position(USAGE) == (19, 19)
    harness.records = {USAGE: [record(19)]}  # type: ignore[list-item]
    harness.positions = {USAGE: 20, SUBS: 3}
    await harness.fetch()
    assert consumer.read_position(USAGE) == (20, 20)


async def test_without_a_committed_offset_nothing_is_committed_until_a_read_after_a_seek_says_where(
    harness: Harness,
) -> None:
    """A seek forgets where reading started (a partition without a committed offset yet): faust
    then committed from the lowest offset acknowledged, past any lower one still held."""
    with_lane(harness)
    consumer = harness.consumer
    harness.records = {SUBS: [record(3), record(4), record(5)]}  # type: ignore[list-item]
    await harness.fetch()
    await consumer.seek(SUBS, 3)  # the scorer re-reads from 3
    consumer.ack_inputs([InputRecord(SUBS, offset, None, b"", 0.0, GENERATION) for offset in (4, 5)])
    assert consumer._new_offset(SUBS) is None  # 3 may still be held
    await harness.fetch()  # reading started at 3 again
    assert consumer._new_offset(SUBS) is None
    consumer.ack_inputs([InputRecord(SUBS, 3, None, b"", 0.0, GENERATION)])
    assert consumer._new_offset(SUBS) == 6


async def test_a_re_read_from_above_records_still_held_does_not_move_the_head(harness: Harness) -> None:
    """Before a partition's first commit its head is where reading started. A seek forgot it,
    and the next fetch made the re-read's offset the head: 3-5 held in the merge, a re-read
    from 6 whose markers 6-8 passed when 9 followed on, and faust committed 10 past 3-5."""
    with_lane(harness)
    consumer = harness.consumer
    harness.records = {SUBS: [record(3), record(4), record(5)]}  # type: ignore[list-item]
    await harness.fetch()  # held in the merge: waiting for an older event of another topic
    await consumer.seek(SUBS, 6)  # 9 came without saying where reading went on: re-read from 6
    harness.records = {SUBS: [record(9)]}  # type: ignore[list-item]
    await harness.fetch()
    consumer.acknowledge_passed(SUBS, 6, 9)  # 6-8 held no record
    consumer.ack_inputs([InputRecord(SUBS, 9, None, b"", 0.0, GENERATION)])
    assert consumer._new_offset(SUBS) is None
    consumer.ack_inputs([InputRecord(SUBS, offset, None, b"", 0.0, GENERATION) for offset in (3, 4, 5)])
    assert consumer._new_offset(SUBS) == 10


async def test_acknowledgements_faust_keeps_across_a_revocation_commit_nothing_until_a_read_says_where(
    harness: Harness,
) -> None:
    """faust's revocation forgets a partition's acknowledgements and committed offset; a batch
    still releasing then acknowledged markers 20-27 after records 14-19 it held, and faust's
    commit timer (it runs through a rebalance) committed 28 after the seek that followed: the
    next owner read on from 28."""
    with_lane(harness)
    consumer = harness.consumer
    harness.records = {SUBS: [record(offset) for offset in range(13)]}  # type: ignore[list-item]
    await harness.fetch()
    consumer.ack_inputs([InputRecord(SUBS, offset, None, b"", 0.0, GENERATION) for offset in range(13)])
    consumer.acknowledge_passed(SUBS, 13, 14)
    for state in (consumer._acked, consumer._acked_index):  # faust's on_partitions_revoked
        state.pop(SUBS, None)
    consumer._committed_offset[SUBS] = None
    consumer.acknowledge_passed(SUBS, 20, 28)  # 14-19 are held in the merge
    await consumer.perform_seek()  # no committed offset: faust's seek leaves it where it was
    assert consumer._new_offset(SUBS) is None


async def test_a_re_seek_to_the_groups_committed_offset_makes_it_the_head(harness: Harness) -> None:
    """A member that just joined learns the group's committed offsets at faust's seek; before
    that a fetch overlapping a seek is read again from the group's committed offset. Taken only
    for the seek, the head stayed at the first offset read and held the commit."""
    with_lane(harness)
    consumer = harness.consumer
    harness.group = {SUBS: 30}
    harness.records = {SUBS: [record(33)]}  # type: ignore[list-item]
    harness.during = rebalance
    assert await harness.fetch() == {}
    assert harness.sought == [(SUBS, 30)] and consumer._committed_offset[SUBS] == 30
    harness.during = None
    harness.records = {SUBS: [record(30), record(31)]}  # type: ignore[list-item]
    await harness.fetch()
    consumer.ack_inputs([InputRecord(SUBS, offset, None, b"", 0.0, GENERATION) for offset in (30, 31)])
    assert consumer._new_offset(SUBS) == 32


class Drain:
    """faust's own `getmany` over the harness's fetch, with the consumer thread's fetch positions
    and seeks faked: what faust delivers, and where each changelog partition reads next."""

    def __init__(self, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        from faust.transport.utils import DefaultSchedulingStrategy

        import streamer.stream.consumer as consumer_module

        self.harness, consumer = harness, harness.consumer
        consumer.flow_active = True
        consumer._buffered_partitions = set()
        consumer.scheduler = DefaultSchedulingStrategy()
        consumer.log = SimpleNamespace(dev=lambda *args: None, warning=lambda *args: None)  # type: ignore[assignment]
        harness.app.monitor.track_tp_end_offset = lambda tp, offset: None
        base = faust_aiokafka.Consumer
        monkeypatch.setattr(base, "should_stop", False)
        monkeypatch.setattr(base, "highwater", lambda self, tp: 100)
        monkeypatch.setattr(base, "_to_message", lambda self, tp, r: SimpleNamespace(tp=tp, offset=r.offset))
        self.positions: dict[TP, int] = {}  # the consumer thread's fetch positions
        self.after: dict[TP, int] = {}  # the positions the last fetch left (`SafeCommitThread`)
        self.in_thread: list[tuple[TP, int]] = []  # seeks made there
        monkeypatch.setattr(consumer_module, "fetch_position", lambda kafka, tp: self.positions.get(tp))
        kafka = SimpleNamespace(seek=lambda tp, offset: self.in_thread.append((tp, offset)))

        async def call_thread(method: Callable[..., Any], *args: Any) -> Any:
            return await method(*args)

        consumer._thread = SimpleNamespace(  # type: ignore[assignment]
            call_thread=call_thread, _ensure_consumer=lambda: kafka, positions_after_fetch=self.after
        )

    def fetch_left(self, tp: TP, position: int) -> None:
        """The fetch drained `tp` up to `position`, and nothing moved it since."""
        self.after[tp] = self.positions[tp] = position

    async def delivered(self, stop_flow_after: int | None = None) -> list[tuple[TP, int]]:
        """The records faust's getmany delivers; with `stop_flow_after`, a rebalance stops the
        flow once that many were taken."""
        taken: list[tuple[TP, int]] = []
        async for tp, message in self.harness.consumer.getmany(1.0):
            taken.append((tp, message.offset))
            if len(taken) == stop_flow_after:
                self.harness.consumer.flow_active = False
        return taken


@pytest.fixture
def drain(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Drain:
    return Drain(harness, monkeypatch)


async def test_changelog_records_faust_drops_as_a_rebalance_stops_the_flow_are_read_again(
    harness: Harness, drain: Drain
) -> None:
    """A fetch waiting in the consumer thread as a rebalance began drained changelog records the
    table recovery had just sought to; faust dropped them (flow stopped) and sought back only
    partitions with a committed offset: the recovery waited for ever for records read past."""
    harness.records = {CHANGELOG: [record(7), record(8), record(9)]}  # type: ignore[list-item]
    drain.fetch_left(CHANGELOG, 10)  # the fetch moved the position past them
    harness.consumer.flow_active = False
    assert await drain.delivered() == []
    assert drain.in_thread == [(CHANGELOG, 7)]
    assert harness.consumer.changelog_rereads == 1


async def test_a_changelog_fetch_cut_short_is_read_again_from_its_first_record_not_delivered(
    harness: Harness, drain: Drain
) -> None:
    harness.records = {CHANGELOG: [record(7), record(8), record(9)]}  # type: ignore[list-item]
    drain.fetch_left(CHANGELOG, 10)
    assert await drain.delivered(stop_flow_after=1) == [(CHANGELOG, 7)]
    assert drain.in_thread == [(CHANGELOG, 8)]


async def test_a_paused_changelog_partitions_skipped_records_are_read_again(
    harness: Harness, drain: Drain
) -> None:
    harness.active = {USAGE, SUBS}  # the changelog paused: faust skips its records
    harness.records = {CHANGELOG: [record(7), record(8)]}  # type: ignore[list-item]
    drain.fetch_left(CHANGELOG, 9)
    assert await drain.delivered() == []
    assert drain.in_thread == [(CHANGELOG, 7)]


async def test_a_changelog_fetch_delivered_whole_or_sought_since_is_left_where_it_reads(
    harness: Harness, drain: Drain
) -> None:
    harness.records = {CHANGELOG: [record(7), record(8)]}  # type: ignore[list-item]
    drain.fetch_left(CHANGELOG, 9)
    assert await drain.delivered() == [(CHANGELOG, 7), (CHANGELOG, 8)]
    assert drain.in_thread == []  # all delivered: nothing to read again

    drain.positions[CHANGELOG] = 3  # the recovery sought it back since the fetch: its seek holds
    harness.consumer.flow_active = False
    assert await drain.delivered() == []
    assert drain.in_thread == []
    # Sought forwards since (a recovery from a store that holds the changelog up to 500): reading
    # from where the dropped fetch began would read the whole changelog again.
    drain.positions[CHANGELOG] = 500
    assert await drain.delivered() == []
    assert drain.in_thread == []
    del drain.positions[CHANGELOG]  # no longer assigned: no position, nothing to move
    assert await drain.delivered() == []
    assert drain.in_thread == [] and harness.consumer.changelog_rereads == 0


async def test_the_consumer_thread_notes_where_each_fetch_left_every_changelog_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read in the consumer thread right after the drain, before any await: no seek between."""
    import streamer.stream.consumer as consumer_module

    async def fetch_records(
        self: Any, consumer: Any, active: Any, timeout: Any = None, max_records: Any = None
    ) -> Any:
        return {CHANGELOG: ["c7", "c8"], USAGE: ["u40"]}

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "_fetch_records", fetch_records)
    monkeypatch.setattr(consumer_module, "fetch_position", lambda kafka, tp: {CHANGELOG: 9, USAGE: 41}[tp])
    thread = SafeCommitThread.__new__(SafeCommitThread)
    thread.consumer = SimpleNamespace(_is_changelog_tp=lambda tp: tp == CHANGELOG)  # type: ignore[assignment]
    records = await thread._fetch_records(object(), {CHANGELOG, USAGE}, timeout=1.0, max_records=10)
    assert records == {CHANGELOG: ["c7", "c8"], USAGE: ["u40"]}
    assert thread.positions_after_fetch == {CHANGELOG: 9}  # only a changelog is ever read back
