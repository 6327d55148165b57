"""Churn labels from an account's MRR timeline: churn is the instant its MRR goes from above 0 to 0."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

Timeline = Sequence[tuple[int, int]]  # (instant ms, account MRR from that instant on), by instant


def mrr_at(timeline: Timeline, ts: int) -> int:
    """MRR at instant `ts`, counting a change effective exactly at `ts` (as the core does)."""
    index = bisect_right(timeline, ts, key=lambda point: point[0])
    return timeline[index - 1][1] if index else 0


def churn_instants(timeline: Timeline) -> list[int]:
    """Every instant at which MRR goes from above 0 to 0 (a reactivated account may churn again)."""
    instants: list[int] = []
    previous = 0
    for ts, mrr in timeline:
        if previous > 0 and mrr == 0:
            instants.append(ts)
        previous = mrr
    return instants


def churns_within(timeline: Timeline, start: int, horizon_ms: int) -> bool | None:
    """Whether an account paying at `start` churns in (start, start + horizon]; None when not paying."""
    if mrr_at(timeline, start) <= 0:
        return None
    return any(start < ts <= start + horizon_ms for ts in churn_instants(timeline))
