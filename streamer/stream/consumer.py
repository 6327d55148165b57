"""faust's aiokafka transport with the rebalance race that lost input messages closed.

faust fetches in a background loop: it awaits a fetch from the consumer thread, then delivers
the records. A fetch can be drained in the consumer thread just before faust seeks the
partitions (to their committed offsets, after every rebalance) and reach the loop just after.
Its records then pass for current ones and reach the agent ahead of the re-read messages;
faust's read-offset bookkeeping then drops the re-read messages (their offsets are below the
stale ones) or records the skipped range as an offset gap, which it treats as acknowledged and
commits past. Either way the partition's owner never sees some messages, and the group's
committed offset may pass them.

`RebalanceSafeConsumer` drops the input records of a fetch that overlapped a seek and seeks
their partitions back to their committed offsets, so they are read again. Changelog records,
which faust's table recovery reads by its own offsets, are delivered as faust delivers them, and
those of a fetch that faust dropped undelivered are read again (`getmany`). Every offset gap
faust records is logged, so a skipped range is never silent.

The consumer hands the input topics' records of each fetch to an `InputLane`
(`streamer/stream/input_lane.py`) rather than through faust's conductor and streams.
"""

from __future__ import annotations

import logging
import threading
from bisect import insort
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from time import monotonic
from typing import Any, cast

import faust
import faust.tables as faust_tables
from aiokafka import AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode.utils.futures import notify

from streamer.stream.clients import FETCH_WAIT_MS
from streamer.stream.faust_private import ack_lock, fetch_position, hold_produce_requests, recovery_pending
from streamer.stream.input_lane import InputLane, InputRecord, LaneReads
from streamer.stream.membership import Fence
from streamer.stream.origin import origin_header

log = logging.getLogger(__name__)


async def seek_if_assigned(kafka: Any, partition: TP, offset: int) -> None:
    """aiokafka's seek, in the consumer thread, unless the partition is no longer assigned: a
    seek decided on the event loop before an await (the offsets asked of the broker) can come
    after the consumer thread installed a new assignment, and aiokafka's `IllegalStateError`
    then ended the worker. The partition's new owner reads it from its committed offset."""
    if partition in kafka.assignment():
        kafka.seek(partition, offset)


# A range of offsets passed without a record (or stored) up to this long is acknowledged offset
# by offset, as faust keeps acknowledgements; a longer one is kept as a range (`acknowledge_passed`).
PASSED_ONE_BY_ONE = 10_000


class RebalanceSafeConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, minus deliveries of records fetched before a seek."""

    seeks = 0  # seeks of input partitions (faust's after each rebalance, and ours)
    dropped_fetches = 0  # fetches whose input records were dropped and read again
    gaps = 0  # offset ranges faust skipped and counted as acknowledged (changelogs only)
    jumps = 0  # input offset ranges faust's reader passed over, left unacknowledged
    changelog_rereads = 0  # changelog partitions read again after faust dropped their records

    def log_end(self, tp: TP) -> int | None:
        """The partition's high watermark, open transactions included (`SafeCommitThread.log_end`;
        `highwater` is where a reader of committed transactions may read to)."""
        return cast(SafeCommitThread, self._thread).log_end(tp)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """faust's reader saw offsets `offset_from..offset_to` pass without a delivery and would
        count them as acknowledged, so a commit could pass messages never applied.

        For input topics we do not let it: the range stays unacknowledged, so the committed offset
        waits until the scorer has acknowledged those messages (it checks itself that every
        offset reaches it, and re-reads a partition that stops delivering); if they never come,
        a restart reads them again. Seen around rebalances under load. Changelog records keep
        faust's own bookkeeping, counted (`healthstream_offset_gaps_total`) and logged.
        """
        where = {"topic": tp.topic, "partition": tp.partition, "from": offset_from, "to": offset_to - 1}
        if not self._is_changelog_tp(tp):
            self.jumps += 1
            log.warning("faust's reader passed over input offsets; left unacknowledged", extra=where)
            return
        self.gaps += 1
        scorer = getattr(self.app, "scorer", None)  # its counters feed the logs and /metrics
        if scorer is not None:
            scorer.counters.consumer_gaps += 1
        log.warning("skipped an offset range", extra={**where, "seen_by": "consumer"})
        await super()._add_gap(tp, offset_from, offset_to)

    def group_coordinator(self) -> Any:
        """aiokafka's group coordinator of this consumer (None before it started)."""
        consumer = getattr(self._thread, "_consumer", None)
        return getattr(consumer, "_coordinator", None)

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return SafeCommitThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """faust's seek of every partition to its committed offset (after a rebalance, or a
        fetch taken while its flow was stopped), and of each input partition without one to its
        start.

        aiokafka's `seek_to_committed` leaves a partition whose committed offset is none (or 0)
        where its fetch position is. A partition this worker read before the rebalance and kept,
        with nothing committed yet (commits fail while the group rebalances), then went on from
        where the reads before had reached: what they had delivered was dropped with the
        revocation, and what faust dropped meanwhile was never read again. A small topic read to
        its end delivered nothing more, and its partition's merge held every other topic back
        until the scorer's stall check read it again, 10 s or more later (two workers starting
        together lost 13 and 16 s so, in 2 of 17 runs)."""
        self.seeks += 1
        self._lane_first().clear()
        self._lane_reads().sought()
        await super().perform_seek()
        self._lane_reads().sought()  # and whatever was noted while the seek was on its way
        lane: InputLane | None = getattr(self.app, "input_lane", None)
        if lane is None:
            return
        committed = self._committed_offset
        unsought = sorted(tp for tp in self.assignment() if tp.topic in lane.topics and not committed.get(tp))
        if not unsought:
            return
        starts = await self.earliest_offsets(*unsought)
        for tp in unsought:
            if tp in starts:
                await self.seek(tp, starts[tp])
        log.info(
            "input partitions without a committed offset read from their start",
            extra={"partitions": len(starts)},
        )

    async def _seek(self, partition: TP, offset: int) -> None:
        """faust's seek, made in the consumer thread. faust calls aiokafka's `seek` from the
        event loop's thread, and a fetch being handed out in the consumer thread meanwhile
        crashed the fetcher (`KeyError` in aiokafka's `fetched_records`; the worker exited):
        seen once in 14 starts of two workers, when each start sought every input partition."""
        thread = self._thread
        await thread.call_thread(seek_if_assigned, thread._ensure_consumer(), partition, offset)

    async def seek(self, partition: TP, offset: int) -> None:
        self.seeks += 1
        self._read_from(partition, offset)
        seek = self._lane_reads().sought(partition)
        await super().seek(partition, offset)
        self._lane_reads().arrived(partition, offset, seek)

    def read_position(self, tp: TP) -> tuple[int, int] | None:
        """`LaneReads.read_position`: no record lies between the two offsets."""
        return self._lane_reads().read_position(tp)

    def acknowledge_passed(self, tp: TP, start: int, stop: int) -> None:
        """Acknowledge offsets `start..stop-1` that hold no record (see `read_position`) or that
        the stored state has, so that commits pass them once everything before them is
        acknowledged.

        A range of more than `PASSED_ONE_BY_ONE` offsets is kept as a range (`_passed`), not
        offset by offset as faust keeps acknowledgements: a worker down longer than the topic's
        retention passes every offset deleted meanwhile, and 10 million of them took 0.7 GB and
        seconds of the event loop (a day of 1,000 events/s, 6 GB: killed, restarted, again)."""
        if tp not in self.assignment():
            return
        with ack_lock:
            committed = self._committed_offset[tp]
            if committed is not None:
                start = max(start, committed)
            if stop - start > PASSED_ONE_BY_ONE:
                insort(self._passed_ranges().setdefault(tp, []), (start, stop))
            else:
                index, acked = self._acked_index[tp], self._acked[tp]
                for offset in range(start, stop):
                    if offset not in index:
                        index.add(offset)
                        acked.append(offset)
            notify(self._waiting_for_ack)

    def _passed_ranges(self) -> dict[TP, list[tuple[int, int]]]:
        """Per input partition, the ranges of offsets acknowledged as passed in bulk, sorted."""
        passed: dict[TP, list[tuple[int, int]]] | None = self.__dict__.get("_passed")
        if passed is None:
            passed = self.__dict__["_passed"] = {}
        return passed

    def _take_passed(self, tp: TP, head: int) -> int:
        """Count the bulk-passed ranges the head reaches as acknowledged: past the head and the
        acknowledged offsets that follow it, one offset stands for what is passed (acknowledged,
        over a committed offset just below it), so faust commits past the range as it would
        past acknowledged offsets. A range the head does not reach waits. Returns the head the
        commit counts from: `head`, or that committed offset."""
        ranges = self._passed_ranges().get(tp)
        if not ranges:
            return head
        index, acked = self._acked_index[tp], self._acked[tp]
        start, took = head, False
        while True:
            while head in index:
                head += 1
            if not ranges or ranges[0][0] > head:
                break
            stop = ranges.pop(0)[1]
            if stop > head:
                head, took = stop, True
        if not ranges:
            del self._passed_ranges()[tp]
        if not took:
            return start
        kept = [offset for offset in acked if offset >= head]
        acked[:] = [head - 1, *kept]
        index.clear()
        index.update(acked)
        self._committed_offset[tp] = head - 1
        return head - 1

    def start_over(self, tp: TP, start: int | None = None) -> None:
        """Forget what faust keeps of `tp`'s reads, acknowledgements and commits, as it does at a
        revocation: the topic was deleted and created again, and those offsets were the old
        topic's (faust dropped the new topic's records below its read offset, and would not
        commit below the old committed offset). Reading goes on from `start` (the head commits
        count from), or from where a seek that follows puts it."""
        with ack_lock:
            for state in (
                self._gap,
                self._acked,
                self._acked_index,
                self._read_offset,
                self._committed_offset,
                self._passed_ranges(),
            ):
                state.pop(tp, None)
        self._lane_first().pop(tp, None)
        if start is not None:
            self._read_from(tp, start)

    def _fetch_position(self, tp: TP) -> int | None:
        return fetch_position(self._thread._ensure_consumer(), tp)

    def _lane_reads(self) -> LaneReads:
        reads: LaneReads | None = self.__dict__.get("_lane_reads_state")
        if reads is None:
            reads = self.__dict__["_lane_reads_state"] = LaneReads()
        return reads

    def _lane_first(self) -> dict[TP, int]:
        """Per input partition, the lowest offset reading started from since faust's last seek
        (a seek of ours, or the first record the lane delivered): the head, for a partition the
        group has no committed offset for yet. A re-read never raises it: re-reading from above
        records still held in the merge made that offset the head, and the commit passed them."""
        first: dict[TP, int] | None = self.__dict__.get("_lane_first_offsets")
        if first is None:
            first = self.__dict__["_lane_first_offsets"] = {}
        return first

    def _read_from(self, tp: TP, offset: int) -> None:
        """Reading `tp` started (again) at `offset`: the head is the lowest such offset."""
        first = self._lane_first()
        first[tp] = min(first.get(tp, offset), offset)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for `tp`: faust's, unless an offset at the head was never
        acknowledged.

        faust commits up to the first run of consecutive acknowledged offsets, but lets one
        unacknowledged offset at the head pass (it compares the lowest acknowledged offset with
        the committed one as if that were the last offset read, not the next): committed 40,
        acknowledged 41 and 42, it commits 43. The watermark merge acknowledges out of offset
        order (a message waits for its event time while later offsets of its topic, older in
        event time, are applied: events a producer sent again after a broker restart), so the
        group committed past a message still held; a kill or a rebalance then lost it for good.
        Nothing is committed while the head is not known either: no committed offset yet, and
        no read since faust's last seek (faust would commit from whatever offset was
        acknowledged lowest).
        """
        if not self._is_changelog_tp(tp):
            committed = self._committed_offset.get(tp)
            start = committed if committed is not None else self._lane_first().get(tp)
            if start is not None:
                start = self._take_passed(tp, start)
            acked = self._acked.get(tp)
            if acked and (start is None or min(acked) > start):
                return None
        offset: int | None = super()._new_offset(tp)
        return offset

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """faust's, then the changelog records of its fetch that it did not deliver read again.

        faust drops what is left of a fetch when its flow stopped (a rebalance) before or while
        it hands the records out, or the generation changed meanwhile, and skips a paused
        partition's; it then seeks back only the partitions with a committed offset, never a
        changelog. A fetch that waited in the consumer thread as a rebalance began drains what the
        fetcher holds of every partition (faust passes aiokafka its live set of active
        partitions, which the rebalance empties, and aiokafka reads an empty set as all of
        them), changelog records included that the table recovery had just sought to: dropped,
        the recovery waited for ever for records already read past (a worker taking over
        partitions stood still until the next rebalance), or, had only part of them gone, would
        have ended without them. `rewind` seeks each changelog partition back to its first
        record not delivered, if nothing moved its position since the fetch drained: that reads
        nothing twice that the recovery took and loses nothing, since a changelog read again
        from an earlier offset gives the same table."""
        fetched: dict[TP, tuple[int, int, int]] = {}
        self._changelog_fetch = fetched  # filled by `_wait_next_records`
        delivered: dict[TP, int] = {}
        async for tp, message in super().getmany(timeout):
            if tp in fetched:
                delivered[tp] = message.offset
            yield tp, message
        undelivered = {
            tp: (first if tp not in delivered else delivered[tp] + 1, after)
            for tp, (first, last, after) in fetched.items()
            if delivered.get(tp, first - 1) < last
        }
        if undelivered:
            await self._read_changelogs_again(undelivered)

    async def _read_changelogs_again(self, undelivered: Mapping[TP, tuple[int, int]]) -> None:
        thread = self._thread
        moved = await thread.call_thread(rewind, thread._ensure_consumer(), undelivered)
        if moved:
            self.changelog_rereads += len(moved)
            log.info(  # routine in rebalances, where faust stops the flow under a fetch: costs a re-read
                "changelog records fetched and dropped undelivered by faust: read again",
                extra={"partitions": {f"{tp.topic}:{tp.partition}": span for tp, span in moved.items()}},
            )

    async def _wait_next_records(self, timeout: float) -> Any:
        records, active_partitions = await self._lane_records(timeout)
        fetched: dict[TP, tuple[int, int, int]] | None = self.__dict__.get("_changelog_fetch")
        if fetched is not None and records:
            after: Mapping[Any, int | None] = getattr(self._thread, "positions_after_fetch", {})
            for tp, batch in records.items():
                if batch and self._is_changelog_tp(tp) and (position := after.get(tp)) is not None:
                    fetched[tp] = (batch[0].offset, batch[-1].offset, position)
        return records, active_partitions

    async def _lane_records(self, timeout: float) -> Any:
        """faust's next fetch, its input records handed to the lane: the rest, for faust."""
        records, active_partitions = await self._fresh_records(timeout)
        lane: InputLane | None = getattr(self.app, "input_lane", None)
        if lane is None:
            return records, active_partitions
        reads = self._lane_reads()
        if not self.flow_active:
            # faust's path drops these records (and seeks back after the rebalance)
            for tp in records:
                if tp.topic in lane.topics:
                    reads.dropped(TP(tp.topic, tp.partition))
            return records, active_partitions
        generation, seeks = self.app.consumer_generation_id, self.seeks
        rest: dict[Any, Any] = {}
        batch: list[InputRecord] = []
        for tp, fetched in records.items():
            if tp.topic not in lane.topics:
                rest[tp] = fetched
                continue
            if not fetched:
                continue
            key = TP(tp.topic, tp.partition)
            if (
                active_partitions is not None
                and tp not in active_partitions
                and tp not in self._buffered_partitions
            ):
                reads.dropped(key)
                continue  # as faust's getmany: a paused partition's records are not delivered
            self._read_from(key, fetched[0].offset)
            follows = reads.follows(key)
            for r in fetched:
                at = (r.timestamp or 0) / 1000.0
                origin = origin_header(r.headers) if r.headers else None
                batch.append(InputRecord(key, r.offset, r.key, r.value, at, generation, follows, origin))
                follows = r.offset + 1
            reads.hand(key, fetched[-1].offset)
            self._read_offset[key] = fetched[-1].offset
        if batch:
            await lane.put(batch)
        if seeks == self.seeks:  # no seek while the lane took the batch: the positions hold
            # Between two fetches: the consumer thread is not moving the positions. Only
            # anchored partitions can use one (`LaneReads.note`).
            for tp in list(reads.since):
                if (position := self._fetch_position(tp)) is not None:
                    reads.note(tp, position)
        return rest, active_partitions

    def ack_inputs(self, records: Iterable[InputRecord]) -> None:
        """Acknowledge input records of the lane: what faust's `Consumer.ack` does for one of its
        messages, for a whole batch. Commits never pass an offset not acknowledged here.

        Also tells faust's monitor that the partitions of the batch are being processed, as
        faust's streams do for each event (`Monitor.on_stream_event_in`): its livelock check
        (every few seconds, `AIOKafkaConsumerThread.verify_event_path`) reads that time, and
        without it logged "Stream has not started processing TP(...)" as an error for every
        input partition with unread records once the worker had run `stream_processing_timeout`
        (5 min), while the lane processed them normally. Raising that timeout instead would
        also have silenced faust's checks that aiokafka stopped fetching, which share it; fed
        this way, the error now means what it says: no batch of that partition acknowledged
        for 5 min while it has unread records."""
        partitions: set[TP] = set()
        previous = None  # a fetch's records share their TP: hashed once per run of them
        with ack_lock:
            committed_offsets, acked_index, acked = self._committed_offset, self._acked_index, self._acked
            count = 0
            for record in records:
                tp, offset = record.tp, record.offset
                if tp is not previous:
                    partitions.add(tp)
                    previous = tp
                committed = committed_offsets[tp]
                if committed is None or offset >= committed:
                    index = acked_index[tp]
                    if offset not in index:
                        index.add(offset)
                        acked[tp].append(offset)
                        count += 1
            self._n_acked += count
            notify(self._waiting_for_ack)
        inbound, now = self.app.monitor.stream_inbound_time, monotonic()
        for tp in partitions:
            inbound[tp] = now

    async def _fresh_records(self, timeout: float) -> Any:
        """faust's next fetch, minus the input records of a fetch that overlapped a seek."""
        seeks = self.seeks
        records, active_partitions = await super()._wait_next_records(timeout)
        if not records or seeks == self.seeks:
            return records, active_partitions
        stale = [tp for tp in records if not self._is_changelog_tp(tp)]
        if not stale:
            return records, active_partitions
        try:
            offsets = await self._seek_offsets(stale)
        except Exception as exc:  # records may only be dropped when they will be read again
            log.warning("could not seek back a fetch that overlapped a seek", extra={"error": repr(exc)})
            return records, active_partitions
        self.dropped_fetches += 1
        log.info(
            "read again a fetch that overlapped a seek",
            extra={"records": sum(len(records[tp]) for tp in stale), "partitions": len(stale)},
        )
        for tp, offset in offsets.items():
            await self.seek(tp, offset)
        return {tp: batch for tp, batch in records.items() if tp not in stale}, active_partitions

    async def _seek_offsets(self, tps: list[TP]) -> dict[TP, int]:
        """Where to read the input partitions again: their committed offsets (at or before
        anything not yet acknowledged), or their start without one. Partitions no longer
        assigned are left to their new owner."""
        assigned = self.assignment()
        found = {tp: self._committed_offset.get(tp) for tp in tps if tp in assigned}
        offsets = {tp: offset for tp, offset in found.items() if offset is not None}
        missing = [tp for tp, offset in found.items() if offset is None]
        if missing:
            # faust learns the group's committed offsets only at its own seek: a member that just
            # joined knows none yet. Reading such a partition from its start re-read everything
            # the group had committed, and faust's seek then jumped forward (an offset gap).
            try:
                committed = await self._group_committed(missing)
                # faust's own record of them, else a head at the start would hold the commit
                self._committed_offset.update(committed)
            except Exception as exc:
                log.warning("could not read the group's committed offsets", extra={"error": repr(exc)})
                committed = {}
            offsets.update(committed)
            missing = [tp for tp in missing if tp not in committed]
        if missing:
            starts = await self.earliest_offsets(*missing)
            offsets.update({tp: starts[tp] for tp in missing})  # KeyError: no start, no drop
        return offsets

    async def _group_committed(self, tps: list[TP]) -> dict[TP, int]:
        """The consumer group's committed offsets of `tps` as the broker has them (none for a
        partition the group never committed)."""
        bootstrap = ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker_consumer)
        # TLS and SASL as faust's own clients have them
        security = faust_aiokafka.credentials_to_aiokafka_auth(self.app.conf.broker_credentials)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security)
        await admin.start()
        try:
            wanted = [KafkaTP(tp.topic, tp.partition) for tp in tps]
            found = await admin.list_consumer_group_offsets(self.app.conf.id, partitions=wanted)
        finally:
            await admin.close()
        return {TP(tp.topic, tp.partition): meta.offset for tp, meta in found.items() if meta.offset >= 0}


