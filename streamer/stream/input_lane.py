"""The input lane: input records from the consumer's fetches to the scorer, a fetch at a time.

faust turns every fetched record into a message, an event and a trip through its conductor,
stream and sensors: about half of the worker's CPU went there. The consumer
(`streamer/stream/consumer.py`) hands the input topics' records of each fetch to an `InputLane`
instead, as one list of light `InputRecord`s (the scorer's `Message` and, for table routing, a
faust-like event in one object), and the scorer acknowledges them in one call per checkpoint
(`ack_inputs`), into the same bookkeeping faust's own acknowledgements fill: faust still owns
the group membership, the seeks after a rebalance, the commits (only up to acknowledged offsets)
and the table recovery. Fetches while faust's flow is stopped (a rebalance) still go through
faust's own path, which drops them and seeks back to the committed offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from faust.types import TP


class InputRecord:
    """One input message as the scorer sees it; also stands for a faust event (`.message`) when
    the scorer writes tables on behalf of its partition (`stream/context.py`)."""

    __slots__ = (
        "__weakref__",
        "follows",
        "generation_id",
        "key",
        "offset",
        "origin",
        "partition",
        "timestamp",
        "topic",
        "tp",
        "value",
    )

    def __init__(
        self,
        tp: TP,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: float,
        generation_id: int | None,
        follows: int | None = None,
        origin: bytes | None = None,
    ) -> None:
        self.tp = tp
        self.topic, self.partition = tp
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp  # seconds, as faust's messages have it
        self.generation_id = generation_id
        # Where the consumer read from just before this record, when it knows: offsets between
        # that and this one were passed over by its fetcher (they hold no record).
        self.follows = follows
        self.origin = origin  # its origin header: a re-routed copy (`streamer/stream/origin.py`)

    @property
    def message(self) -> InputRecord:
        return self

    def __repr__(self) -> str:
        return f"InputRecord({self.topic}[{self.partition}]@{self.offset})"


class InputLane:
    """Input records from the consumer's fetches to the scorer, a fetch at a time.

    Bounded: while the scorer is busy, at most `max_fetches` fetches wait here and the consumer
    fetches nothing more (back-pressure instead of a growing buffer).
    """

    def __init__(self, topics: Iterable[str], max_fetches: int = 8) -> None:
        self.topics = frozenset(topics)
        self._queue: asyncio.Queue[list[InputRecord]] = asyncio.Queue(max_fetches)
        self._one_fetch = False  # the next batch is a single fetch (`restart`)

    async def put(self, records: list[InputRecord]) -> None:
        await self._queue.put(records)

    def restart(self) -> None:
        """After an assignment: the next batch is one fetch, not every fetch waiting.

        While a worker starts (or recovers after a rebalance) its fetches pile up, and the
        first batch was a full one, applied and made durable before anything was committed:
        a smaller first batch commits sooner, the rest follows at full size."""
        self._one_fetch = True

    async def batches(self, max_records: int) -> AsyncIterator[list[InputRecord]]:
        """Every fetch waiting, joined up to about `max_records`; waits for the next fetch when
        none is waiting (no lingering: a batch is whatever arrived while the last one ran)."""
        queue = self._queue
        while True:
            batch = await queue.get()
            limit = 0 if self._one_fetch else max_records
            self._one_fetch = False
            while len(batch) < limit and not queue.empty():
                batch.extend(queue.get_nowait())
            yield batch


Seek = tuple[int, int]  # which seek of a partition `LaneReads.sought` began


class LaneReads:
    """How far the consumer read each input partition without a record it did not hand to the lane.

    The fetcher skips offsets that hold no record a committed read delivers: a transaction's
    commit or abort marker, an aborted transaction's records, records compaction removed. Once
    a partition is *anchored* (a record was handed over, or a seek of ours left its position at
    a known offset), `since` is the offset after the last record handed over (or the seek's
    offset) and `reach` the fetch position noted since: nothing between them is a record, and
    the next record handed over follows straight on from `since`. A seek of faust's (after a
    rebalance) or a fetch whose records were dropped (faust's flow control) leaves a partition
    unanchored until it hands a record over or a seek of ours moves it.
    """

    def __init__(self) -> None:
        self.since: dict[TP, int] = {}
        self.reach: dict[TP, int] = {}
        self._voided = 0  # times everything known was voided (a seek of every partition)
        self._sought: dict[TP, int] = {}  # per partition, seeks begun (and records dropped)

    def sought(self, tp: TP | None = None) -> Seek:
        """A seek of `tp` (of every partition: None) begins: what was known is void. Returns the
        seek, for `arrived`."""
        if tp is None:
            self._voided += 1
            self.since.clear()
            self.reach.clear()
            return (self._voided, -1)
        self._sought[tp] = count = self._sought.get(tp, 0) + 1
        self.since.pop(tp, None)
        self.reach.pop(tp, None)
        return (self._voided, count)

    def arrived(self, tp: TP, offset: int, seek: Seek) -> None:
        """The seek of ours that `sought(tp)` returned `seek` for moved `tp` to `offset`:
        reading goes on from there, unless a fetch after the seek anchored it already, or
        another seek (or a dropped fetch) began since this one did.

        Seeks run in the consumer thread in the order they began, but the coroutines that
        asked for them resume in any order. The scorer re-reads a gap from 16 while the fetch
        loop seeks the same partition to its committed offset 19 (a fetch overlapped the
        scorer's seek; both seen in one run): the consumer is at 19, and if the scorer's seek
        resumed first it anchored the partition at 16, so the next record vouched for offsets
        16-18 as holding no record, whatever they held."""
        if seek != (self._voided, self._sought.get(tp, 0)):
            return
        if tp not in self.since:
            self.since[tp] = self.reach[tp] = offset

    def dropped(self, tp: TP) -> None:
        """Records of `tp` were read and not handed over."""
        self.sought(tp)

    def follows(self, tp: TP) -> int | None:
        """Where reading went on from up to the next record of `tp` (None: not known)."""
        return self.since.get(tp)

    def hand(self, tp: TP, last: int) -> None:
        """Records of `tp` up to offset `last` were handed over, one straight after the other."""
        self.since[tp] = self.reach[tp] = last + 1

    def note(self, tp: TP, position: int) -> None:
        """The fetch position of `tp` between two fetches."""
        if tp in self.since and position > self.reach[tp]:
            self.reach[tp] = position

    def read_position(self, tp: TP) -> tuple[int, int] | None:
        """(`since`, `reach`): no record lies in between; None when not anchored."""
        since = self.since.get(tp)
        return None if since is None else (since, self.reach[tp])
