"""How far each input partition reaches right now: the offset it delivers next, whether it has
nothing more to deliver (idle), and offset ranges the consumer read across without a record.

The scorer's watermark merge releases a partition's events only once every topic of it has
delivered up to them or is idle (`stream/merge.py`); this module answers "idle" from the
broker's ends, not from the fetcher's older figures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from streamer.stream.counters import Counters
from streamer.stream.merge import PartitionMerge
from streamer.stream.ports import Offsets, TopicPartition

log = logging.getLogger(__name__)

# A topic whose next records belong to a transaction not yet committed holds its partition's
# merge back (they may be older than what the other topics delivered) for at most this long at
# one offset: a producer that left a transaction open holds it up to the transaction's timeout.
OPEN_TRANSACTION_WAIT_S = 5.0


class InputReach:
    """Per input topic partition of one assignment: where it is read to, and what that says."""

    def __init__(
        self, offsets: Offsets, counters: Counters, merges: Mapping[int, PartitionMerge[Any]]
    ) -> None:
        self.offsets = offsets
        self.counters = counters
        self.merges = merges  # the scorer's, per partition: the offset each topic delivers next
        # per input, the last offset range found without records (`next_offsets`)
        self._empty: dict[TopicPartition, tuple[int, int]] = {}
        # per input, the offset it waits at behind a transaction not yet committed, and since when
        self._behind_open: dict[TopicPartition, tuple[int, float]] = {}

    def forget(self) -> None:
        """A new assignment: nothing known of the partitions' reach."""
        self._empty.clear()
        self._behind_open.clear()

    def passed_over(self, topic: str, partition: int, start: int, stop: int, how: str) -> None:
        """Offsets `start..stop-1` hold no record a committed read delivers: acknowledge them."""
        self.counters.empty_offsets += stop - start
        log.debug(
            "passed over input offsets without records",
            extra={"topic": topic, "partition": partition, "from": start, "to": stop - 1, "how": how},
        )
        self.offsets.acknowledge_passed(topic, partition, start, stop)

    async def next_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset each input partition delivers next: after the last one delivered since
        the assignment, or else the one consumption restarted from; past offsets without a
        record that the consumer has read beyond (a trailing transaction marker would hold
        its topic's end ahead of the last delivery for ever)."""
        known, unknown = {}, []
        for topic, partition in tps:
            merge = self.merges.get(partition)
            offset = merge.next_offset.get(topic) if merge is not None else None
            if offset is None:
                unknown.append((topic, partition))
            else:
                known[(topic, partition)] = offset
        if unknown:
            known.update(await self.offsets.restart_offsets(unknown))
        for tp, offset in known.items():
            read = self.offsets.read_position(*tp)
            if read is None:
                continue
            since, position = read
            if since <= offset < position:
                # Every record the consumer read was delivered here: the rest held none.
                known[tp] = position
                if self._empty.get(tp) != (offset, position):
                    self._empty[tp] = (offset, position)
                    self.passed_over(*tp, offset, position, "read past by the consumer")
        return known

    async def idle_topics(self, partitions: Sequence[int]) -> dict[int, set[str]]:
        """Per partition, the topics with nothing more to deliver right now.

        A topic is idle when the offset it delivers next has reached its end offset as the
        broker reports it *now*: the fetcher's high watermark can be older than messages of
        other topics already delivered, and a topic idle by a stale end would let newer events
        pass older ones still on their way. The fetcher's figure only spares the broker the
        question for topics that visibly have more to deliver.

        The end counts the records of transactions not yet committed (`_behind_open`): a
        transaction commits on one partition after another, so a topic read to its last stable
        offset can still have records of a transaction whose records on another topic were
        delivered already. Idle by its stable end, the subscriptions of a history published in
        transactions let that transaction's usage (weeks later in event time) through first, and
        then were refused as too late (6 events of a 30-account history, on a worker starting).
        """
        idle: dict[int, set[str]] = defaultdict(set)
        if not partitions:
            return idle
        inputs = [(topic, p) for p in partitions for topic in self.merges[p].topics]
        next_offsets = await self.next_offsets(inputs)
        maybe = []
        for tp, offset in next_offsets.items():
            highwater = self.offsets.highwater(*tp)
            if highwater is None or offset >= highwater:
                maybe.append(tp)
        if maybe:
            now = time.monotonic()
            # Both ends at once, from the broker now: the fetcher's figures can be older.
            ends, stable = await asyncio.gather(self.offsets.log_ends(maybe), self.offsets.end_offsets(maybe))
            for tp, end in ends.items():
                offset = next_offsets[tp]
                if offset >= end:
                    self._behind_open.pop(tp, None)
                    idle[tp[1]].add(tp[0])
                elif tp in stable and offset >= stable[tp]:
                    if self._waited_behind_open(tp, offset, now):
                        idle[tp[1]].add(tp[0])
                else:
                    self._behind_open.pop(tp, None)  # committed records to deliver first
        return idle

    def _waited_behind_open(self, tp: TopicPartition, offset: int, now: float) -> bool:
        """Whether the topic partition, read to its last stable offset `offset` with records of
        a transaction not yet committed after it, has waited at that offset for
        `OPEN_TRANSACTION_WAIT_S`: it counts as idle then. Before, it holds its partition's
        merge back: the transaction may be committing (on this topic after the others) and its
        records here older than those delivered."""
        waiting = self._behind_open.get(tp)
        if waiting is None or waiting[0] != offset:
            self._behind_open[tp] = waiting = (offset, now)
        return now - waiting[1] >= OPEN_TRANSACTION_WAIT_S
