"""When each input partition last delivered, counted in time the scorer was free to take it.

A partition with a backlog that delivered nothing for `STALL_S` is read again
(`Scorer.reread_stalled`): a fetch that never resumes would otherwise stall it for good."""

from __future__ import annotations

import time
from collections.abc import Iterable

from streamer.stream.ports import TopicPartition

STALL_S = 10.0  # a partition with a backlog that delivered nothing for this long is read again


class StallWatch:
    """The last delivery (or re-read) per input topic partition of one assignment."""

    def __init__(self) -> None:
        self.assigned_at = time.monotonic()  # a partition that never delivered is silent since
        self._delivered: dict[TopicPartition, float] = {}

    def forget(self) -> None:
        """A new assignment: every partition's silence counts from now."""
        self._delivered.clear()
        self.assigned_at = time.monotonic()

    def delivered(self, tp: TopicPartition, now: float) -> None:
        """The partition delivered (or was checked) at `now`: look again in `STALL_S`."""
        self._delivered[tp] = now

    def busy(self, since: float) -> None:
        """The scorer worked from `since` until now: input waited in the consumer meanwhile, so
        that time does not count towards a partition's silence. Without this a batch longer
        than `STALL_S` (a busy machine) made every partition look stalled."""
        busy = time.monotonic() - since
        self.assigned_at += busy
        for tp in self._delivered:
            self._delivered[tp] += busy

    def silent(self, tps: Iterable[TopicPartition], now: float) -> list[TopicPartition]:
        """Those of `tps` that delivered nothing for `STALL_S`, in order."""
        return [tp for tp in sorted(tps) if now - self._delivered.get(tp, self.assigned_at) > STALL_S]
