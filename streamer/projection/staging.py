"""What a worker has staged for the projection since the last write, newest value per key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition's encoded period sums and totals at a stream time."""

    stream_time: int
    sums: bytes
    totals: bytes


@dataclass(slots=True)
class Staged:
    """Writes waiting for Redis; staging the same key again keeps only the newer value."""

    snapshots: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # id -> (as_of, s)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    workers: dict[str, dict[str, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.snapshots) + len(self.alerts) + len(self.partitions) + len(self.workers)

    def snapshot(self, as_of: int, snapshot: dict[str, Any]) -> None:
        """Keep the snapshot unless one with a later `as_of` is already staged."""
        account_id = str(snapshot["account_id"])
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
        for as_of, snapshot in newer.snapshots.values():
            self.snapshot(as_of, snapshot)
        self.alerts.update(newer.alerts)
        for partition, state in newer.partitions.items():
            self.partition(partition, state)
        self.workers.update(newer.workers)
