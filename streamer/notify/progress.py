"""Which offsets of the alerts topic may be committed: those before the first alert not yet done.

An alert is done when every destination it was routed to has called back (acknowledged,
definitively rejected, or already had it). Entries carry the generation of the assignment they
were read under, so a callback from before a rebalance never completes a re-read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiokafka import TopicPartition


class Progress:
    def __init__(self) -> None:
        self._generation: dict[TopicPartition, int] = {}
        self._pending: dict[TopicPartition, dict[int, int]] = {}  # offset -> destinations left
        self._next: dict[TopicPartition, int] = {}  # one past the last offset read

    def read(self, tp: TopicPartition, offset: int, destinations: int) -> Callable[[], None]:
        """Note an alert read at `offset`, routed to `destinations`; return its callback."""
        self._next[tp] = offset + 1
        if destinations > 0:
            self._pending.setdefault(tp, {})[offset] = destinations
        generation = self._generation.get(tp, 0)

        def done() -> None:
            if generation != self._generation.get(tp, 0):
                return  # read before a rebalance: the partition will be (or was) read again
            left = self._pending.get(tp, {})
            if offset in left:
                left[offset] -= 1
                if left[offset] <= 0:
                    del left[offset]

        return done

    def in_flight(self) -> int:
        return sum(len(offsets) for offsets in self._pending.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition, the offset to commit: the first alert not done, else one past the last read."""
        result = {}
        for tp, after_last in self._next.items():
            pending = self._pending.get(tp)
            result[tp] = min(pending) if pending else after_last
        return result

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions revoked: drop what was read from them; older callbacks become no-ops."""
        for tp in partitions:
            self._generation[tp] = self._generation.get(tp, 0) + 1
            self._pending.pop(tp, None)
            self._next.pop(tp, None)