async def rewind(consumer: Any, offsets: Mapping[TP, tuple[int, int]]) -> dict[TP, tuple[int, int]]:
    """Seek each partition back to its offset, given as (offset, the position the fetch left),
    where its position is still the one the fetch left; returns {partition: (position, offset)}
    of those moved. Run in the consumer thread (`call_thread`), without an await, so that no
    seek of the table recovery's comes between reading a position and moving it. A partition
    sought since the fetch is left where that seek put it, backwards or forwards (a recovery
    from a store that holds the changelog up to an offset reads on from there, not from where a
    dropped fetch began), and so is a partition no longer assigned (no position)."""
    moved: dict[TP, tuple[int, int]] = {}
    for tp, (offset, left) in offsets.items():
        position = fetch_position(consumer, tp)
        if position is not None and position == left and position > offset:
            consumer.seek(tp, offset)
            moved[tp] = (position, offset)
    return moved


class SafeCommitThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, minus a crash found by the soak, and with a short fetch wait.

    The crash: it commits only the offsets of partitions still assigned, and when a rebalance
    revoked all of them meanwhile it handed aiokafka an empty commit, which raises
    ValueError({}); faust then crashed the thread and the worker exited with 1. Nothing to
    commit is not an error: the new owners commit.

    It reads committed transactions only (`isolation_level`): producers that write in
    transactions are ordinary, and their aborted records must not count.

    The fetch wait (`FETCH_WAIT_MS`): aiokafka keeps one fetch in flight per broker, for the
    partitions that have nothing buffered. While the busy partitions' records are still
    buffered, the next fetch asks only for the quiet ones (tickets, surveys, ...), and the
    broker holds it until one of them has data or faust's `fetch_max_wait_ms` (1,500 ms) runs
    out; the busy partitions cannot be fetched meanwhile. At 2,000 events/s that put 1.1-1.6 s
    between publishing and the scorer seeing an event.
    """

    # Per changelog partition of the last fetch, the consumer's position right after it drained
    # the records (`RebalanceSafeConsumer.getmany` reads a changelog's back only from there).
    positions_after_fetch: Mapping[Any, int | None] = {}

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        records = await super()._fetch_records(
            consumer, active_partitions, timeout=timeout, max_records=max_records
        )
        # In this thread and before any await: no seek can come between the drain and these.
        # Only a changelog's records are ever read back (`RebalanceSafeConsumer.getmany`).
        changelog = self.consumer._is_changelog_tp
        self.positions_after_fetch = {
            tp: fetch_position(consumer, tp) for tp in records or () if changelog(tp)
        }
        return records

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS  # read when the consumer starts its fetcher
        # faust reads committed only in its exactly-once mode: an aborted transaction's events
        # were applied. Read by the fetcher as it starts, like the fetch wait.
        consumer._isolation_level = "read_committed"
        return consumer

    def highwater(self, tp: TP) -> int:
        """Where the partition ends for a reader of committed transactions: its last stable
        offset, the high watermark when none is known yet. faust gives the stable offset only in
        its exactly-once mode; the high watermark counts the records of an open transaction, so
        a topic behind one never looked idle and the partition's other topics waited for it, up
        to the transaction's timeout (15 minutes at most; a producer opening one after another,
        for good). The scorer asks the broker for both ends before it counts a topic as idle,
        and waits behind an open transaction a few seconds at most (`InputReach.idle_topics`)."""
        consumer = self._ensure_consumer()
        stable = consumer.last_stable_offset(tp)
        if isinstance(stable, int) and stable >= 0:
            return stable
        return cast(int, consumer.highwater(tp))  # None before the partition's first fetch, as faust's

    def log_end(self, tp: TP) -> int | None:
        """Where the partition ends, the records of open transactions included (its high
        watermark): what the worker has still to apply. None before its first fetch."""
        return cast("int | None", self._ensure_consumer().highwater(tp))

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        assigned = self.assignment()
        if not any(tp in assigned for tp in offsets):
            log.info(
                "nothing to commit: the partitions were revoked meanwhile", extra={"partitions": len(offsets)}
            )
            return False
        return bool(await super()._commit(offsets))


class IdempotentProducer(faust_aiokafka.Producer):
    """faust's producer with the broker's idempotence on (a producer id and sequence numbers).

    aiokafka sends a batch again when its acknowledgement was lost (a broker restart, a dropped
    connection); without idempotence the broker appended the batch twice, so a dead letter was
    written twice (the soak caught one after its broker restart). faust turns it on only for
    its exactly-once mode; our outputs are at-least-once, but their resends should not be."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    def _new_producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        """aiokafka's producer, its produce requests held while the worker's membership is in
        doubt (`stream/membership.py`): records handed to it before the process stood still
        went out the moment it resumed, over the state and snapshots of the partitions' new
        owner. Those of the tables and the outputs alike."""
        client = super()._new_producer(transactional_id)
        app = self.transport.app

        def fence() -> Fence | None:
            found: Fence | None = getattr(app, "fence", None)  # set once the worker is built
            return found

        async def held() -> None:
            if (gate := fence()) is not None:
                await gate.passed("produce requests")

        def writable() -> bool:
            gate = fence()
            return gate is None or gate.problem() is None

        hold_produce_requests(client, held, writable)
        return client


class RebalanceSafeTransport(faust_aiokafka.Transport):
    Consumer = RebalanceSafeConsumer
    Producer = IdempotentProducer


class PromptTableManager(faust_tables.TableManager):
    """faust's table manager without the second it sleeps before it starts: faust waits in case
    tables are still being declared, and the consumer group is joined only after it. Every
    table of the worker is declared in `create_app`, before the app starts, so the group join
    (and the first commit) came a full second later than it needed to."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        """faust's, then: the rebalance has its assignment, and its recovery is asked for."""
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        cast(ScoringApp, self.app).assignment_made()


