"""The one-line baseline the score must beat: product events in the 28 days before a month start.

Fewer events = more risk. Counted from the `usage.recorded` events the backtest replays (the sum
of their `count`), per account in UTC day buckets, keeping only the days a window still needs,
so memory stays bounded whatever the history's length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from streamer.core.clock import DAY

BASELINE_DAYS = 28
BASELINE_NAME = f"usage events in the {BASELINE_DAYS} days before (fewer = riskier)"

SampleKey = tuple[str, int]  # (account, month start ms)


def accepted_line(line: bytes) -> Any:
    """A line the replay accepted, parsed: orjson refuses numbers past a double (`1e400`), which
    the contract lets through in a field it does not read; Python's parser takes them (as
    infinity). Parsed with orjson alone, such a valid line ended `streamer backtest` with
    orjson's message and a line number of its JSON, or left its usage out of the baseline."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


@dataclass
class UsageWindow:
    """Per-account usage counts by UTC day, fed in event-time order (older days are dropped)."""

    days: int = BASELINE_DAYS
    _counts: dict[str, dict[int, int]] = field(default_factory=dict)
    _latest_day: int = -(1 << 62)

    def add(self, account: str, at: int, count: int) -> None:
        day = at // DAY
        buckets = self._counts.setdefault(account, {})
        buckets[day] = buckets.get(day, 0) + count
        self._latest_day = max(self._latest_day, day)
        if len(buckets) > self.days + 1:
            self._prune(buckets)

    def add_line(self, at: int, line: bytes) -> None:
        """A usage.recorded line as replayed; lines the core would refuse count as what they say."""
        try:
            value = accepted_line(line)
            account, count = value["account_id"], value.get("count", 1)
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if isinstance(account, str) and isinstance(count, int) and count >= 1:
            self.add(account, at, count)

    def _prune(self, buckets: dict[int, int]) -> None:
        oldest = self._latest_day - self.days
        for day in [day for day in buckets if day < oldest]:
            del buckets[day]

    def before(self, account: str, at: int) -> int:
        """Events of `account` in [at - days, at): whole UTC days when `at` is a midnight."""
        first, last = (at - self.days * DAY) // DAY, (at - 1) // DAY
        buckets = self._counts.get(account)
        if not buckets:
            return 0
        if len(buckets) > self.days + 1:
            self._prune(buckets)
        return sum(count for day, count in buckets.items() if first <= day <= last)
