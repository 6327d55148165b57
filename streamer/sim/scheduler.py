"""A per-account heap of events that happen later: resolutions, reopenings, survey answers."""

from __future__ import annotations

import heapq
from typing import Any

from streamer.sim.times import rfc3339

Event = dict[str, Any]


class Scheduler:
    """The per-account heap of events that happen later (resolutions, survey answers)."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.heap: list[tuple[int, int, Event]] = []
        self._seq = 0

    def add(self, ts: int, event_type: str, fields: dict[str, Any]) -> None:
        """Schedule an event at `ts`."""
        event: Event = {
            "event_id": "",
            "event_type": event_type,
            "account_id": self.account_id,
            "occurred_at": rfc3339(ts),
        }
        event.update(fields)
        self._seq += 1
        heapq.heappush(self.heap, (ts, self._seq, event))

    def pop_before(self, ts: int, out: list[tuple[int, Event]]) -> None:
        """Move every scheduled event before `ts` to `out`."""
        heap = self.heap
        while heap and heap[0][0] < ts:
            at, _, event = heapq.heappop(heap)
            out.append((at, event))
