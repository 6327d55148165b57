"""Product event rows -> `usage.recorded` events, one per row or aggregated per hour or day (pure).

An aggregate is one account, user and feature in one bucket; it carries the number of rows as
`count` and the time of its latest row, so no use is counted before it happened. Buckets run
from just after a boundary to the boundary inclusive, like the core's day buckets, so a
row and its aggregate always fall on the same UTC day: day-level usage metrics are the same
whatever the grain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from streamer.importer.subscriptions import Imported, event_id, rfc3339_ms

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class UsageGrain(StrEnum):
    hour = "hour"
    day = "day"
    none = "none"

    @property
    def ms(self) -> int:
        return {UsageGrain.hour: HOUR_MS, UsageGrain.day: DAY_MS, UsageGrain.none: 0}[self]


Key = tuple[str, str, str, int]  # account, user, feature, bucket (or source line for grain none)


@dataclass
class UsageAggregator:
    """Collects rows; `events()` gives one event per key. Memory: one entry per aggregate."""

    grain: UsageGrain
    source: str = ""  # file name, part of the ids at grain none
    rows: int = 0
    _buckets: dict[Key, list[int]] = field(default_factory=dict)  # key -> [count, latest ms, first line]

    def add(self, account: str, user: str, feature: str, at_ms: int, line: int) -> None:
        self.rows += 1
        size = self.grain.ms
        bucket = -(-at_ms // size) if size else line  # ceiling: (boundary, boundary] buckets
        key = (account, user, feature, bucket)
        found = self._buckets.get(key)
        if found is None:
            self._buckets[key] = [1, at_ms, line]
        else:
            found[0] += 1
            if at_ms > found[1]:
                found[1] = at_ms

    def __len__(self) -> int:
        return len(self._buckets)

    def sorted_events(self) -> Iterator[Imported]:
        """One event per aggregate, by (time, account, user, feature): a deterministic order."""
        grain = self.grain.value
        items = sorted(self._buckets.items(), key=lambda item: (item[1][1], item[0]))
        self._buckets = {}
        for (account, user, feature, bucket), (count, at_ms, line) in items:
            scope = (self.source, bucket) if self.grain is UsageGrain.none else (grain, bucket)
            yield Imported(
                at_ms,
                {
                    "event_id": event_id("usage", account, user, feature, *scope),
                    "event_type": "usage.recorded",
                    "account_id": account,
                    "occurred_at": rfc3339_ms(at_ms),
                    "user_id": user,
                    "feature": feature,
                    "count": count,
                },
                (self.source, line),
                count,
            )
