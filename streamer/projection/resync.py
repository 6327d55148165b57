"""Re-stage the full state of a worker's partitions: once per partition assignment, and again
whenever the projection store turns out to have lost its data (e.g. Redis restarted empty).

Snapshots staged during an outage are written when Redis returns; accounts that did not change
meanwhile are rewritten by this, so the projection always converges to the workers' state.

Alerts are not part of a partition's state, so they are re-staged from where they are kept: the
newest ones of the partition on the alerts topic (`recent_alerts`). Without this, alerts staged
by a worker that was killed before it wrote them (within the half second a write is coalesced,
or while Redis was down), or written to a Redis that then restarted empty, were missing from
the projection for good, although Kafka had them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from streamer.core.engine import PartitionEngine
from streamer.projection.redis_writer import RedisProjection

log = logging.getLogger(__name__)

CHUNK = 500  # accounts re-staged per hold of the scorer's lock

RecentAlerts = Callable[[int], Awaitable[list[dict[str, Any]]]]  # a partition's newest alerts


class Resync:
    """Call `run()` periodically (the worker does every second)."""

    def __init__(
        self,
        projection: RedisProjection,
        engines: Callable[[], Mapping[int, PartitionEngine]],
        lock: asyncio.Lock,
        recent_alerts: RecentAlerts | None = None,
    ) -> None:
        self.projection = projection
        self.engines = engines
        self.lock = lock
        self.recent_alerts = recent_alerts
        # The engines re-staged since the last loss; those no longer held are dropped at each run
        # (a set, not a WeakSet: the compiled core's engines take no weak references).
        self.synced: set[PartitionEngine] = set()
        self.restaged = 0
        self.restaged_alerts = 0
        self.restaged_partitions = 0
        # The counts when the projection store was last found to have lost data, until all of it
        # is re-staged: the log then says what was (a re-fill was silent).
        self._since_loss: tuple[int, int, int] | None = None

    async def run(self) -> None:
        """Re-stage partitions not yet synced (all of them after a loss), then flush."""
        if self.projection.lost:
            self.projection.lost = False
            self.synced = set()
            self._since_loss = self._counts()
        engines = self.engines()
        self.synced.intersection_update(engines.values())
        for partition, engine in sorted(engines.items()):
            if engine not in self.synced and await self._restage(partition, engine):
                self.synced.add(engine)
        if self._since_loss is not None and len(self.synced) == len(engines):
            accounts, alerts, partitions = (
                now - then for now, then in zip(self._counts(), self._since_loss, strict=True)
            )
            self._since_loss = None
            log.info(
                "projection re-staged whole (the store held none of it, or had lost some): "
                "written as Redis takes it",
                extra={"accounts": accounts, "alerts": alerts, "partitions": partitions},
            )
        await self.projection.flush()

    def _counts(self) -> tuple[int, int, int]:
        return self.restaged, self.restaged_alerts, self.restaged_partitions

    async def _restage(self, partition: int, engine: PartitionEngine) -> bool:
        members = sorted(engine.members)
        for start in range(0, len(members), CHUNK):
            async with self.lock:
                if self.engines().get(partition) is not engine:
                    return False  # a rebalance replaced it meanwhile
                for account_id in members[start : start + CHUNK]:
                    snapshot, evaluated_again = engine.snapshot_again(account_id)
                    self.projection.restage(snapshot, evaluated_again=evaluated_again)
                    self.restaged += 1
            await asyncio.sleep(0)
        async with self.lock:
            if self.engines().get(partition) is not engine:
                return False
            if engine.clock.stream_time >= 0:
                sums, totals = engine.periods.sums, engine.totals.sums
                self.projection.partition(partition, sums, totals, engine.clock.stream_time)
                self.restaged_partitions += 1
        return await self._restage_alerts(partition)

    async def _restage_alerts(self, partition: int) -> bool:
        """Stage the partition's newest alerts again (idempotent in Redis); False when they could
        not be read (the partition is re-staged again on the next run)."""
        if self.recent_alerts is None:
            return True
        try:
            alerts = await self.recent_alerts(partition)
        except Exception as exc:  # the broker away: try again on the next run
            log.warning(
                "could not read the partition's recent alerts; re-staging it again later",
                extra={"partition": partition, "error": f"{type(exc).__name__}: {exc}"},
            )
            return False
        for alert in alerts:
            self.projection.alert(alert)
        self.restaged_alerts += len(alerts)
        return True
