"""What a worker has staged for the projection since the last write, newest value per key.

Staged alerts are bounded the way Redis bounds the stored ones (`AlertLimits`): while Redis is
away a worker keeps staging, and keeping every alert raised meanwhile grew its memory for as long
as the outage lasted, although Redis keeps only the newest alerts overall and per account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from streamer.core.clock import HOUR
from streamer.core.snapshot import PointFigures
from streamer.jsonbytes import kept_json
from streamer.projection.history import MAX_POINTS, as_written, thin

StagedPoint = bytes | PointFigures  # a history point, or the figures it is formatted from when written


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition's encoded period sums and totals at a stream time."""

    stream_time: int
    sums: bytes
    totals: bytes


@dataclass(frozen=True, slots=True)
class AlertLimits:
    """The alerts Redis keeps (see `scripts.ALERT`): the newest `overall` of all alerts and the
    newest `per_account` of each account, newest by (raised_at ms, alert id as bytes) as a sorted
    set orders its (score, member) pairs; an alert in neither is dropped."""

    overall: int
    per_account: int

    def __post_init__(self) -> None:
        if self.overall < 1 or self.per_account < 1:
            raise ValueError(f"alert limits must be positive: {self}")


class StagedAlert(NamedTuple):
    """A staged alert with what orders it in Redis."""

    raised_at: int  # epoch ms: the alert's score in Redis
    account_id: str
    alert: dict[str, Any]