class ScoringApp(faust.App):
    """The worker's faust app: the standard one over `RebalanceSafeTransport`, and `before_stop`
    hooks that run first when it stops, while the tables and the producer are still open (faust
    closes them before it stops the agents)."""

    before_stop: list[Callable[[], Awaitable[None]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_stop = []
        # From a rebalance's start until its assignment has asked the tables for their recovery.
        self.awaiting_assignment = False
        # A rebalance starts in the consumer's thread and ends in the event loop's: the check of
        # an end and the flag it clears happen under this lock, or a start could come between.
        self._rebalance_flag = threading.Lock()

    def on_rebalance_start(self) -> None:
        with self._rebalance_flag:
            self.awaiting_assignment = True
            super().on_rebalance_start()

    def assignment_made(self) -> None:
        """The table manager asked for the new assignment's recovery (`PromptTableManager`)."""
        with self._rebalance_flag:
            self.awaiting_assignment = False

    def on_rebalance_end(self) -> None:
        """A table recovery ended: the rebalance is over, unless that recovery was an earlier
        rebalance's, ending after the next one began (faust checks the generation, then awaits
        the seek and the fetcher before it calls this). Taken as the end, it cleared the next
        rebalance's flag: the scorer read the tables before their recovery had run, and built
        a partition's peer references from a store that still lacked some of its accounts."""
        with self._rebalance_flag:
            pending = recovery_pending(self)
            if self.awaiting_assignment:
                pending = "its assignment has not come yet"
            if pending is None:
                super().on_rebalance_end()
                return
        log.info(
            "a table recovery ended after the next rebalance began: still rebalancing",
            extra={"why": pending},
        )

    def _new_transport(self) -> Any:
        return RebalanceSafeTransport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        """The hooks, then faust's own stop, which runs whatever a hook met: a hook that raised
        (a final checkpoint with the broker away) used to skip it, so the consumer was never
        stopped nor the producer flushed, and the watchdog ended the process with 0."""
        try:
            for hook in self.before_stop:
                try:
                    await hook()
                except Exception:
                    log.exception(
                        "a step of the worker's shutdown failed; stopping the rest (what was not "
                        "acknowledged is read again at the next start)",
                        extra={"step": getattr(hook, "__qualname__", repr(hook))},
                    )
        finally:
            await super().on_stop()
