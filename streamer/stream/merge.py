"""Merge one partition's input topics into a single event-time order (a watermark merge).

A partition's four input topics are consumed independently, so without care the order in which
their messages reach the scorer depends on fetch timing. Like Kafka Streams' partition groups,
we hold each message until every topic that may still deliver something older has delivered
something at least as new (the watermark), then release in (event time, topic, offset) order.
A topic that has delivered everything up to its end offset is idle and does not hold the others
back. With the same messages in Kafka this gives one order whatever the fetch timing, which is
the order `streamer offline --sort` uses.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")

NEVER = -(1 << 62)

# A held message: (event time, topic index, offset, arrival number, item). A plain tuple compares
# in C (a dataclass's generated `__lt__` was a few per cent of the worker's CPU); the arrival
# number is unique, so the item itself is never compared.
_Pending = tuple[int, int, int, int, Item]


class PartitionMerge(Generic[Item]):
    """Buffers one partition's messages and releases them in watermark order."""

    def __init__(self, topics: Sequence[str]) -> None:
        self.topics = list(topics)
        self._index = {topic: index for index, topic in enumerate(self.topics)}
        self._heap: list[_Pending[Item]] = []
        self._arrivals = itertools.count()
        self.latest: dict[str, int] = {}  # topic -> newest event time delivered
        self.next_offset: dict[str, int] = {}  # topic -> offset after the last one delivered
        self.held_at_until = False  # the last release held back ready items after its `until`

    def __len__(self) -> int:
        return len(self._heap)

    def delivered(self, topic: str, offset: int) -> bool:
        """Whether `offset` of `topic` was delivered before (a re-read delivers offsets again;
        the first copy is held here or applied already)."""
        return offset < self.next_offset.get(topic, -1)

    def add(self, topic: str, offset: int, at: int, item: Item) -> None:
        heapq.heappush(self._heap, (at, self._index[topic], offset, next(self._arrivals), item))
        if at > self.latest.get(topic, NEVER):
            self.latest[topic] = at
        self.next_offset[topic] = offset + 1

    def lowest_held(self) -> dict[str, int]:
        """Per topic, the lowest offset still held (not yet released)."""
        lowest: dict[str, int] = {}
        for _, topic_index, offset, _, _ in self._heap:
            topic = self.topics[topic_index]
            if offset < lowest.get(topic, 1 << 62):
                lowest[topic] = offset
        return lowest

    def forget_topic(self, topic: str) -> None:
        """Drop what is held of `topic` and what it delivered: the topic was deleted and created
        again, its new offsets count from its start, and its old messages still held are the
        deleted topic's (released, they would claim the new topic's offsets below theirs)."""
        index = self._index[topic]
        self._heap = [held for held in self._heap if held[1] != index]
        heapq.heapify(self._heap)
        self.latest.pop(topic, None)
        self.next_offset.pop(topic, None)

    def skip(self, topic: str, offset: int) -> None:
        """Note a message delivered but not held (dead-lettered, re-routed, or read again)."""
        self.next_offset[topic] = offset + 1

    def watermark(self, idle: Callable[[str], bool]) -> int:
        """Event time up to which nothing older can still arrive (from the live topics)."""
        return self._frontier(idle)[0]

    def _frontier(self, idle: Callable[[str], bool]) -> tuple[int, int]:
        """(watermark, lowest index of a live topic whose newest event is at the watermark).

        That topic may still deliver more events at the watermark time, which sort before the
        items of higher-indexed topics at that time: those must wait.
        """
        live = [
            (self.latest.get(topic, NEVER), self._index[topic]) for topic in self.topics if not idle(topic)
        ]
        return min(live) if live else (1 << 62, len(self.topics))

    def head_at(self) -> int | None:
        """The event time of the first item held, if any."""
        return self._heap[0][0] if self._heap else None

    def release(
        self, idle: Callable[[str], bool], most: int | None = None, until: int | None = None
    ) -> list[Item]:
        """Items that nothing still to come can precede, in (event time, topic, offset) order;
        at most `most` of them, and none with an event time after `until` (the rest stay held,
        first in line for the next release). `held_at_until`: whether `until` held back an
        item that was ready."""
        limit, topic_index = self._frontier(idle)
        last = 1 << 62 if until is None else until
        heap, ready = self._heap, list[Item]()
        pop = heapq.heappop
        room = len(heap) if most is None else most
        while (
            heap
            and len(ready) < room
            and (heap[0][0] < limit or (heap[0][0] == limit and heap[0][1] <= topic_index))
            and heap[0][0] <= last
        ):
            ready.append(pop(heap)[4])
        self.held_at_until = bool(heap) and heap[0][0] > last and heap[0][0] <= limit
        return ready
