"""Re-stage the full state of a worker's partitions: once per partition assignment, and again
whenever the projection store turns out to have lost its data (e.g. Redis restarted empty).

Snapshots staged during an outage are written when Redis returns; accounts that did not change
meanwhile are rewritten by this, so the projection always converges to the workers' state.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping

from streamer.core.engine import PartitionEngine
from streamer.projection.redis_writer import RedisProjection

CHUNK = 500  # accounts re-staged per hold of the scorer's lock


class Resync:
    """Call `run()` periodically (the worker does every second)."""

    def __init__(
        self,
        projection: RedisProjection,
        engines: Callable[[], Mapping[int, PartitionEngine]],
        lock: asyncio.Lock,
    ) -> None:
        self.projection = projection
        self.engines = engines
        self.lock = lock
        self.synced: weakref.WeakSet[PartitionEngine] = weakref.WeakSet()
        self.restaged = 0

    async def run(self) -> None:
        """Re-stage partitions not yet synced (all of them after a loss), then flush."""
        if self.projection.lost:
            self.projection.lost = False
            self.synced = weakref.WeakSet()
        for partition, engine in sorted(self.engines().items()):
            if engine not in self.synced and await self._restage(partition, engine):
                self.synced.add(engine)
        await self.projection.flush()

    async def _restage(self, partition: int, engine: PartitionEngine) -> bool:
        members = sorted(engine.members)
        for start in range(0, len(members), CHUNK):
            async with self.lock:
                if self.engines().get(partition) is not engine:
                    return False  # a rebalance replaced it meanwhile
                for account_id in members[start : start + CHUNK]:
                    self.projection.snapshot(engine.snapshot(account_id))
                    self.restaged += 1
            await asyncio.sleep(0)
        async with self.lock:
            if self.engines().get(partition) is not engine:
                return False
            if engine.clock.stream_time >= 0:
                sums, totals = engine.periods.sums, engine.totals.sums
                self.projection.partition(partition, sums, totals, engine.clock.stream_time)
        return True
