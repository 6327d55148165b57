"""Event-time arithmetic on integer epoch seconds and RFC 3339 formatting."""

from __future__ import annotations

import calendar
import time
from datetime import UTC, date, datetime

DAY = 86_400
HOUR = 3_600

MINUTE_OF_DAY: tuple[str, ...] = tuple(f"{m // 60:02d}:{m % 60:02d}:00Z" for m in range(1440))
"""`HH:MM:00Z` for every minute of a day, so usage timestamps cost one concatenation."""


def epoch(day: date) -> int:
    """Epoch seconds of `day` at 00:00 UTC."""
    return calendar.timegm((day.year, day.month, day.day, 0, 0, 0))


def add_months(ts: int, months: int) -> int:
    """`ts` moved by whole calendar months, the day clamped to the month's length."""
    moment = datetime.fromtimestamp(ts, UTC)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return calendar.timegm((year, month, day, moment.hour, moment.minute, moment.second))


def rfc3339(ts: int) -> str:
    """`ts` as an RFC 3339 UTC timestamp with a `Z` offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def day_prefix(ts: int) -> str:
    """The `YYYY-MM-DDT` prefix of the UTC day containing `ts`."""
    return time.strftime("%Y-%m-%dT", time.gmtime(ts))
