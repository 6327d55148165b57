"""Engagement: DAU/WAU/MAU, stickiness, seat utilisation, breadth, trend, recency, time to value."""

from __future__ import annotations

import pytest

from streamer.core.clock import DAY
from streamer.core.config import Features, Limits, ScoreConfig
from streamer.core.usage import HORIZON_DAYS, Usage

from .events import at, ms, started, usage
from .harness import Feed

NOW = at(40, 12)  # windows end with day 40 (the day holding the instant before now)


def engaged_account(config: ScoreConfig | None = None) -> Feed:
    """Day 0: 10-seat subscription; then five users over 40 days (see each test's arithmetic)."""
    feed = Feed(config)
    feed(
        started("acme", at(0), "100", seats=10),
        usage("acme", at(0, 10), "u1", "reports"),  # day 0: outside the 30-day window
        usage("acme", at(20, 10), "u2", "export"),  # day 20
        usage("acme", at(37, 10), "u3", "reports"),  # day 37
        usage("acme", at(39, 10), "u5", "api"),  # day 39
        usage("acme", at(40, 8), "u4", "dashboards", 3),  # day 40
        usage("acme", at(40, 9), "u4", "dashboards"),  # same user, same day
        usage("acme", at(40, 9, 30), "u5", "dashboards"),  # day 40
    )
    return feed


def test_dau_wau_mau_count_distinct_users_in_1_7_30_days() -> None:
    facts = engaged_account().facts("acme", NOW)
    assert facts.dau == 2  # u4, u5 on day 40
    assert facts.wau == 3  # + u3 (day 37); days 34..40
    assert facts.mau == 4  # + u2 (day 20); days 11..40, u1 (day 0) is out


def test_stickiness_is_dau_averaged_over_30_days_over_mau() -> None:
    facts = engaged_account().facts("acme", NOW)
    # distinct users per day over days 11..40: d20 1, d37 1, d39 1, d40 2 -> 5 / 30 days
    assert facts.stickiness == pytest.approx((5 / 30) / 4)


def test_seat_utilisation_is_mau_over_licensed_seats() -> None:
    facts = engaged_account().facts("acme", NOW)
    assert facts.seats == 10
    assert facts.seat_utilisation == pytest.approx(0.4)


def test_seat_utilisation_absent_without_known_seats() -> None:
    feed = Feed()
    feed(started("acme", at(0), "100"), usage("acme", at(1), "u1"))
    facts = feed.facts("acme", at(2))
    assert facts.seats is None
    assert facts.seat_utilisation is None
    assert "seat_utilisation" not in feed.evaluate("acme", at(2)).signals


def test_feature_breadth_counts_distinct_features_in_30_days() -> None:
    evaluation = engaged_account().evaluate("acme", NOW)
    assert evaluation.facts.feature_breadth == 4  # export, reports, api, dashboards
    assert evaluation.signals["feature_breadth"][0] == pytest.approx(4 / 8)  # default denominator


def test_feature_breadth_is_a_fraction_of_the_configured_catalogue() -> None:
    catalogue = (*(f"feature-{n}" for n in range(6)), "reports", "export", "api", "dashboards")
    config = ScoreConfig(features=Features(catalogue=catalogue))
    evaluation = engaged_account(config).evaluate("acme", NOW)
    assert evaluation.signals["feature_breadth"][0] == pytest.approx(4 / 10)


def test_recency_is_days_since_the_last_usage_event() -> None:
    facts = engaged_account().facts("acme", NOW)
    assert facts.days_since_last_use == pytest.approx(2.5 / 24)  # 09:30 -> 12:00
    feed = Feed()
    feed(usage("acme", at(10, 6), "u1"))
    assert feed.facts("acme", at(13, 18)).days_since_last_use == pytest.approx(3.5)


def test_time_to_value_from_first_start_to_first_use() -> None:
    facts = engaged_account().facts("acme", NOW)
    assert facts.time_to_value_days == pytest.approx(10 / 24)


def test_time_to_value_waits_for_a_configured_key_feature() -> None:
    config = ScoreConfig(features=Features(key_features=("api",)))
    facts = engaged_account(config).facts("acme", NOW)
    assert facts.time_to_value_days == pytest.approx(39 + 10 / 24)


def weekly_pattern(last_week: list[int]) -> Feed:
    """Days 0..27: count 2 a day (weekly average 14); days 28..: the given counts."""
    feed = Feed()
    for d in range(28):
        feed(usage("acme", at(d, 10), "u1", "reports", 2))
    for offset, count in enumerate(last_week):
        if count:
            feed(usage("acme", at(28 + offset, 10), "u1", "reports", count))
    return feed


def test_usage_trend_compares_last_7_days_with_weekly_average_of_28_before() -> None:
    facts = weekly_pattern([1, 1, 1, 1, 1]).facts("acme", at(35))  # windows end with day 34
    assert facts.activity_7d == 5
    assert facts.weekly_baseline == 14
    assert facts.usage_trend == pytest.approx(5 / 14 - 1)  # -64%