@dataclass(slots=True)
class Staged:
    """Writes waiting for Redis; staging the same key again keeps only the newer value.

    With `limits`, staged alerts that Redis would not keep are dropped: pruning keeps an alert iff
    it is among the newest `limits.overall` staged alerts or the newest `limits.per_account`
    staged alerts of its account (in Redis's order, see `AlertLimits`). An alert outside both
    would be trimmed as soon as it is written (the alerts already stored can only push it further
    out), so once the outage is over Redis ends up holding exactly the same alerts (same ids, same
    JSON) as if every alert had been written one by one without the outage (an alert id always
    comes with the same alert: staged again, it replaces the one staged). Stagings are pruned
    once they exceed twice what the last pruning kept (at least twice `limits.overall`), so each
    alert costs amortised O(log n), and at most 2 * (overall + per_account * accounts with
    alerts) stay staged. Without `limits` every staged alert is kept.
    """

    limits: AlertLimits | None = None
    # id -> (as_of, the snapshot as JSON): encoded when staged, a third of the dict's memory (a
    # midnight re-scores every account, so a busy worker stages every account's at once)
    snapshots: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    alerts: dict[str, StagedAlert] = field(default_factory=dict)
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    workers: dict[str, dict[str, float]] = field(default_factory=dict)
    # id -> hour bucket start -> (as_of, history point): every hour's latest, not only the newest
    points: dict[str, dict[int, tuple[int, StagedPoint]]] = field(default_factory=dict)
    # The staged snapshots and points that a recovery re-derived (`RedisProjection.restage`):
    # written only where Redis holds nothing as recent, never over one published at their `as_of`
    # (see scripts.SNAPSHOT and HISTORY). At most one point per account and re-staging.
    restaged: set[str] = field(default_factory=set)
    restaged_points: set[tuple[str, int]] = field(default_factory=set)
    # staged alerts past which they are pruned (twice what the last pruning kept)
    _prune_at: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._prune_at = 0 if self.limits is None else 2 * self.limits.overall

    def __len__(self) -> int:
        """Values staged; history points are not counted: each rides with its account's snapshot."""
        return len(self.snapshots) + len(self.alerts) + len(self.partitions) + len(self.workers)

    def point(self, account_id: str, as_of: int, point: StagedPoint, restaged: bool = False) -> None:
        """Keep the history point unless a later one of the same hour is staged (or, for a
        re-derived one, a published one of its instant); past `MAX_POINTS` an account's staged
        points are thinned like the stored history."""
        points = self.points.setdefault(account_id, {})
        start = as_of - as_of % HOUR
        staged = points.get(start)
        key = (account_id, as_of)
        if staged is None or _supersedes(as_of, restaged, staged[0], key in self.restaged_points):
            points[start] = (as_of, point)
            if restaged:
                self.restaged_points.add(key)
            else:
                self.restaged_points.discard(key)
        if len(points) > MAX_POINTS:
            self.points[account_id] = thin(points)

    def encode_points(self) -> None:
        """Format the points still staged as figures: kept for a write that failed, they would
        hold 15 Python objects per hour and account for as long as Redis is away."""
        for points in self.points.values():
            for start, (as_of, point) in points.items():
                if not isinstance(point, bytes):
                    points[start] = (as_of, as_written(point))

    def snapshot(self, as_of: int, snapshot: dict[str, Any]) -> None:
        """Keep the snapshot unless one with a later `as_of` is already staged."""
        self.encoded(str(snapshot["account_id"]), as_of, kept_json(snapshot))

    def encoded(self, account_id: str, as_of: int, snapshot: bytes, restaged: bool = False) -> None:
        """`snapshot` for one already encoded; `restaged`: re-derived by a recovery."""
        staged = self.snapshots.get(account_id)
        if staged is None or _supersedes(as_of, restaged, staged[0], account_id in self.restaged):
            self.snapshots[account_id] = (as_of, snapshot)
            if restaged:
                self.restaged.add(account_id)
            else:
                self.restaged.discard(account_id)

    def alert(self, alert_id: str, account_id: str, raised_at: int, alert: dict[str, Any]) -> int:
        """Stage the alert (`raised_at` in epoch ms, its score in Redis); the number of staged
        alerts dropped as ones Redis would not keep (see the class docstring)."""
        self.alerts[alert_id] = StagedAlert(raised_at, account_id, alert)
        return self._bound()

    def _bound(self) -> int:
        """Prune the staged alerts when they are past `_prune_at`; the number dropped."""
        limits = self.limits
        if limits is None or len(self.alerts) <= self._prune_at:
            return 0
        # Newest first, as Redis orders a sorted set's (score, member) pairs. Members compare as
        # bytes there: their UTF-8 bytes order as the ids' code points, so the ids themselves do.
        ranked = sorted(
            ((staged.raised_at, alert_id, staged.account_id) for alert_id, staged in self.alerts.items()),
            reverse=True,
        )
        overall, per_account = limits.overall, limits.per_account
        seen: dict[str, int] = {}
        kept: set[str] = set()
        for rank, (_raised_at, alert_id, account_id) in enumerate(ranked):
            mine = seen.get(account_id, 0)
            seen[account_id] = mine + 1
            if rank < overall or mine < per_account:
                kept.add(alert_id)
        dropped = len(self.alerts) - len(kept)
        # in the order staged, so they are written as they would have been without the outage
        self.alerts = {alert_id: staged for alert_id, staged in self.alerts.items() if alert_id in kept}
        self._prune_at = 2 * max(overall, len(kept))
        return dropped

    def partition(self, partition: int, state: PartitionState) -> None:
        """Keep the partition's state unless a later stream time is already staged."""
        staged = self.partitions.get(partition)
        if staged is None or state.stream_time >= staged.stream_time:
            self.partitions[partition] = state

    def absorb(self, newer: Staged) -> int:
        """Stage everything of `newer` on top of this (after a failed write, the rest came later);
        the number of staged alerts dropped as ones Redis would not keep. Pruning the union of two
        pruned stagings keeps the same alerts as pruning the union of all that was staged: an
        alert among the newest of the union is among the newest of its part."""
        for account_id, (as_of, snapshot) in newer.snapshots.items():
            self.encoded(account_id, as_of, snapshot, account_id in newer.restaged)
        self.alerts.update(newer.alerts)
        dropped = self._bound()
        for partition, state in newer.partitions.items():
            self.partition(partition, state)
        self.workers.update(newer.workers)
        for account_id, points in newer.points.items():
            for as_of, point in points.values():
                self.point(account_id, as_of, point, (account_id, as_of) in newer.restaged_points)
        return dropped


def _supersedes(as_of: int, restaged: bool, staged_as_of: int, staged_restaged: bool) -> bool:
    """Whether a value at `as_of` replaces one staged at `staged_as_of`: a later one always, one
    of the same instant unless it was re-derived and the staged one was published."""
    return as_of > staged_as_of or (as_of == staged_as_of and (staged_restaged or not restaged))
