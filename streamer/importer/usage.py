"""Product event rows -> `usage.recorded` events, one per row or aggregated per hour or day (pure).

An aggregate is one account, user and feature in one bucket; it carries the number of rows as
`count` and the time of its latest row, so no use is counted before it happened. Buckets run
from just after a boundary to the boundary inclusive, like the core's day buckets, so a
row and its aggregate always fall on the same UTC day: day-level usage metrics are the same
whatever the grain.

The aggregates are held in memory up to `SPILL_AGGREGATES`; past it they are written to a
sorted run on disk and merged back when the events are taken, so a history of any length is
imported in bounded memory (the tables' product events dominate it).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import groupby
from pathlib import Path
from typing import IO

from streamer.core.clock import DAY as DAY_MS
from streamer.core.clock import HOUR as HOUR_MS
from streamer.importer.subscriptions import Imported, event_id, rfc3339_ms
from streamer.runfiles import RunFiles


class UsageGrain(StrEnum):
    hour = "hour"
    day = "day"
    none = "none"

    @property
    def ms(self) -> int:
        return {UsageGrain.hour: HOUR_MS, UsageGrain.day: DAY_MS, UsageGrain.none: 0}[self]


Key = tuple[str, str, str, int]  # account, user, feature, bucket (or source line for grain none)
# An aggregate in the order events are taken: (when, account, user, feature, bucket), where
# `when` is the bucket for hour and day (its aggregates' times all fall within it) and the
# row's time at grain none; then its count, latest time and first line.
Ordered = tuple[tuple[int, str, str, str, int], int, int, int]

SPILL_AGGREGATES = 500_000  # aggregates in memory (about 250 MB) before a run is written to disk
_FRAME = struct.Struct("<qqqqqHHH")  # when, bucket, count, latest, line, then the 3 ids' lengths


@dataclass
class UsageAggregator:
    """Collects rows; `sorted_events()` gives one event per key (more when its count is past
    `max_count`, the most one event may carry). Memory: one entry per aggregate, up to
    `SPILL_AGGREGATES`; the rest in sorted runs under `scratch` (default: the system's
    temporary folder), removed once the events are taken."""

    grain: UsageGrain
    source: str = ""  # file name, part of the ids at grain none
    max_count: int = 1_000_000  # input.max_count
    scratch: Path | None = None
    rows: int = 0
    _buckets: dict[Key, list[int]] = field(default_factory=dict)  # key -> [count, latest ms, first line]
    _runs: RunFiles[Ordered] = field(init=False)

    def __post_init__(self) -> None:
        self._runs = RunFiles(".import-", self.scratch, _write_aggregates, _read_aggregates)

    def add(self, account: str, user: str, feature: str, at_ms: int, line: int) -> None:
        self.rows += 1
        size = self.grain.ms
        bucket = -(-at_ms // size) if size else line  # ceiling: (boundary, boundary] buckets
        key = (account, user, feature, bucket)
        found = self._buckets.get(key)
        if found is None:
            self._buckets[key] = [1, at_ms, line]
            if len(self._buckets) >= SPILL_AGGREGATES:
                self._runs.write(self._ordered())
        else:
            found[0] += 1
            if at_ms > found[1]:
                found[1] = at_ms

    def sorted_events(self) -> Iterator[Imported]:
        """One event per aggregate (per `max_count` of its rows), by (time, account, user,
        feature): a deterministic order, the same whether or not runs went to disk."""
        try:
            for aggregates in self._by_time(self._merged()):
                aggregates.sort(key=lambda found: (found[2], found[0][1:]))  # (latest, key)
                for (_, account, user, feature, bucket), count, at_ms, line in aggregates:
                    yield from self._events(account, user, feature, bucket, count, at_ms, line)
        finally:
            self.close()

    def close(self) -> None:
        """Remove the runs on disk (taking the events does it)."""
        self._buckets = {}
        self._runs.remove()

    def _events(
        self, account: str, user: str, feature: str, bucket: int, count: int, at_ms: int, line: int
    ) -> Iterator[Imported]:
        """The aggregate's events: one, or one per `max_count` rows (the first keeps the id)."""
        scope = (self.source, bucket) if self.grain is UsageGrain.none else (self.grain.value, bucket)
        for part, start in enumerate(range(0, count, self.max_count)):
            carried = min(self.max_count, count - start)
            yield Imported(
                at_ms,
                {
                    "event_id": event_id("usage", account, user, feature, *scope, *([part] if part else [])),
                    "event_type": "usage.recorded",
                    "account_id": account,
                    "occurred_at": rfc3339_ms(at_ms),
                    "user_id": user,
                    "feature": feature,
                    "count": carried,
                },
                (self.source, line),
                carried,
            )

    def _ordered(self) -> list[Ordered]:
        """The aggregates in memory, sorted, and forgotten."""
        timed = self.grain is not UsageGrain.none
        found = [
            ((bucket if timed else at_ms, account, user, feature, bucket), count, at_ms, line)
            for (account, user, feature, bucket), (count, at_ms, line) in self._buckets.items()
        ]
        self._buckets = {}
        found.sort(key=lambda item: item[0])
        return found

    def _merged(self) -> Iterator[Ordered]:
        """Every aggregate once, in order: the runs and what is in memory merged (`_merge`)."""
        last = self._ordered()
        if not self._runs:
            yield from last
            return
        yield from self._runs.merged(last, self._merge)

    @staticmethod
    def _merge(*sources: Iterable[Ordered]) -> Iterator[Ordered]:
        """Sorted sources merged, the parts of an aggregate split across them added up (its
        count, its latest time, its first line). Tuples compare by their order first, so the
        merge needs no key function."""
        merged = heapq.merge(*sources)
        found = next(merged, None)
        if found is None:
            return
        order, count, latest, first = found
        for found in merged:
            if found[0] == order:
                count += found[1]
                latest, first = max(latest, found[2]), min(first, found[3])
            else:
                yield order, count, latest, first
                order, count, latest, first = found
        yield order, count, latest, first

    @staticmethod
    def _by_time(merged: Iterable[Ordered]) -> Iterator[list[Ordered]]:
        """The aggregates of each `when` together: one bucket's, or one instant's at grain none."""
        for _, aggregates in groupby(merged, key=lambda found: found[0][0]):
            yield list(aggregates)


def _write_aggregates(out: IO[bytes], ordered: Iterable[Ordered]) -> None:
    pack = _FRAME.pack
    for (when, account, user, feature, bucket), count, at_ms, line in ordered:
        ids = (account.encode(), user.encode(), feature.encode())
        out.write(pack(when, bucket, count, at_ms, line, *map(len, ids)))
        out.write(b"".join(ids))


def _read_aggregates(handle: IO[bytes]) -> Iterator[Ordered]:
    read, unpack, size = handle.read, _FRAME.unpack, _FRAME.size
    while header := read(size):
        when, bucket, count, at_ms, line, a, u, f = unpack(header)
        ids = read(a + u + f)
        account, user, feature = ids[:a].decode(), ids[a : a + u].decode(), ids[a + u :].decode()
        yield (when, account, user, feature, bucket), count, at_ms, line
