"""What a worker has staged for the projection since the last write, newest value per key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamer.jsonbytes import kept_json
from streamer.projection.history import HOUR_MS, MAX_POINTS, thin


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition's encoded period sums and totals at a stream time."""

    stream_time: int
    sums: bytes
    totals: bytes


@dataclass(slots=True)
class Staged:
    """Writes waiting for Redis; staging the same key again keeps only the newer value."""

    # id -> (as_of, the snapshot as JSON): encoded when staged, a third of the dict's memory (a
    # midnight re-scores every account, so a busy worker stages every account's at once)
    snapshots: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    workers: dict[str, dict[str, float]] = field(default_factory=dict)
    # id -> hour bucket start -> (as_of, history point): every hour's latest, not only the newest
    points: dict[str, dict[int, tuple[int, bytes]]] = field(default_factory=dict)

    def __len__(self) -> int:
        """Values staged; history points are not counted: each rides with its account's snapshot."""
        return len(self.snapshots) + len(self.alerts) + len(self.partitions) + len(self.workers)

    def point(self, account_id: str, as_of: int, point: bytes) -> None:
        """Keep the history point unless a later one of the same hour is staged; past
        `MAX_POINTS` an account's staged points are thinned like the stored history."""
        points = self.points.setdefault(account_id, {})
        start = as_of - as_of % HOUR_MS
        staged = points.get(start)
        if staged is None or as_of >= staged[0]:
            points[start] = (as_of, point)
        if len(points) > MAX_POINTS:
            self.points[account_id] = thin(points)

    def snapshot(self, as_of: int, snapshot: dict[str, Any]) -> None:
        """Keep the snapshot unless one with a later `as_of` is already staged."""
        self.encoded(str(snapshot["account_id"]), as_of, kept_json(snapshot))

    def encoded(self, account_id: str, as_of: int, snapshot: bytes) -> None:
        """`snapshot` for one already encoded."""
        staged = self.snapshots.get(account_id)
        if staged is None or as_of >= staged[0]:
            self.snapshots[account_id] = (as_of, snapshot)

    def partition(self, partition: int, state: PartitionState) -> None:
        """Keep the partition's state unless a later stream time is already staged."""
        staged = self.partitions.get(partition)
        if staged is None or state.stream_time >= staged.stream_time:
            self.partitions[partition] = state

    def absorb(self, newer: Staged) -> None:
        """Stage everything of `newer` on top of this (after a failed write, the rest came later)."""
        for account_id, (as_of, snapshot) in newer.snapshots.items():
            self.encoded(account_id, as_of, snapshot)
        self.alerts.update(newer.alerts)
        for partition, state in newer.partitions.items():
            self.partition(partition, state)
        self.workers.update(newer.workers)
        for account_id, points in newer.points.items():
            for as_of, point in points.values():
                self.point(account_id, as_of, point)
