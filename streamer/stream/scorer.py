"""Apply batches of input messages to the scoring core and carry the results out.

Per batch: decode every message; hold valid ones in their partition's watermark merge and apply
those it releases, in event-time order; send alerts, dead letters and changed snapshots (and,
without `overlap`, wait until Kafka has them). At a checkpoint (every batch, or with
`checkpoint_every_s` the batches of that long): make those outputs durable first, write account
state to the changelogged table and wait until Kafka has that too; only then write the partition
record (clock, applied input offsets, re-routed copies handled), and acknowledge the messages.
With `overlap` (the worker) a checkpoint's waits run while the next batches are applied, one
checkpoint at a time.

Offsets are committed only up to acknowledged messages, so a worker killed at any point re-reads
what it had not finished. A re-read message whose offset the
recovered partition record, or its account's record, lists is skipped (its effects are in the
recovered accounts, however old its event time); others are either in the recovered state
(dedupe by event id) or processed again, their outputs re-sent with the same ids (idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from streamer.contract.dead_letter import dead_letter_record
from streamer.contract.events import Event
from streamer.core.clock import DAY, iso, to_ms
from streamer.core.config import ScoreConfig
from streamer.core.engine import ACCEPTED, DUPLICATE, Outcome, PartitionEngine
from streamer.core.intake import Refused, admit, apply_checked, check, pass_time, run_ticks
from streamer.core.peers import PeerReference
from streamer.partitioning import partition_of
from streamer.projection.port import NoProjection, Projection
from streamer.settings import Settings
from streamer.state.codec import StateDecodeError, decode_partition, decode_peers
from streamer.state.copies import copy_digest
from streamer.state.partition import PartitionRecord
from streamer.stream.accounts import TableAccounts
from streamer.stream.bounded_batches import Unread
from streamer.stream.checkpoint import Checkpoint, acknowledge_each
from streamer.stream.context import PartitionEvent, acting_as
from streamer.stream.counters import Counters
from streamer.stream.dead_letters import (
    DeadLetterLog,
    Ledger,
    PositionDecodeError,
    decode_position,
    encode_position,
    position_key,
)
from streamer.stream.membership import Fence, Fenced
from streamer.stream.merge import PartitionMerge
from streamer.stream.origin import ORIGIN_HEADER, Origin, decode_origin, encode_origin
from streamer.stream.pending import Pending
from streamer.stream.ports import Message, Offsets, Sink, TopicPartition
from streamer.stream.reach import InputReach
from streamer.stream.stalls import StallWatch
from streamer.stream.tables import Changelogs, NoChangelogs
from streamer.stream.topics import INPUT_RECORD_MAX_BYTES, RECORD_OVERHEAD_BYTES

log = logging.getLogger(__name__)


# A message a merge holds: the input event (`.message`), the event it decodes to, and whether the
# recovered accounts hold it already (its account record lists it: applied before a kill that
# left the partition record behind), so that releasing it only moves stream time past it.
Held = tuple[Any, Event, bool]


# Messages applied between two checkpoints (all partitions). A merge can hold tens of thousands:
# at a start (or after a rebalance) a backlog's big topic delivers long before a small one of
# the same partition has delivered anything, and everything waits for it. Released at once,
# they were one batch of a few CPU seconds before the first commit (and a SIGTERM waited for
# all of it); now a checkpoint follows every `RELEASE_MAX`, and the rest is released right after.
RELEASE_MAX = 4000

# The event time a checkpoint may apply of one partition, from where the partition stood when the
# checkpoint began. A worker killed while a checkpoint writes its account records leaves some of
# them ahead of the partition record the next owner starts from, and the next owner builds the
# peer references of the midnights in between from those accounts as they are. One ahead by more
# than about four weeks has let go of usage days a reference reads (it keeps `HORIZON_DAYS`, 64;
# a reference reads the 28 days ending 8 days before its midnight): a backlog released 4,000
# messages at a time spanned 50 days of a partition, and a kill amid a checkpoint's account
# records gave the next owner alerts offline never raised (tests/stream/test_checkpoint_span.py).
# Half that, with margin; a week cost the worker 7-12% more CPU on a year's backlog (more
# checkpoints), two weeks about half of it.
CHECKPOINT_SPAN = 14 * DAY

# How often a worker makes the account state durable (`Scorer.checkpoint_every_s`): outputs go
# out after every batch, the accounts, partition records and acknowledgements at most this often.
CHECKPOINT_EVERY_S = 0.5

# Messages applied between two turns of the event loop while a release runs (`overlap`): a
# release of `RELEASE_MAX` messages is about a quarter of a second of CPU, and the checkpoint in
# flight (with the Kafka client's sends and acknowledgements) moves only when the loop turns.
# On the bench stream the next checkpoint then waited for the one before 1.5 s per run without
# these turns and 0.76 s with them (docs/performance.md, *The checkpoint that overlaps*).
YIELD_EVERY = 200

# murmur2 is pure Python in aiokafka: a few per cent of the worker's CPU when hashed per message.
# Accounts repeat, so their partitions are remembered (bounded; the least recently used go).
_partition_of = lru_cache(maxsize=1 << 17)(partition_of)


def _too_large_to_reroute(copy_bytes: int, limit: int) -> str:
    return (
        f"not keyed by its account_id, and its copy keyed to the account's partition ({copy_bytes:,} "
        f"bytes) is larger than the input topic takes (max.message.bytes {limit:,}): publish it "
        "with its account_id as the key, or raise the topic's max.message.bytes"
    )


def dead_letter(message: Message, error: str) -> dict[str, Any]:
    """The `cs.deadletter` record for a rejected message (original bytes kept; a re-routed copy's
    also names where its header says it was written)."""
    origin = decode_origin(message.origin)
    copied = None if origin is None else (origin.partition, origin.offset)
    return dead_letter_record(
        message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        error=error,
        rerouted_from=copied,
    )


class Scorer:
    """One worker's partition engines over the tables, fed batch by batch."""

    def __init__(
        self,
        settings: Settings,
        config: ScoreConfig,
        accounts_table: Any,
        clocks_table: Any,
        sink: Sink,
        offsets: Offsets,
        projection: Projection | None = None,
        acknowledge: Callable[[Sequence[Any]], None] = acknowledge_each,
        dead_letters: DeadLetterLog | None = None,
        checkpoint_every_s: float = 0.0,
        changelogs: Changelogs | None = None,
        overlap: bool = False,
        fence: Fence | None = None,
    ) -> None:
        self.settings = settings
        # Waits until the tables' changelog records are in Kafka (None: tables without one).
        self.changelogs: Changelogs = changelogs or NoChangelogs()
        # 0: every batch is a checkpoint. Otherwise a batch's outputs are made durable at once and
        # its state (accounts, partition records, acknowledgements) with the batches that follow,
        # once this long has passed since the oldest of them (`_checkpoint_due`).
        self.checkpoint_every_s = checkpoint_every_s
        self._pending = Pending()
        # False: every checkpoint is complete before the next batch is applied. True (the
        # worker): a checkpoint's waits on the broker overlap the batches after it, with at
        # most one checkpoint in flight (`_checkpoint`), and a batch's outputs are handed over
        # without waiting for them.
        self.overlap = overlap
        self._inflight: asyncio.Future[None] | None = None  # the checkpoint being completed
        # Holds applying and writing while the group membership is in doubt (`stream/membership.py`).
        self.fence = fence if fence is not None else Fence(offsets.member_problem)
        self._sent: asyncio.Future[None] | None = None  # the last batch's outputs, handed over
        # Read back to write each dead letter once (`dead_letters`); None: always written.
        self.dead_letters = dead_letters
        self.ledgers: dict[int, Ledger] = {}
        # partition -> input topics created again since the assignment (their old dead letters
        # are not this topic's: `_start_over_if_created_again`)
        self._started_over: dict[int, set[str]] = {}
        self.acknowledge = acknowledge  # the batch's messages, once its effects are durable
        self.config = config
        self.accounts_table = accounts_table
        self.clocks_table = clocks_table
        self.sink = sink
        self.offsets = offsets
        self.projection: Projection = projection or NoProjection()
        self.families = {topic: family for family, topic in settings.input_topics.items()}
        self.engines: dict[int, PartitionEngine] = {}
        self.stores: dict[int, TableAccounts] = {}
        self.merges: dict[int, PartitionMerge[Held]] = {}
        self.records: dict[int, PartitionRecord] = {}
        # per input, the offset below which its durable partition record lists every message
        # as handled: the floor a re-routed copy carries (`streamer/state/copies.py`)
        self._floors: dict[TopicPartition, int] = {}
        self.peers_written: dict[int, int] = {}  # partition -> midnight of its stored newest reference
        self.stalls = StallWatch()  # when each input last delivered (`reread_stalled`)
        self.lock = asyncio.Lock()
        self.paused = False  # between a revocation and the next assignment
        self.stopping = False  # the worker is shutting down: apply and acknowledge nothing more
        self.revoking = False  # a rebalance waits for the batch in flight: release no more after it
        self.stopped = False  # the last checkpoint of a stop is in Kafka (the local stores agree)
        self._dropped = False  # the last revocation dropped what was unwritten (`assigned`)
        # A checkpoint was given up at the fence (`_settle`). Its `prepare` had moved the
        # partition records past its messages and taken its accounts off the dirty list: a later
        # checkpoint would claim those messages applied while their accounts were never written
        # (lost for good). Nothing more is applied or written until the partitions are forgotten.
        self._given_up = False
        # A checkpoint given up after its table writes left records in the local stores that the
        # changelogs never had; the same worker may own the partition again, and its re-read
        # messages are then found in those records and acknowledged. The accounts it wrote are
        # written again at the partition's next checkpoint (`_engine`; partition -> account ids),
        # and until that checkpoint is complete (`_written_again`) a stop is not clean.
        self._unsent: dict[int, set[str]] = {}
        self._written_again: dict[int, set[str]] = {}
        self.counters = Counters()
        self.reach = InputReach(offsets, self.counters, self.merges)  # what each input delivers next
        self._held_back = False  # the last release left ready messages in a merge (`RELEASE_MAX`)
        # The largest record the input topics take, as the broker last said (`topics.describe_inputs`).
        self.input_record_limit = INPUT_RECORD_MAX_BYTES

    async def revoked(self) -> None:
        """A rebalance begins: let the batch in flight finish, make the state of the batches since
        the last checkpoint durable (or drop it, when the membership is in doubt or a checkpoint
        was given up at the fence: `_write_or_drop`), forget the partitions' engines and apply
        nothing until the new assignment.

        Engines are rebuilt from the tables on next use; messages held in the merges were never
        acknowledged, and the consumer seeks back to the committed offsets, so they come again.
        Until the assignment, messages still buffered from before the rebalance look current
        (same generation) but must not be applied: their table writes could be lost to the
        table recovery while their acknowledgements are committed.
        """
        self.revoking = True  # a long release leaves at its next checkpoint (`_release_all`)
        self.fence.giving_up = True  # writes waiting for the membership lease are dropped
        async with self.lock:
            await self._write_or_drop("a rebalance")
            self.revoking = False
            self.paused = True
            self.forget_partitions()

    async def assigned(self) -> None:
        """The new assignment: start afresh (messages of older generations are skipped).

        After a generation that ended in doubt, the producer's unsent records are dropped once
        more: a send that waited for room in a batch as the first drop came (the sink's, faust's
        send buffer's) went on with its record after it."""
        async with self.lock:
            await self._settle()
            if self._dropped:
                await self._drop_unwritten()
                self._dropped = False
            self.fence.giving_up = self.stopping
            self.paused = self.stopping
            self.forget_partitions()

    async def stop(self) -> None:
        """The worker is stopping (SIGTERM): let the batch in flight finish, then apply
        nothing more, before faust closes the tables and the producer that a batch writes to.

        The batch in flight completes first, while its tables and producer are still open.
        Before this, faust's shutdown closed the RocksDB stores under a batch in flight, which
        re-opened them for its table writes and then waited for ever on the stopped producer,
        until the shutdown watchdog ended the process.
        """
        self.stopping = True
        self.fence.giving_up = True
        began = time.monotonic()
        async with self.lock:  # the batch in flight has left
            left = time.monotonic()
            await self._write_or_drop("a stop")  # what is dropped is read again at the next start
            try:
                await self.changelogs.written()  # the dead-letter positions written after it too
            except Fenced:  # given up at the fence: read again at the next start
                self._given_up = True
            self.paused = True
            # The local stores agree with the changelogs only if nothing was given up or dropped:
            # a checkpoint given up after its table writes left records in the local stores
            # that the changelogs never had. Otherwise the next start rebuilds them.
            self.stopped = not (self._given_up or self._dropped or self._unsent or self._written_again)
        log.info(
            "stopped applying messages; those not acknowledged are read again at the next start",
            extra={
                "batch_s": round(left - began, 3),  # waiting for the batch in flight
                "checkpoint_s": round(time.monotonic() - left, 3),
            },
        )

    async def _write_or_drop(self, what: str) -> None:
        """Before a rebalance or a stop: make the batches since the last checkpoint durable, or,
        when the membership is in doubt or a checkpoint was given up at the fence, drop them
        and the outputs not yet in Kafka (`_drop_unwritten`)."""
        await self._settle()
        if not self._given_up and not self.fence.up(what):
            await self._checkpoint()
            if not self._given_up:
                return
        await self._drop_unwritten()

    def forget_partitions(self) -> None:
        """Drop the partition engines, stores, merges and records (rebuilt from the tables on
        next use)."""
        self._given_up = False
        for partition, unsent in self._written_again.items():  # not yet written: at the next owner
            self._unsent.setdefault(partition, set()).update(unsent)
        self._written_again.clear()
        self.engines.clear()
        self.stores.clear()
        self.merges.clear()
        self.records.clear()
        self._floors.clear()
        self.ledgers.clear()
        self._started_over.clear()
        self.peers_written.clear()
        self.stalls.forget()
        self.reach.forget()
        self._pending = Pending()  # never acknowledged: read again, applied to the stored state

    def _tables_ready(self) -> bool:
        """Whether an assignment is in force and its table recovery has ended: before that the
        tables are not the partitions' state yet, and nothing is read from them."""
        return not self.paused and self.offsets.settled()

    async def open_assigned(self) -> None:
        """Build the engine of every owned partition that has none yet (engines are otherwise
        built when a partition delivers), so the projection re-stages quiet partitions too."""
        async with self.lock:
            if not self._tables_ready():
                return
            for partition in sorted({p for topic, p in self.offsets.assigned() if topic in self.families}):
                self._engine(partition)

    def _record(self, partition: int) -> PartitionRecord:
        """The partition's stored clock and applied offsets (read once per assignment)."""
        record = self.records.get(partition)
        if record is None:
            key = f"clock-{partition}"
            raw = self.clocks_table.get(key)
            try:
                record = decode_partition(raw) if raw is not None else PartitionRecord()
            except StateDecodeError as exc:
                raise StateDecodeError(f"clocks table key {key!r}: {exc}") from exc
            self._of_this_deployment(key, record)
            self.records[partition] = record
            self._note_floors(partition, record)
        return record

    def _of_this_deployment(self, key: str, record: PartitionRecord) -> None:
        """StateDecodeError when the record lists input topics and none of this deployment's:
        the changelogs are another deployment's of the same app id (a new topic prefix with the
        default app id), whose stream time and offsets were taken as this one's without a word
        (every event of a new history dead-lettered as too late)."""
        theirs, ours = set(record.offsets.next) | set(record.offsets.above), set(self.families)
        if theirs and not theirs & ours:
            raise StateDecodeError(
                f"clocks table key {key!r} is the state of a deployment that reads "
                f"{', '.join(sorted(theirs)[:4])}, not {', '.join(sorted(ours))}: the changelogs of "
                f"app id {self.settings.app_id!r} belong to it; give this deployment an app id of "
                "its own (HEALTHSTREAM_APP_ID)"
            )

    def _note_floors(self, partition: int, record: PartitionRecord) -> None:
        """The partition's floors, from its record as stored (read, or just written)."""
        for topic, floor in record.offsets.next.items():
            self._floors[(topic, partition)] = floor

    def _has_state(self, partition: int) -> bool:
        """Whether input partition `partition` is one of the state's (`HEALTHSTREAM_PARTITIONS`):
        one an operator added to an input topic has no changelog partition (its events are
        re-routed to their account's)."""
        return partition < self.settings.partitions

    def _engine(self, partition: int) -> PartitionEngine:
        engine = self.engines.get(partition)
        if engine is None:
            count = self.settings.partitions
            store = TableAccounts(self.accounts_table, lambda key: partition_of(key, count) == partition)
            clock = self._record(partition).clock
            started = time.perf_counter()
            references = self._references(partition)
            history = not isinstance(self.projection, NoProjection)  # hour finals: history points
            engine = PartitionEngine(self.config, store, clock, references, keep_hour_finals=history)
            if references:
                self.peers_written[partition] = references[-1].tick
            unsent = self._unsent.pop(partition, None)
            if unsent is not None:
                self._written_again[partition] = unsent
                log.warning(
                    "a checkpoint given up after its table writes left records in the local store "
                    "that the changelog lacks; they are written again at the next checkpoint",
                    extra={"partition": partition, "accounts": store.write_again(sorted(unsent))},
                )
            log.info(
                "partition engine ready",
                extra={
                    "partition": partition,
                    "accounts": len(engine.members),
                    "stream_time": clock.stream_time,
                    "seconds": round(time.perf_counter() - started, 3),
                },
            )
            self.engines[partition], self.stores[partition] = engine, store
        return engine

    def _references(self, partition: int) -> list[PeerReference]:
        """The partition's stored peer references (the engine rebuilds those it lacks)."""
        key = f"peers-{partition}"
        raw = self.clocks_table.get(key)
        if raw is None:
            return []
        try:
            return decode_peers(raw)
        except StateDecodeError as exc:
            # A cache of what the accounts give: rebuilt as when the record is missing. It stopped
            # the worker, advising to rebuild every table from the input topics.
            log.warning(
                "a partition's stored peer references cannot be read; they are rebuilt from its accounts",
                extra={"key": key, "error": str(exc)},
            )
            return []

    def _merge(self, partition: int) -> PartitionMerge[Held]:
        merge = self.merges.get(partition)
        if merge is None:
            merge = self.merges[partition] = PartitionMerge(list(self.settings.input_topics.values()))
        return merge

    async def process(self, events: Sequence[Any]) -> None:
        """Take one batch of input messages (each with `.message`: an `InputRecord` in the worker, a
        faust event in tests); apply what the merges release."""
        async with self.lock:
            done: list[Any] = []
            owned, generation = self.offsets.assigned(), self.offsets.generation()
            current = self._tables_ready()  # else not even the partition records are read
            now = time.monotonic()
            gaps: dict[TopicPartition, tuple[int, int]] = {}  # refused: read again from [0]
            merges, records, counters, ledgers = self.merges, self.records, self.counters, self.ledgers
            for event in events:
                message = event.message
                topic, partition, offset = message.topic, message.partition, message.offset
                tp = (topic, partition)
                if not current or tp not in owned or message.generation_id != generation:
                    # Fetched before a rebalance or its recovery ended: the partition's owner
                    # reads it again from the committed offset (this worker too, if it kept the
                    # partition; the recovery ends with that seek).
                    counters.stale += 1
                    continue
                merge = merges.get(partition) or self._merge(partition)
                expected = merge.next_offset.get(topic, -1)
                if offset < expected:
                    counters.stale += 1  # delivered again after a re-read: held or applied
                    continue
                if tp in gaps:
                    continue  # after a skipped range: comes again once the partition is read again
                if offset != expected:  # the first since the assignment, or a skipped range
                    missing = await self._missing(merge, message)
                    if missing is not None:
                        gaps[tp] = (missing, offset)
                        continue
                self.stalls.delivered(tp, now)
                record = records.get(partition) or self._record(partition)
                if record.offsets.contains(topic, offset):
                    # Applied before a restart or rebalance: the stored accounts contain it.
                    counters.reread += 1
                    merge.skip(topic, offset)
                    done.append(event)
                    continue
                if partition not in ledgers and self.dead_letters is not None and self._has_state(partition):
                    # Once per assignment. Not for a partition added to an input topic: it has no
                    # partition record to move the position (its ledger only grew).
                    await self._ledger(partition)
                decoded = self._admit(message)
                if decoded is not None and self._in_account_record(message, decoded):
                    # The same, known from its account's record; held in its place all the same,
                    # since the partition record (stream time) may be older than the account's.
                    counters.reread += 1
                    merge.add(topic, offset, to_ms(decoded.occurred_at), (event, decoded, True))
                    continue
                counters.processed += 1
                if decoded is None:
                    merge.skip(topic, offset)
                    done.append(event)
                else:
                    merge.add(topic, offset, to_ms(decoded.occurred_at), (event, decoded, False))
            for (topic, partition), (missing, offset) in sorted(gaps.items()):
                self.counters.gap_rereads += 1
                log.warning(
                    "a delivery skipped input offsets; reading them again",
                    extra={"topic": topic, "partition": partition, "from": missing, "to": offset - 1},
                )
                await self.offsets.seek(topic, partition, missing)
            await self._release_all(done)
            if events:
                self.counters.last_latency_s = max(0.0, time.time() - events[-1].message.timestamp)
            self.stalls.busy(now)

    def _in_account_record(self, message: Message, event: Event) -> bool:
        """Whether the stored record of the event's account lists this message as applied.

        Used when the partition record does not: that one is written only once the batch's
        account records are in Kafka, while an account record carries its offsets in the same
        write as its state, so a kill between the two loses neither. Matched by the account
        in the event (the one it was applied to), not by the message key.
        """
        store = self.stores.get(message.partition)
        if store is None:
            self._engine(message.partition)
            store = self.stores[message.partition]
        return store.contains(event.account_id, message.topic, message.offset)

    async def _missing(self, merge: PartitionMerge[Held], message: Message) -> int | None:
        """The first offset of the message's topic partition that it skipped, or None.

        A delivery must follow the previous one of its topic partition (or, the first since the
        assignment, the offset consumption restarted from) unless the offsets in between are
        already in the stored state. A delivery that skips offsets (a fetch from a position
        that was sought away from, seen under load around rebalances) is refused and the
        partition read again from the first skipped offset: accepted, it moved the merge past
        the skipped messages, whose re-deliveries were then dropped as already delivered and
        whose offsets the next partition and account records claimed as handled, so they were
        lost for good. Offsets the broker no longer has (deleted by retention) are logged as
        `skipped an offset range` and counted in `offset_gaps`: those are lost.

        Offsets can also hold nothing to deliver: a transaction's commit or abort marker, an
        aborted transaction's records, records compaction removed. Such a range is taken when
        the consumer says it read across it without a record (`InputRecord.follows`: after the
        previous record it handed over, or from where a seek of ours left it; unknown for the
        first delivery after faust's seeks, which is then read again from the first skipped
        offset); its offsets are acknowledged as empty (`empty_offsets`), so commits pass them.
        A delivery that skips the same offsets again is not evidence: one fetched before the
        seek can still be on its way (taking it as such lost 1,589 messages in a kill test).
        """
        topic, partition = message.topic, message.partition
        tp = (topic, partition)
        expected = merge.next_offset.get(topic)
        if expected is None:  # the first delivery since the assignment
            if await self._start_over_if_created_again(topic, partition):
                # faust sought to the old topic's committed offset, and would drop acknowledgements
                # below it and commit nothing: the new topic's messages before it were never read
                # (at the next assignment too). Its messages count from its start.
                expected = (await self.offsets.start_offsets([tp])).get(tp, 0)
                self.offsets.start_over(topic, partition, expected)
            else:
                expected = (await self.offsets.restart_offsets([tp])).get(tp)
            if expected is None:
                # The broker could not be asked: the delivery must follow on from what the stored
                # state contains. Taken as following on whatever its offset, it had the next
                # partition record claim every offset before it as handled.
                expected = self._record(partition).offsets.contiguous_to(topic)
        if message.offset <= expected:
            return None
        stored = self._record(partition).offsets
        missing = next((o for o in range(expected, message.offset) if not stored.contains(topic, o)), None)
        if missing is None:
            # Applied before (the stored state has them) or without a record: a commit must pass
            # them, and nothing may deliver them now (a marker at the committed offset stalled
            # the commit for good).
            self.offsets.acknowledge_passed(topic, partition, expected, message.offset)
            return None
        start = (await self.offsets.start_offsets([tp])).get(tp)
        if start is not None and start > missing:
            deleted_to = min(start, message.offset)
            self.counters.offset_gaps += 1
            log.warning(
                "skipped an offset range",
                extra={
                    "topic": topic,
                    "partition": partition,
                    "from": missing,
                    "to": deleted_to - 1,
                    "seen_by": "scorer",
                    "reason": "deleted from the topic before it was read",
                },
            )
            # Gone for good, and nothing delivers them: unacknowledged, they held the group's
            # commit of the partition for ever (a worker down longer than the retention).
            self.offsets.acknowledge_passed(topic, partition, expected, deleted_to)
            if start >= message.offset:
                return None
            expected = start
            missing = next((o for o in range(start, message.offset) if not stored.contains(topic, o)), None)
            if missing is None:
                self.offsets.acknowledge_passed(topic, partition, start, message.offset)  # stored
                return None
        follows: int | None = getattr(message, "follows", None)  # an `InputRecord`'s
        if follows is not None and follows <= missing:
            # The consumer read on from `follows` to the message without a record in between.
            how = "skipped by the consumer's fetcher"
            self.reach.passed_over(topic, partition, missing, message.offset, how)
            if missing > expected:
                self.offsets.acknowledge_passed(topic, partition, expected, missing)  # stored
            return None
        return missing

    async def _start_over_if_created_again(self, topic: str, partition: int) -> bool:
        """An input topic deleted and created again (or truncated) ends before offsets the
        stored state says it applied: its new messages reuse those offsets, and were all taken
        for messages applied before (skipped without a word). Forget the topic's offsets in the
        partition record and in its accounts' records, so that its messages count from its new
        start; an event applied before that comes again is still a duplicate by its event id."""
        applied_to = self._record(partition).offsets.applied_to(topic)
        if applied_to == 0:
            return False
        end = (await self.offsets.end_offsets([(topic, partition)])).get((topic, partition))
        if end is None or end >= applied_to:
            return False
        await self._start_over(topic, partition, end, applied_to)
        return True

    async def _start_over(self, topic: str, partition: int, end: int, applied_to: int) -> None:
        """The topic partition ends at `end`, before offsets up to `applied_to` that this worker
        applied: forget them (see `_start_over_if_created_again`), and give the new topic the
        input topics' settings."""
        record = self._record(partition)
        record.offsets.forget(topic)
        record.copies.forget(topic)
        self._floors.pop((topic, partition), None)
        if partition not in self.stores:
            self._engine(partition)
        accounts = self.stores[partition].forget_offsets(topic)
        self._started_over.setdefault(partition, set()).add(topic)
        # Checkpointed at once (`_checkpoint_due`), then the group's offset set to the new start
        # (`_commit_starts`): until then the stored record listed the old offsets and the group
        # held the old committed offset, and a worker killed meanwhile found the new topic grown
        # past them at its next start, took it for the old one and skipped its first messages.
        self._pending.started_over.setdefault((topic, partition), PartitionEvent(topic, partition))
        self._merge(partition)  # a partition that delivered nothing since the assignment has none
        ledger = self.ledgers.get(partition)
        if ledger is not None:
            ledger.forget(lambda letter_topic, _: letter_topic == topic)
        log.error(
            "an input topic ends before the offsets this partition's state applied: it was "
            "deleted and created again, or truncated; its offsets count from its new start",
            extra={
                "topic": topic,
                "partition": partition,
                "end": end,
                "applied_to": applied_to,
                "accounts": accounts,
            },
        )
        await self.offsets.created_again(topic)

    async def release_idle(self) -> None:
        """Periodically: release what became ready because topics went idle meanwhile."""
        async with self.lock:
            if self._inflight is not None and self._inflight.done():
                await self._settle()  # a checkpoint that failed ends the worker here
            if not self.paused and any(len(merge) for merge in self.merges.values()):
                started = time.monotonic()
                await self._release_all([])
                self.stalls.busy(started)
            elif not self.paused and self._checkpoint_due():
                await self._checkpoint()

    async def reread_stalled(self) -> None:
        """Liveness: read a partition again when it has a backlog but delivered nothing for
        `STALL_S`. A topic with a backlog holds its partition's merge back (its older events
        must come first), so a fetch that never resumes would stall the whole partition."""
        async with self.lock:
            now = time.monotonic()
            if not self.offsets.settled():
                self.stalls.assigned_at = now  # nothing is fetched during a rebalance: not a stall
                return
            silent = self.stalls.silent([tp for tp in self.offsets.assigned() if tp[0] in self.families], now)
            if not silent:
                return
            next_offsets = await self.reach.next_offsets(silent)
            ends = await self.offsets.end_offsets([tp for tp in silent if tp in next_offsets])
            for tp, end in ends.items():
                if end > next_offsets[tp]:
                    log.warning(
                        "re-reading a stalled partition",
                        extra={"topic": tp[0], "partition": tp[1], "offset": next_offsets[tp], "end": end},
                    )
                    await self.offsets.seek(tp[0], tp[1], next_offsets[tp])
                    self.counters.rereads += 1
                elif end < next_offsets[tp]:
                    await self._read_created_again(*tp, end, next_offsets[tp])
                self.stalls.delivered(tp, now)  # checked: look again in STALL_S
            if self._pending.started_over and not self.paused:
                await self._checkpoint()

    async def _read_created_again(self, topic: str, partition: int, end: int, read_to: int) -> None:
        """The topic partition ends before where this worker read it to: the topic was deleted
        and created again (or truncated) while the worker ran. The consumer sat past its end and
        faust dropped its records below the old read offset, so the topic stalled without a
        word. Forget the old topic's offsets here and in the consumer, and read it from its
        start; its first delivery is then the first since an assignment.

        A checkpoint in flight completes first: it acknowledges old messages, which after the
        consumer forgot the old topic counted as the new topic's offsets."""
        await self._settle()
        applied_to = self._record(partition).offsets.applied_to(topic)
        await self._start_over(topic, partition, end, max(read_to, applied_to))
        merge = self.merges.get(partition)
        if merge is not None:
            merge.forget_topic(topic)
        self._pending.forget(topic, partition)
        self.offsets.start_over(topic, partition)
        start = (await self.offsets.start_offsets([(topic, partition)])).get((topic, partition), 0)
        await self.offsets.seek(topic, partition, start)

    async def _release_all(self, done: list[Any]) -> None:
        """`_release` until the merges hold nothing ready: a checkpoint per `RELEASE_MAX` messages.

        A rebalance or a stop waiting for this batch ends it at the next checkpoint: what is
        still held was never acknowledged and is read again. A member that keeps the group
        waiting past its rebalance timeout is dropped from it while still writing, and the new
        owner of its partitions could not know of the dead letters it writes meanwhile.

        Nothing is released once stopped or revoked (`paused`): after a stop faust closes the
        tables and the producer, and the local stores were declared consistent. Nor after a
        checkpoint was given up at the fence (`_given_up`): what is in memory is then ahead of
        what can be written, until the rebalance or the stop that gave it up forgets it."""
        if self.paused or self._given_up:
            return
        await self._release(done)
        while self._held_back and not self.stopping and not self.revoking:
            await self._release([])

    async def _release(self, done: list[Any]) -> None:
        """Apply what the merges release, then make the batch durable (`Checkpoint`).

        Nothing is applied while this worker's membership is in doubt (`Fence`): the messages
        stay held. A batch applied when the doubt arose (the process stood still meanwhile)
        is kept, its outputs and state unwritten, until the lease is renewed or the rebalance
        drops it."""
        if self.fence.up("applying"):
            self._held_back = False
            if done:  # skipped or re-read messages: acknowledged with the next checkpoint
                self._pending.add(done, {}, {}, time.monotonic())
            return
        counters, sink = self.counters, self.sink
        applied: dict[int, Any] = {}
        # partition -> account -> topic -> offsets applied to the account in this batch
        by_account: dict[int, dict[str, dict[str, list[int]]]] = {}
        owned = {partition for topic, partition in self.offsets.assigned() if topic in self.families}
        for partition in [p for p in self.merges if p not in owned]:
            del self.merges[partition]  # revoked meanwhile: never write state or outputs for it
        idle = await self.reach.idle_topics([p for p, merge in self.merges.items() if len(merge)])
        self._held_back = False
        budget = RELEASE_MAX  # messages applied before this checkpoint, over all partitions
        applying = 0  # messages applied in this release: the loop turns every `YIELD_EVERY`
        for partition, merge in sorted(self.merges.items()):
            if not len(merge):
                continue
            if budget <= 0:
                self._held_back = True  # this partition's turn comes after the checkpoint
                break
            start = self._span_from(partition, merge)
            ready = merge.release(idle[partition].__contains__, budget, start + CHECKPOINT_SPAN)
            if merge.held_at_until:
                self._held_back = self._pending.spanned = True  # the rest after this checkpoint
            if not ready:
                continue
            self._pending.span_from.setdefault(partition, start)
            if len(ready) == budget and len(merge):
                self._held_back = True  # maybe more ready: released after this checkpoint
            budget -= len(ready)
            with acting_as(ready[-1][0]):
                engine = self._engine(partition)
                mine = by_account[partition] = defaultdict(lambda: defaultdict(list))
                day = None
                for event, decoded, in_state in ready:
                    message = event.message
                    if message.origin is not None and self._copy_handled(message):
                        counters.copies_again += 1
                        done.append(event)
                        continue
                    at = to_ms(decoded.occurred_at)
                    if day is not None and at // DAY != day:
                        await self._publish_snapshots(engine)  # one per changed account and UTC day
                    day = at // DAY
                    if in_state:
                        await self._pass_time(engine, decoded)
                        done.append(event)
                        continue
                    await self._apply(engine, message, decoded)
                    done.append(event)
                    mine[decoded.account_id][message.topic].append(message.offset)
                    applying += 1
                    if self.overlap and not applying % YIELD_EVERY:
                        await asyncio.sleep(0)  # the checkpoint in flight and the client's I/O
                await self._publish_snapshots(engine)
            applied[partition] = ready[-1][0]
        if not done:
            if self._checkpoint_due():
                await self._checkpoint()
            return
        counters.batches += 1
        self._pending.add(done, applied, by_account, time.monotonic())
        if self.fence.up("the outputs of a batch"):
            return  # queued: written once the lease is renewed, dropped by a rebalance
        if self._checkpoint_due():
            await self._checkpoint()  # its first step makes this batch's outputs durable
        else:
            sent = self._sent = asyncio.ensure_future(sink.flush())  # the outputs; the state later
            if not self.overlap:
                await sent
            await self.projection.flush()

    def _span_from(self, partition: int, merge: PartitionMerge[Held]) -> int:
        """The event time from which this checkpoint's span of `partition` counts: where the
        partition stood when the checkpoint began (its stream time), or its first message held
        when that is later (a message cannot be split)."""
        start = self._pending.span_from.get(partition)
        if start is not None:
            return start
        engine = self.engines.get(partition)
        stood = engine.clock.stream_time if engine is not None else -1
        head = merge.head_at()
        return stood if head is None else max(stood, head)

    def _checkpoint_due(self) -> bool:
        """Whether the batches since the last checkpoint should be made durable now: after
        `checkpoint_every_s`, after `RELEASE_MAX` messages, and before a rebalance or a stop."""
        pending = self._pending
        if pending.started_over:
            return True
        if not pending.done:
            return False
        return (
            self.stopping
            or self.revoking
            or len(pending.done) >= RELEASE_MAX
            or pending.spanned
            or time.monotonic() - pending.since >= self.checkpoint_every_s
        )

    async def _checkpoint(self) -> None:
        """Make the batches since the last checkpoint durable (`Checkpoint`), then acknowledge
        them. Their outputs are on their way already, or go first (the checkpoint's first step).

        Until then their messages are unacknowledged: a worker killed meanwhile reads them again
        and applies them to the state of the last checkpoint, sending the same outputs again
        (the same ids), as it does for a batch killed before its checkpoint.

        With `overlap`, the checkpoint is prepared here (its records encoded as the state is
        now) and completed while the next batches are applied; the one before is complete
        before this one is prepared, so the steps of the checkpoints never interleave. A
        rebalance or a stop waits for it to complete."""
        await self._settle()
        if self._given_up:
            await self._drop_unwritten()  # nothing written after it may claim its messages
            return
        if (self._pending.done or self._pending.started_over) and self.fence.up("a checkpoint"):
            return  # kept: written once the lease is renewed, dropped by a rebalance
        pending, self._pending = self._pending, Pending()
        if not pending.done and not pending.started_over:
            return
        # A partition dropped since (`_release`: no longer owned) gets no state and no
        # acknowledgement: its owner reads those messages again.
        applied = {p: m for p, m in pending.applied.items() if p in self.merges}
        done = [event for event in pending.done if event.message.partition in self.merges]
        for event in done:
            partition = event.message.partition
            if partition not in applied and self._has_state(partition):
                # Every message of it skipped (dead-lettered, re-read): its record and its
                # dead-letter position move all the same. Left out, a partition fed nothing but
                # bad messages kept every dead letter it wrote in memory, and a restart read them
                # all back. A partition an operator added to an input topic has no state (its
                # events are re-routed) and no changelog partition to hold a record.
                self._engine(partition)
                applied[partition] = event
        for (_, partition), acting in pending.started_over.items():
            if partition in self.merges:
                applied.setdefault(partition, acting)  # its record, though nothing of it was done
        checkpoint = Checkpoint(
            outputs=self.sink,
            stores=self.stores,
            engines=self.engines,
            clocks_table=self.clocks_table,
            records={partition: self._record(partition) for partition in applied},
            peers_written=self.peers_written,
            acknowledge_messages=self.acknowledge,
            done=done,
            applied=applied,
            marks={partition: self._marks(partition) for partition in applied},
            by_account={partition: pending.by_account.get(partition, {}) for partition in applied},
            changelogs=self.changelogs,
            fence=self.fence,
        )
        await checkpoint.prepare()
        self._inflight = asyncio.ensure_future(self._complete(checkpoint))
        if not self.overlap or self.stopping or self.revoking or pending.started_over:
            await self._settle()  # a topic created again: a rare event, made durable at once
        if pending.started_over and not self._given_up:
            await self._commit_starts(pending.started_over)
        for partition in applied:  # the projection, outside the delivery guarantee
            engine = self.engines[partition]
            self.projection.partition(
                partition, engine.periods.sums, engine.totals.sums, engine.clock.stream_time
            )
        await self.projection.flush()

    async def _commit_starts(self, started_over: Iterable[TopicPartition]) -> None:
        """After the checkpoint that wrote their partitions' records: set the group's offset of
        each input topic created again to the topic's start. The group held the old topic's
        committed offset until the first commit of a new message, and an assignment meanwhile
        sought there, past the new topic's messages below it (for ever, while none was applied)."""
        owned = [tp for tp in started_over if tp[1] in self.merges]
        for (topic, partition), start in (await self.offsets.start_offsets(owned)).items():
            await self.offsets.commit_start(topic, partition, start)
            log.info(
                "an input topic created again is read from its start, at any assignment from now on",
                extra={"topic": topic, "partition": partition, "offset": start},
            )

    async def _complete(self, checkpoint: Checkpoint) -> None:
        try:
            await checkpoint.complete()
        except Fenced:  # some of its table writes may be in the local stores only
            for partition, account_ids in checkpoint.staged_accounts().items():  # each one applied
                self._unsent.setdefault(partition, set()).update(account_ids)
            raise
        for partition in checkpoint.applied:
            self._written_again.pop(partition, None)
            self._note_floors(partition, checkpoint.records[partition])
        await self._advance_ledgers(checkpoint.applied)

    async def settled(self) -> None:
        """Wait until every checkpoint is complete and the outputs handed over are in Kafka."""
        await self._settle()
        if self._sent is not None:
            await self._sent  # done already, or raises again what the delivery failed with

    async def _settle(self) -> None:
        """Wait until the checkpoint in flight is complete; raise what it failed with (again at
        every later call: the worker must not go on past a checkpoint that failed). One given
        up at the fence (`Fenced`: a rebalance or a stop while the membership was in doubt)
        is dropped, its messages never acknowledged, and so is everything applied since
        (`_given_up`)."""
        inflight = self._inflight
        if inflight is not None:
            try:
                await inflight
            except Fenced:
                self._given_up = True
            if self._inflight is inflight:
                self._inflight = None

    async def _drop_unwritten(self) -> None:
        """A rebalance or a stop while the membership is in doubt: another worker may own the
        partitions and have applied the same messages further on, and the state and outputs
        written now would overwrite its own. The batches since the last checkpoint and their
        outputs not yet in Kafka are dropped; never acknowledged, they are read again."""
        await self._settle()
        await self.sink.discard()
        self.changelogs.forget()  # dropped unsent: the next checkpoint must not wait for them
        self._sent = None
        self._pending = Pending()
        self._dropped = True

    async def _ledger(self, partition: int) -> Ledger | None:
        """The partition's dead letters since its stored position (read once per assignment)."""
        if self.dead_letters is None:
            return None
        ledger = self.ledgers.get(partition)
        if ledger is None:
            key = position_key(partition)
            raw = self.clocks_table.get(key)
            try:
                position = decode_position(raw) if raw is not None else 0
            except PositionDecodeError as exc:
                raise PositionDecodeError(f"clocks table key {key!r}: {exc}") from exc
            letters, end = await self.dead_letters.read(partition, position)
            record = self._record(partition).offsets
            ledger = Ledger(position)
            # A letter naming an offset its input partition has not reached names no message: not
            # a worker's (written by someone else, or before the topic was created again), and
            # kept it would hold the position there until the topic's retention dropped it.
            inputs = [(topic, partition) for topic in self.families]
            log_ends = await self.offsets.log_ends(inputs) if letters else {}
            for at, letter in letters:
                topic, offset = letter.get("topic"), letter.get("offset")
                if not isinstance(topic, str) or not isinstance(offset, int) or topic not in self.families:
                    continue
                if offset >= log_ends.get((topic, partition), offset + 1):
                    continue
                # Kept until the partition record covers it, even below the committed offset as
                # faust sees it: that can be ahead of where the consumer reads from (the
                # acknowledgements of a revocation's checkpoint are committed in the next
                # generation, after the consumer sought back to the older committed offset).
                if not record.contains(topic, offset) and topic not in self._started_over.get(partition, ()):
                    ledger.earlier.setdefault((topic, offset), at)
            self.ledgers[partition] = ledger
            log.info(
                "dead letters read back",
                extra={
                    "partition": partition,
                    "from": position,
                    "to": end,
                    "read": len(letters),
                    "kept": len(ledger.earlier),
                },
            )
        return ledger

    def _dead_letter(self, message: Message, reason: str) -> None:
        """Send the message's dead letter unless it is already in the topic."""
        ledger = self.ledgers.get(message.partition)
        if ledger is not None:
            if ledger.known(message.topic, message.offset):
                self.counters.dead_letters_known += 1
                return
            ledger.written(message.topic, message.offset)
        self.sink.dead_letter(dead_letter(message, reason))

    async def _advance_ledgers(self, applied: Mapping[int, Any]) -> None:
        """After a checkpoint: move the dead-letter position of each partition whose record was
        written past the dead letters it now covers (written after the record: an older
        position only means reading more back)."""
        if self.dead_letters is None:
            return
        for partition, message in applied.items():
            ledger = self.ledgers.get(partition)
            if ledger is None or not ledger.forget(self._record(partition).offsets.contains):
                continue
            if ledger.mine:
                continue  # some of ours are not covered yet: their offsets are unknown, stay
            if ledger.earlier:
                position = min(ledger.earlier.values())
            else:
                position = await self.dead_letters.end(partition)
                if ledger.mine:
                    continue  # the batches applied meanwhile wrote some: they may be below the end
            if position > ledger.position:
                log.info(
                    "dead-letter position moved",
                    extra={"partition": partition, "from": ledger.position, "to": position},
                )
                ledger.position = position
                with acting_as(message):
                    self.clocks_table[position_key(partition)] = encode_position(position)

    def _marks(self, partition: int) -> dict[str, int]:
        """Per input topic, the offset below which every message delivered since the
        assignment was handled: the lowest one still held in the merge, or else the next one
        to be delivered (topics that delivered nothing yet are left out)."""
        merge = self.merges[partition]
        lowest = merge.lowest_held()
        marks = {}
        for topic in merge.topics:
            mark = lowest.get(topic, merge.next_offset.get(topic))
            if mark is not None:
                marks[topic] = mark
        return marks

    def _admit(self, message: Message) -> Event | None:
        """Decode and bound a message (`intake.admit`); dead-letter or re-route it here, or
        return it for the merge. Never raises for what a message holds."""
        counters = self.counters
        if isinstance(message.value, Unread):  # its batch was not decompressed (bounded_batches)
            counters.rejected += 1
            self._dead_letter(message, message.value.reason)
            return None
        # When the event was published: the record's time, never later than now. On a topic set to
        # CreateTime (the worker sets LogAppendTime; an operator can set it back) the producer
        # writes it: a year-9999 record time let a year-2100 event past `input.max_skew_hours`,
        # and its partition's stream time then refused every later event as too late.
        now = time.time()
        published = min(message.timestamp, now) if message.timestamp and message.timestamp > 0 else now
        admitted = admit(
            message.value,
            key=message.key,
            family=self.families.get(message.topic),
            published_ms=int(published * 1000),
            config=self.config,
        )
        if isinstance(admitted, Refused):
            counters.rejected += 1
            self._dead_letter(message, admitted.reason)
            return None
        event, value = admitted, message.value or b""  # admitted: the value was an event
        home = _partition_of(event.account_id, self.settings.partitions)
        if message.key is None or home != message.partition:
            # Keyless, or keyed with another partitioner: send it where its account lives.
            key = event.account_id.encode()
            floor = self._floors.get((message.topic, message.partition), 0)
            origin = encode_origin(Origin(message.partition, message.offset, floor))
            copy_bytes = len(key) + len(value) + len(ORIGIN_HEADER) + len(origin) + RECORD_OVERHEAD_BYTES
            if copy_bytes > self.input_record_limit:
                # Sent again for ever, the copy would hold up every later checkpoint.
                counters.rejected += 1
                self._dead_letter(message, _too_large_to_reroute(copy_bytes, self.input_record_limit))
                return None
            counters.rerouted += 1
            self.sink.reroute(message.topic, key, value, home, origin)
            return None
        return event

    def _copy_handled(self, message: Message) -> bool:
        """Whether the message is a re-routed copy sent again, whose first copy this partition
        has handled (then it is skipped: applied, or dead-lettered, once); a copy not seen before
        is listed as handled here (`HandledCopies.seen_before`). A header no worker writes
        (`decode_origin`) is not ours: the message is handled as any other."""
        origin = decode_origin(message.origin)
        if origin is None:
            return False
        copies = self._record(message.partition).copies
        digest = copy_digest(message.key or b"", message.value or b"")
        source = (message.topic, origin.partition)
        return copies.seen_before(source, origin.offset, origin.floor, digest, message.offset)

    async def _publish_snapshots(self, engine: PartitionEngine) -> None:
        """Send and stage the snapshot of every account changed since the last call, and stage
        the history point of each scoring that became the last of its hour meanwhile (so the
        account page's hourly and daily points do not depend on where batches end).

        Called at each event-time day a batch crosses, not only at its end: a backfill's batches
        span weeks (the compacted `cs.health` topic keeps the latest either way). A midnight
        changes every active account of the partition: with `overlap` the event loop turns
        every `YIELD_EVERY` snapshots.
        """
        for account_id, figures in engine.take_hour_finals():
            self.projection.point(account_id, figures)
        for published, account_id in enumerate(engine.take_dirty(), start=1):
            snapshot = engine.snapshot(account_id)
            self.sink.snapshot(snapshot)
            self.projection.snapshot(snapshot)
            self.counters.snapshots += 1
            if self.overlap and not published % YIELD_EVERY:
                await asyncio.sleep(0)

    async def _apply(self, engine: PartitionEngine, message: Message, event: Event) -> None:
        """Apply one event. The ticks it passes run first (`_ticks_before`)."""
        outcome = check(engine, event)  # an error rejects this event only (see intake.apply)
        if outcome is None:
            outcome = await self._ticks_before(engine, to_ms(event.occurred_at))
        if outcome is None:
            outcome = apply_checked(engine, event)
        self._outcome(message, outcome)

    async def _pass_time(self, engine: PartitionEngine, event: Event) -> None:
        """Move stream time past an event the recovered accounts hold, as applying it did: the
        ticks it passes run first (their re-scorings of accounts that already had them change
        nothing and send the same snapshots and alerts again, with the same ids)."""
        at = to_ms(event.occurred_at)
        outcome = await self._ticks_before(engine, at)
        if outcome is None:
            outcome = pass_time(engine, at)
            self._alerts(outcome.alerts)
        if outcome.status != ACCEPTED:  # a re-scoring failed: the event itself was applied before
            log.error(
                "re-scoring at a re-read event's time failed",
                extra={"account_id": event.account_id, "at": iso(at), "error": outcome.reason},
            )

    async def _ticks_before(self, engine: PartitionEngine, at: int) -> Outcome | None:
        """With `overlap`, run the ticks before `at` in steps of `YIELD_EVERY` accounts, the
        event loop turning in between (a midnight re-scores every active account of the
        partition, tens of thousands in a large one); their alerts sent. The failed step's
        outcome when a re-scoring failed, else None (without `overlap` the engine runs them
        when stream time moves)."""
        while self.overlap and engine.ticks_before(at):
            step = run_ticks(engine, at, YIELD_EVERY)
            self._alerts(step.alerts)
            if step.status != ACCEPTED:
                return step
            await asyncio.sleep(0)
        return None

    def _outcome(self, message: Message, outcome: Outcome) -> None:
        counters = self.counters
        if outcome.status == ACCEPTED:
            counters.accepted += 1
        elif outcome.status == DUPLICATE:
            counters.duplicates += 1
        else:
            counters.rejected += 1
            self._dead_letter(message, outcome.reason or "rejected")
        self._alerts(outcome.alerts)

    def _alerts(self, alerts: list[dict[str, Any]]) -> None:
        counters = self.counters
        for alert in alerts:
            counters.alerts += 1
            counters.by_rule[str(alert["rule"])] += 1
            self.sink.alert(alert)
            self.projection.alert(alert)
