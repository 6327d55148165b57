"""Portfolio answers from the partitions' projected sums, with the core's own functions.

The month objects are those of `streamer offline`'s portfolio.json: the partitions' period sums
are merged with `streamer.core.portfolio.merge` and read with `streamer.core.periods`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from streamer.core.clock import iso, month_label, month_start
from streamer.core.periods import month_metrics, months_in_data, period_metrics
from streamer.core.portfolio import PeriodSums, merge
from streamer.core.totals import add_up, report
from streamer.projection.redis_reader import PartitionData


class OutOfRange(ValueError):
    """A period outside the kept history."""


def currency(meta: Mapping[str, str]) -> str:
    return meta.get("currency") or "USD"


def options(meta: Mapping[str, str]) -> dict[str, Any]:
    """`period_metrics` options as the workers' configuration sets them."""
    cost = meta.get("cs_cost_per_month") or ""
    return {
        "gross_margin": float(meta.get("gross_margin") or 1.0),
        "cs_cost_per_month": Decimal(cost) if cost else None,
    }


def as_of(parts: Sequence[PartitionData]) -> str | None:
    """The portfolio's stream time: the latest event time any partition has seen."""
    latest = max((part.stream_time for part in parts), default=-1)
    return iso(latest) if latest >= 0 else None


def now(parts: Sequence[PartitionData], meta: Mapping[str, str]) -> dict[str, Any]:
    """`{"currency", "as_of", "current"}`: totals now, as portfolio.json's `current`."""
    code = currency(meta)
    return {
        "currency": code,
        "as_of": as_of(parts),
        "current": report(add_up(part.totals for part in parts), code),
    }


def merged(parts: Sequence[PartitionData]) -> PeriodSums:
    return merge(part.sums for part in parts)


def months(sums: PeriodSums, meta: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every calendar month with data, as portfolio.json's `months`."""
    kwargs = options(meta)
    return [month_metrics(sums, month, **kwargs) for month in months_in_data(sums)]


def kept_range(sums: PeriodSums) -> tuple[int, int]:
    """First and last month start a period may use: the kept history up to next month's start."""
    return sums.lo, sums.hi


def period(sums: PeriodSums, m1: int, m2: int, meta: Mapping[str, str]) -> dict[str, Any]:
    """Metrics of [first of m1, first of m2); `OutOfRange` outside the kept history."""
    if sums.hi < 0:
        raise OutOfRange("the projection has no portfolio data yet")
    if m1 >= m2:
        raise OutOfRange(f"'from' ({label(m1)}) must be before 'to' ({label(m2)})")
    lo, hi = kept_range(sums)
    if m1 < lo or m2 > hi:
        raise OutOfRange(
            f"period {label(m1)}..{label(m2)} is outside the kept history {label(lo)}..{label(hi)}"
        )
    body: dict[str, Any] = {"from": label(m1), "to": label(m2), "months": m2 - m1}
    if m2 - m1 == 1:
        body["month"] = month_label(m1)
    return {**body, **period_metrics(sums, m1, m2, **options(meta))}


def label(month: int) -> str:
    """First-of-month date of an absolute month number, e.g. 2024-03-01."""
    return iso(month_start(month))[:10]
