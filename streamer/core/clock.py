"""Event-time arithmetic on integer epoch milliseconds (the core never reads a wall clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

SECOND = 1000
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


# Instants converted lately, by identity: an event's `occurred_at` is converted where it is
# bounded (intake), merged (the worker's scorer) and applied (the engine, after the rest of its
# batch was admitted), each time the same immutable object. Each entry holds its datetime, so an
# id is never that of a different, recycled object while it is here; cleared when full.
_converted: dict[int, tuple[datetime, int]] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_CONVERTED_MAX = 16_384


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    known = _converted.get(id(moment))
    if known is not None and known[0] is moment:
        return known[1]
    ms = (moment - _EPOCH) // _MILLISECOND  # exact: a float timestamp * 1000 rounded up at year 9999
    if len(_converted) >= _CONVERTED_MAX:
        _converted.clear()
    _converted[id(moment)] = (moment, ms)
    return ms


def bucket_of(ts: int) -> int:
    """Day bucket of an instant for rolling windows: buckets are (midnight, midnight].

    An instant exactly at midnight closes the day before, so a window evaluated at an
    instant counts everything up to and including it (ticks run at midnight).
    """
    return (ts - 1) // DAY


def iso(ts: int) -> str:
    """RFC 3339 UTC text of an epoch-millisecond instant; never raises (for reasons and logs).

    An instant outside years 1..9999 has no RFC 3339 text: it is shown as epoch milliseconds.
    """
    try:
        moment = _EPOCH + timedelta(milliseconds=ts)  # exact, where ts / 1000 rounds
    except OverflowError:
        return f"{ts} ms since 1970-01-01T00:00:00Z (outside years 1..9999)"
    text = moment.isoformat(timespec="milliseconds" if ts % 1000 else "seconds")
    return text.replace("+00:00", "Z")


# The last month found and its bounds [start, end) in epoch ms: consecutive events and ticks
# mostly fall in the same month. One tuple, replaced whole, so a reader in
# another thread sees a matching triple.
_last_month: tuple[int, int, int] = (0, 0, 0)


def month_of(ts: int) -> int:
    """Absolute month number (year * 12 + month - 1) containing the instant `ts`."""
    global _last_month
    start, end, month = _last_month
    if start <= ts < end:
        return month
    moment = datetime.fromtimestamp(ts / 1000, tz=UTC)
    month = moment.year * 12 + moment.month - 1
    start, end = month_start(month), month_start(month + 1)
    if start <= ts < end:  # (the bounds agree with the conversion above: remember them)
        _last_month = (start, end, month)
    return month


@lru_cache(maxsize=4096)  # pure; a partition's rebuild asks for the same 37 months per account
def month_start(month: int) -> int:
    """Epoch ms of 00:00 UTC on the first day of absolute month `month`."""
    year, index = divmod(month, 12)
    return to_ms(datetime(year, index + 1, 1, tzinfo=UTC))


def month_label(month: int) -> str:
    """'YYYY-MM' for an absolute month number."""
    year, index = divmod(month, 12)
    return f"{year:04d}-{index + 1:02d}"


def parse_month(text: str) -> int:
    """Absolute month number of 'YYYY-MM' or of a first-of-month date 'YYYY-MM-01'."""
    parts = text.split("-")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "01"):
        raise ValueError(f"expected a month 'YYYY-MM' or a first-of-month date 'YYYY-MM-01', got {text!r}")
    try:
        year, month = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"expected digits in {text!r}") from None
    if not 1 <= month <= 12:
        raise ValueError(f"month {month} in {text!r} is not 1..12")
    return year * 12 + month - 1
