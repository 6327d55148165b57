"""What a worker hands the projection after each batch (implemented for Redis in `redis_writer`)."""

from __future__ import annotations

from typing import Any, Protocol

from streamer.core.portfolio import PeriodSums
from streamer.core.snapshot import PointFigures


class Projection(Protocol):
    """Staged writes, flushed once per batch; a flush never raises (the projection may lag)."""

    def snapshot(self, snapshot: dict[str, Any]) -> None:
        """The account's latest snapshot (an older `as_of` never overwrites a newer one)."""

    def point(self, account_id: str, figures: PointFigures) -> None:
        """A scoring that was the account's last of its hour, with no snapshot (its history point)."""

    def alert(self, alert: dict[str, Any]) -> None:
        """An alert (idempotent by `alert_id`)."""

    def partition(self, partition: int, sums: PeriodSums, totals: list[int], stream_time: int) -> None:
        """One partition's period sums, current totals vector and stream time."""

    def worker(self, worker_id: str, stats: dict[str, float]) -> None:
        """A worker's counters and gauges (events processed, rejected, lag, latency...)."""

    async def flush(self) -> None:
        """Write what was staged; keep it for the next flush when the store is unreachable."""


class NoProjection:
    """For runs without a projection store."""

    def snapshot(self, snapshot: dict[str, Any]) -> None:
        pass

    def point(self, account_id: str, figures: PointFigures) -> None:
        pass

    def alert(self, alert: dict[str, Any]) -> None:
        pass

    def partition(self, partition: int, sums: PeriodSums, totals: list[int], stream_time: int) -> None:
        pass

    def worker(self, worker_id: str, stats: dict[str, float]) -> None:
        pass

    async def flush(self) -> None:
        pass
