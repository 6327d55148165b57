"""Churn labels from a hand-made MRR timeline, and which month starts are sampled."""

from __future__ import annotations

from datetime import UTC, datetime

from streamer.backtest.labels import churn_instants, churns_within, mrr_at
from streamer.backtest.sampling import plan_month_starts
from streamer.core.clock import DAY


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# Pays from Jan 10, expands Feb 1, churns Mar 15, comes back Jun 1, churns again Jul 20.
TIMELINE = [
    (ms("2024-01-10"), 100),
    (ms("2024-02-01"), 250),
    (ms("2024-03-15"), 0),
    (ms("2024-06-01"), 80),
    (ms("2024-07-20"), 0),
]


def test_mrr_at_counts_a_change_effective_at_that_instant() -> None:
    assert mrr_at(TIMELINE, ms("2024-01-09")) == 0
    assert mrr_at(TIMELINE, ms("2024-01-10")) == 100
    assert mrr_at(TIMELINE, ms("2024-02-01") - 1) == 100
    assert mrr_at(TIMELINE, ms("2024-03-15")) == 0
    assert mrr_at([], ms("2024-03-15")) == 0


def test_every_fall_to_zero_is_a_churn_including_after_a_reactivation() -> None:
    assert churn_instants(TIMELINE) == [ms("2024-03-15"), ms("2024-07-20")]
    assert churn_instants([(1, 5), (2, 7)]) == []
    assert churn_instants([]) == []


def test_churn_within_a_window_after_a_month_start() -> None:
    march = ms("2024-03-01")
    assert churns_within(TIMELINE, march, 30 * DAY) is True  # Mar 15 is 14 days later
    assert churns_within(TIMELINE, ms("2024-02-01"), 30 * DAY) is False  # 43 days later
    assert churns_within(TIMELINE, ms("2024-02-01"), 60 * DAY) is True
    assert churns_within(TIMELINE, ms("2024-04-01"), 60 * DAY) is None  # not paying: not a sample
    assert churns_within(TIMELINE, ms("2024-07-01"), 30 * DAY) is True  # the second churn


def test_window_is_open_at_the_start_and_closed_at_the_end() -> None:
    start = ms("2024-01-01")
    timeline = [(start - DAY, 100), (start + 30 * DAY, 0)]
    assert churns_within(timeline, start, 30 * DAY) is True
    assert churns_within(timeline, start, 30 * DAY - 1) is False
    # Churned exactly at the month start: not paying then, so not sampled.
    assert churns_within([(start - DAY, 100), (start, 0)], start, 30 * DAY) is None


def test_month_starts_after_the_warmup_whose_window_fits_the_data() -> None:
    activity = ms("2024-01-01") + 3_600_000  # 01:00 on the first day
    end = ms("2024-12-31") + 23 * 3_600_000
    starts = plan_month_starts(activity, end, 60 * DAY, 30 * DAY)
    assert starts[0] == ms("2024-03-01")  # Jan 1 + 60 days, counted from the day activity began
    assert starts[-1] == ms("2024-12-01")  # Dec 1 + 30 days fits before Dec 31 23:00
    assert len(starts) == 10
    assert plan_month_starts(activity, ms("2024-02-15"), 60 * DAY, 30 * DAY) == []