def test_usage_trend_up() -> None:
    facts = weekly_pattern([3] * 7).facts("acme", at(35))
    assert facts.usage_trend == pytest.approx(21 / 14 - 1)


def test_usage_trend_absent_without_a_baseline() -> None:
    feed = Feed()
    feed(usage("acme", at(30), "u1", count=5))
    facts = feed.facts("acme", at(31))
    assert facts.activity_7d == 5
    assert facts.usage_trend is None


def test_out_of_order_usage_within_lateness_gives_the_same_windows() -> None:
    events = [
        usage("acme", at(d, h), f"u{(d * 7 + h) % 5}", f"f{d % 3}", 1 + h % 2)
        for d in range(10, 30)
        for h in (3, 15)
    ]
    in_order, shuffled = Feed(), Feed()
    in_order(*events)
    # each chunk of 8 events (4 days) arrives newest first: never more than 7 days late
    for start in range(0, len(events), 8):
        shuffled(*reversed(events[start : start + 8]))
    assert all(outcome.status == "accepted" for outcome in shuffled.outcomes)
    for now in (at(30), at(31, 12), at(40)):
        assert in_order.facts("acme", now) == shuffled.facts("acme", now)


def test_user_cap_evicts_the_least_recently_active_user() -> None:
    config = ScoreConfig(limits=Limits(max_users=3))
    feed = Feed(config)
    feed(*(usage("acme", at(d, 9), f"u{d}") for d in range(4)))
    kept = feed.account("acme").usage
    assert [kept.has_user(f"u{d}") for d in range(4)] == [False, True, True, True]
    assert kept.user_count() == 3
    assert feed.facts("acme", at(4)).mau == 3


def test_memory_stays_bounded_over_two_years_of_heavy_usage() -> None:
    """10,000 distinct users, 100,000 usage events over 730 days in one account."""
    max_users, max_features = 500, 32
    state = Usage()
    start, step = ms(at(0)), 730 * DAY // 100_000
    last_day = -1
    for n in range(100_000):
        moment = start + n * step
        today = moment // DAY
        if today != last_day:  # the engine expires buckets when the day advances
            state.expire(today)
            last_day = today
        state.record(
            moment,
            f"user-{n // 10}",  # each user is active for 10 events in a row
            f"feature-{n % 300}",
            1,
            key_feature=False,
            max_users=max_users,
            max_features=max_features,
        )
    assert len({f"user-{n // 10}" for n in range(100_000)}) == 10_000
    assert state.user_count() <= max_users
    assert len(state.features) <= max_features
    assert len(state.bucket_days) <= HORIZON_DAYS  # events and distinct users per day
    assert len(state.last_days) <= max_users
    assert sum(state.last_day_users) == state.user_count()
    end = last_day
    assert state.active_users(end, 30) <= max_users
    assert state.activity(end, 7) == sum(1 for n in range(100_000) if (start + n * step) // DAY > end - 7)


def test_counts_past_32_bits_are_kept_exactly() -> None:
    """Day and feature counters hold 4 bytes a value until one needs 8 (then the array widens)."""
    big = 2**31 - 1
    state = Usage()
    for hour in (1, 2, 3):
        state.record(ms(at(5, hour)), "u1", "api", big, key_feature=False, max_users=10, max_features=10)
    state.record(ms(at(4, 1)), "u2", "api", big, key_feature=False, max_users=10, max_features=10)
    day = ms(at(5)) // DAY
    assert state.activity(day, 1) == 3 * big
    assert state.activity(day, 2) == 4 * big
    assert state.volume(day, 7).events == 4 * big
    assert state.feature_volume(day, 7) == {"api": 4 * big}
    assert state.feature_counts("api") == {day: 3 * big, day - 1: big}


def test_feature_days_stay_ascending_whatever_order_events_arrive_in() -> None:
    """A feature's window is two bisections of its days: a late day goes in its place."""
    state = Usage()
    for day in (10, 14, 12, 9, 12, 15):
        state.record(ms(at(day, 1)), "u1", "api", 1, key_feature=False, max_users=10, max_features=10)
    start = ms(at(0)) // DAY
    assert list(state.feature_counts("api")) == [start + d for d in (9, 10, 12, 14, 15)]
    assert state.feature_volume(start + 14, 3) == {"api": 3}  # days 12 (twice) and 14
    assert state.feature_volume(start + 11, 2) == {"api": 1}  # day 10


def test_feature_days_of_a_record_kept_in_arrival_order_are_sorted_when_read() -> None:
    """Records written before the days were kept ascending hold them in arrival order."""
    state = Usage()
    state.add_feature_counts("api", [5, 1, 3, 2, 4, 7])  # (day, count): days 5, 3, 4
    assert list(state.feature_counts("api")) == [3, 4, 5]
    assert state.feature_volume(4, 2) == {"api": 9}  # days 3 and 4
    assert state.feature_volume(5, 1) == {"api": 1}
