"""How long the worker's event loop stood still: how late a sleeper is woken.

While the loop stands still nothing else in the worker moves: the Kafka client's sends and
acknowledgements, the Redis writes, a stop. A blocking step shows here (a large partition's
midnight before it was split into steps, a full garbage collection, a slow disk), in the
`progress` log line and as `healthstream_event_loop_stall_seconds` on the view's `/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

WARN_S = 2.0  # a stall this long is logged as a warning when it ends


class LoopWatch:
    """Wakes every `every_s` and notes how much later than asked it woke."""

    def __init__(
        self, readers: Iterable[str], every_s: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`readers`: who asks `longest`, each with its own window (the log line, the stats)."""
        self.every_s = every_s
        self._clock = clock
        self._longest = dict.fromkeys(readers, 0.0)

    async def run(self) -> None:
        clock, every = self._clock, self.every_s
        while True:
            asked = clock()
            await asyncio.sleep(every)
            self.note(clock() - asked - every)

    def note(self, late: float) -> None:
        late = max(0.0, late)
        if late >= WARN_S:
            log.warning("the event loop stood still", extra={"stall_s": round(late, 3)})
        longest = self._longest
        for reader, before in longest.items():
            if late > before:
                longest[reader] = late

    def longest(self, reader: str) -> float:
        """The longest stall since `reader` last asked (forgotten for it then), in seconds."""
        late = self._longest[reader]
        self._longest[reader] = 0.0
        return late
