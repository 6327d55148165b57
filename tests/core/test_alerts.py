"""Alert rules, severities, cooldowns and deterministic ids, driven through the engine."""

from __future__ import annotations

import math
import re

import pytest

from streamer.contract.outputs import Alert
from streamer.core.alerts import alert_id
from streamer.core.clock import DAY
from streamer.core.config import ComponentWeights, Curve, Curves, Rules, ScoreConfig

from .events import (
    at,
    canceled,
    changed,
    csat,
    ms,
    nps,
    opened,
    payment_failed,
    profile,
    renewed,
    resolved,
    stamp,
    started,
    usage,
)
from .harness import Feed


def rules(feed: Feed, account: str | None = None) -> list[tuple[str, str]]:
    return [(a["rule"], a["severity"]) for a in feed.raised(account=account)]


# -- band transitions ----------------------------------------------------------------------------

# The band tests below are about severities, cooldowns and score moves: band changes are
# acknowledged at once there (the confirmation over days has its own tests further down).
AT_ONCE = ScoreConfig(alerts=Rules(band_confirm_days=0))


def band_walk() -> Feed:
    """One respondent's NPS sets the score alone: 10 -> 100, 8 -> 50, 0 -> 0."""
    feed = Feed(AT_ONCE)
    feed(nps("acme", at(0, 9), 10))  # green, first evaluation: nothing to compare with
    feed(nps("acme", at(1, 9), 8))  # yellow
    feed(nps("acme", at(2, 9), 0))  # red
    feed(nps("acme", at(3, 9), 10))  # green again
    return feed


def test_band_worsening_warns_then_goes_critical_and_recovery_is_info() -> None:
    feed = band_walk()
    bands = [
        (a["severity"], a["previous_band"], a["band"], a["raised_at"]) for a in feed.raised("band_worsened")
    ]
    assert bands == [
        ("warning", "green", "yellow", stamp(at(1, 9))),
        ("critical", "yellow", "red", stamp(at(2, 9))),  # inside the cooldown, but worse
    ]
    [recovered] = feed.raised("band_recovered")
    assert (recovered["severity"], recovered["previous_band"], recovered["band"]) == ("info", "red", "green")
    assert (recovered["previous_score"], recovered["score"]) == (0, 100)


def test_alerts_carry_readable_reasons_and_validate() -> None:
    feed = band_walk()
    for alert in feed.alerts:
        Alert.model_validate(alert)
        assert alert["reasons"][0]["message"]
    first = feed.raised("band_worsened")[0]
    assert first["reasons"][0]["message"] == "health band green -> yellow (score 100 -> 50)"


NARROW_NPS = ScoreConfig(
    curves=Curves(nps=Curve(points=((-100, 30), (0, 50), (100, 51)))),
    bands={"green": 50.5, "yellow": 40},
    alerts=Rules(band_confirm_days=0),
)


def test_no_band_alert_when_the_score_barely_moved_across_a_threshold() -> None:
    feed = Feed(NARROW_NPS)
    feed(nps("acme", at(0, 9), 10))  # 51: green
    feed(nps("acme", at(1, 9), 8))  # 50: yellow, one point lower
    assert feed.snapshot("acme")["band"] == "yellow"
    assert feed.raised("band_worsened") == []
    feed(nps("acme", at(2, 9), 0))  # 30: red, 21 points below where green was acknowledged
    [worse] = feed.raised("band_worsened")
    assert (worse["previous_band"], worse["previous_score"], worse["band"], worse["score"]) == (
        "green",
        51,
        "red",
        30,
    )
    assert worse["reasons"][0]["message"] == "health band green -> red (score 51 -> 30)"


def test_no_band_alert_when_only_the_stage_thresholds_changed() -> None:
    onboarding_green_at_60 = ScoreConfig(
        curves=Curves(nps=Curve(points=((-100, 0), (100, 100)))),
        segments={"onboarding": {"bands": {"green": 60, "yellow": 40}}},
    )
    feed = Feed(onboarding_green_at_60)
    feed(nps("acme", at(0, 9), 10, "r1"), nps("acme", at(0, 9), 10, "r2"), nps("acme", at(0, 9), 8, "r3"))
    feed(nps("acme", at(0, 9), 8, "r4"), nps("acme", at(0, 9), 0, "r5"))  # NPS 20: score 60
    assert feed.snapshot("acme")["band"] == "green"  # onboarding: green from 60
    feed(nps("acme", at(95, 9), 8, "r3"))  # same answers, now adopted: green from 70
    snapshot = feed.snapshot("acme")
    assert (snapshot["score"], snapshot["lifecycle_stage"], snapshot["band"]) == (60, "adopted", "yellow")
    assert feed.raised("band_worsened") == []


def test_band_worsening_does_not_repeat_inside_cooldown_unless_worse() -> None:
    feed = Feed(AT_ONCE)
    feed(nps("acme", at(0, 9), 10))
    feed(nps("acme", at(1, 9), 8))  # green -> yellow: warning
    feed(nps("acme", at(1, 21), 10))  # -> green: info
    feed(nps("acme", at(2, 9), 8))  # -> yellow again, 1 day later: held back (cooldown 3 days)
    feed(nps("acme", at(5, 9), 10))  # -> green, 3.5 days after the last recovery: held back (7 days)
    feed(nps("acme", at(5, 21), 8))  # -> yellow 4.5 days after the last warning: raised
    worsened = [a["raised_at"] for a in feed.raised("band_worsened")]
    recovered = [a["raised_at"] for a in feed.raised("band_recovered")]
    assert worsened == [stamp(at(1, 9)), stamp(at(5, 21))]
    assert recovered == [stamp(at(1, 21))]


def test_a_band_change_alerts_once_it_held_for_the_confirm_days() -> None:
    """Bands move with the peers' percentiles a little every day: a change is acknowledged only
    after it held `band_confirm_days` (2) in event time, at the first re-scoring from then on,
    which the engine schedules even when the account has no event then."""
    feed = Feed()
    feed(nps("acme", at(0, 9), 10))  # green
    feed(nps("acme", at(1, 9), 8))  # yellow: pending from day 1 09:00
    assert feed.snapshot("acme")["band"] == "yellow"  # the band itself shows at once
    assert feed.raised("band_worsened") == []
    feed(nps("other", at(3, 8), 10))  # the clock passes day 2 and 3 midnight: 1.6 days held
    assert feed.raised("band_worsened") == []
    feed(nps("other", at(6, 9), 10))  # ... and day 4 midnight: held 2.6 days
    [worse] = feed.raised("band_worsened")
    assert (worse["previous_band"], worse["band"], worse["raised_at"]) == ("green", "yellow", stamp(at(4)))
    assert worse["reasons"][0]["message"] == "health band green -> yellow (score 100 -> 50) since 2024-01-02"


def test_a_band_change_undone_within_the_confirm_days_raises_nothing() -> None:
    feed = Feed()
    feed(nps("acme", at(0, 9), 10))  # green
    feed(nps("acme", at(1, 9), 8))  # yellow for a day ...
    feed(nps("acme", at(2, 9), 10))  # ... and green again: noise
    feed(nps("acme", at(3, 9), 8))  # yellow again: the 2 days count from here
    feed(nps("other", at(5, 8), 10))
    assert feed.raised("band_worsened") == feed.raised("band_recovered") == []
    feed(nps("other", at(9, 9), 10))
    assert [a["raised_at"] for a in feed.raised("band_worsened")] == [stamp(at(6))]


def test_a_prospect_becoming_a_customer_raises_no_band_recovery() -> None:
    """A CRM that knows the account a day before billing does: scored before it paid (the empty
    score, 50: yellow), its first paying days read as a recovery, "yellow -> green (50 -> 100)"."""
    feed = Feed()
    feed(profile("acme", at(0, 9), name="Acme"))
    feed(started("acme", at(1, 9), seats=20))
    feed(started("zeta", at(12, 9), seats=20))  # time passes for the partition
    assert feed.raised(account="acme") == []
    assert feed.snapshot("acme")["band"] == "green"


def first_use_on_day(first: int, config: ScoreConfig | None = None) -> Feed:
    """An account that began on day 0, scored on its subscription alone (100) until its first use
    on day `first`; then one user every day for 40 days: its score drops to the 60s at the first
    use and climbs back to 79 as its 28-day windows fill."""
    feed = Feed(config)
    feed(started("acme", at(0, 9), seats=20))
    for day in range(first, first + 40):
        feed(usage("acme", at(day, 10)))
    return feed


def test_the_first_use_of_an_established_account_raises_no_band_alert() -> None:
    """Product analytics connected two months after the account began: its bands settle."""
    feed = first_use_on_day(60)
    assert feed.raised("band_worsened") == feed.raised("band_recovered") == []
    assert feed.snapshot("acme")["band"] == "green"
    # What `band_settle_days` prevents: a warning at the first use and a recovery 9 days later.
    unsettled = first_use_on_day(60, ScoreConfig(alerts=Rules(band_settle_days=0)))
    assert [(a["rule"], a["previous_score"]) for a in unsettled.raised(account="acme")] == [
        ("band_worsened", 100),
        ("band_recovered", 69.5),
    ]


def test_a_new_accounts_first_weeks_are_not_settling() -> None:
    """How a new account starts to use the product predicts its churn: its band alerts stay."""
    feed = first_use_on_day(1)
    assert [a["previous_score"] for a in feed.raised("band_worsened")] == [100]


def test_a_band_change_once_the_use_has_settled_alerts() -> None:
    """Settling ends `band_settle_days` (28) after the first use: a detractor 41 days after it
    moves the band, and the change is acknowledged with an alert once it held the confirm days."""
    feed = first_use_on_day(60)
    feed(nps("acme", at(101, 9), 0))
    for day in range(102, 105):
        feed(usage("acme", at(day, 10)))
    [worse] = feed.raised("band_worsened")
    assert (worse["previous_band"], worse["band"], worse["raised_at"]) == (
        "green",
        "yellow",
        stamp(at(103, 10)),
    )


# -- score drop ----------------------------------------------------------------------------------


LINEAR_NPS = ScoreConfig(curves=Curves(nps=Curve(points=((-100, 0), (100, 100)))))


def respondents(feed: Feed, when, scores: dict[int, int]) -> None:
    feed(*(nps("acme", when, score, f"r{n}") for n, score in scores.items()))


def test_score_drop_of_15_points_within_7_days() -> None:
    # score = (NPS + 100) / 2 with 10 respondents: each promoter turning passive costs 5 points
    feed = Feed(LINEAR_NPS)
    respondents(feed, at(0, 9), dict.fromkeys(range(10), 10))  # 100
    respondents(feed, at(2, 9), {0: 8, 1: 8})  # 90: down 10, nothing
    assert feed.raised("score_drop") == []
    respondents(feed, at(3, 9), {2: 8})  # 85: down 15 from the 100 three days ago
    [drop] = feed.raised("score_drop")
    assert drop["severity"] == "warning"
    assert drop["reasons"][0]["message"] == "score fell 15 points in 7 days (100 -> 85)"
    respondents(feed, at(3, 12), {3: 8})  # 80: same episode, same level: no repeat
    assert len(feed.raised("score_drop")) == 1
    respondents(feed, at(4, 9), {4: 8, 5: 8})  # 70: down 30: critical
    assert [a["severity"] for a in feed.raised("score_drop")] == ["warning", "critical"]


def test_slow_decline_is_not_a_score_drop() -> None:
    feed = Feed(LINEAR_NPS)
    respondents(feed, at(0, 9), dict.fromkeys(range(10), 10))
    for step in range(1, 6):  # 10 points every 8 days
        respondents(feed, at(8 * step, 9), {2 * step - 2: 8, 2 * step - 1: 8})
    assert feed.evaluate("acme", at(41)).score == 50
    assert feed.raised("score_drop") == []


# -- usage drop and silence --------------------------------------------------------------------


# usage_drop is off by default (see docs/backtest.md); these tests switch it on with the
# thresholds it had before, to check the rule itself.
USAGE_DROP_ON = ScoreConfig.model_validate(
    {
        "alerts": {
            "usage_drop": {"enabled": True, "cooldown_days": 14},
            "usage_drop_trend": -0.5,
            "usage_drop_critical_trend": -0.75,
            "usage_drop_min_weekly_baseline": 5,
        }
    }
)


def test_usage_drop_is_off_by_default() -> None:
    assert ScoreConfig().alerts.usage_drop.enabled is False
    feed = Feed()
    for d in range(28):
        feed(usage("acme", at(d, 10), "u1", "reports", 2))
    feed(usage("acme", at(40, 12), "u1", "reports", 1))
    assert feed.raised("usage_drop") == []


def test_usage_drop_when_trend_is_down_50_percent() -> None:
    feed = Feed(USAGE_DROP_ON)
    for d in range(28):
        feed(usage("acme", at(d, 10), "u1", "reports", 2))  # weekly average 14
    for d in range(28, 33):
        feed(usage("acme", at(d, 10), "u1", "reports", 1))
    feed(usage("acme", at(35, 12), "u1", "reports", 1))
    [drop] = feed.raised("usage_drop")
    # first seen at the day-35 tick: days 28..34 hold 5 against a weekly average of 14
    assert drop["raised_at"] == stamp(at(35))
    assert drop["severity"] == "warning"
    assert drop["reasons"][0]["value"] == pytest.approx(5 / 14 - 1, abs=1e-3)
    assert drop["reasons"][0]["baseline"] == 14


def test_no_usage_drop_on_a_tiny_baseline() -> None:
    feed = Feed(USAGE_DROP_ON)
    feed(*(usage("acme", at(d, 10)) for d in (0, 7, 14, 21)))  # weekly average 1
    feed(usage("acme", at(40)))
    assert feed.raised("usage_drop") == []


def test_silence_is_raised_by_stream_time_without_an_event_of_the_account() -> None:
    feed = Feed()
    feed(
        started("acme", at(0), "100"),
        usage("acme", at(0, 10), "u1"),
        usage("globex", at(0, 10), "u1"),  # not paying
    )
    for d in range(1, 31):  # another account keeps the stream moving
        feed(usage("initech", at(d, 12), "u1"))
    silence = [(a["raised_at"], a["severity"]) for a in feed.raised("silence", "acme")]
    # recency at the day-15 tick: 14.58 days (>= 14); critical at 28 days (day-29 tick)
    assert silence == [(stamp(at(15)), "warning"), (stamp(at(29)), "critical")]
    first = feed.raised("silence", "acme")[0]
    assert first["reasons"][0]["message"] == "no product usage for 15 days while paying"
    assert feed.raised("silence", "globex") == []


def test_paying_account_that_never_used_the_product_goes_silent() -> None:
    feed = Feed()
    feed(started("acme", at(0), "100"))
    for d in range(1, 17):
        feed(usage("initech", at(d, 12), "u1"))
    [silence] = feed.raised("silence", "acme")
    # counted from the day of the partition's first usage event (day 1), not from the start on
    # day 0 when no usage was tracked yet: 14 days at day 15, raised at that tick
    assert silence["raised_at"] == stamp(at(15))
    assert silence["reasons"][0]["message"] == "no product usage for 14 days while paying"


def test_a_never_used_account_is_not_silent_inside_its_grace_period() -> None:
    """The silence rule speaks only where the recency signal does: an account that never used
    the product counts as silent after a grace period (3 days), even with a shorter silence_days."""
    feed = Feed(ScoreConfig(alerts=Rules(silence_days=1)))
    feed(usage("initech", at(-20, 12), "u1"))  # usage is tracked from here
    feed(started("acme", at(1), "100"))
    for d in range(2, 8):
        feed(usage("initech", at(d, 12), "u1"))
    silence = [(a["raised_at"], a["severity"]) for a in feed.raised("silence", "acme")]
    # 3 days after the start on day 1 (the day-4 tick), already twice silence_days: critical
    assert silence == [(stamp(at(4)), "critical")]


def test_a_never_used_account_counts_as_silent_once_the_first_usage_cannot_move() -> None:
    """Usage tracked from day 0: until the allowed lateness (7 days) and a day have passed, a
    late usage event may still move the partition's first usage back, and the midnights scored
    meanwhile could not be scored again (arrival order changed the alerts: a property test).
    So a never-used account counts as silent from the day-8 midnight on, not from day 4."""
    feed = Feed(ScoreConfig(alerts=Rules(silence_days=1)))
    feed(usage("initech", at(0, 12), "u1"))
    feed(started("acme", at(1), "100"))
    for d in range(2, 12):
        feed(usage("initech", at(d, 12), "u1"))
    silence = [(a["raised_at"], a["severity"]) for a in feed.raised("silence", "acme")]
    assert silence == [(stamp(at(8)), "critical")]


def test_billing_history_from_before_usage_was_tracked_is_not_silence() -> None:
    feed = Feed()
    feed(started("acme", at(0), "100"))
    for d in range(10, 400, 10):  # billing history only: stream time moves, no usage anywhere
        feed(started(f"other-{d}", at(d), "50"))
    assert feed.raised("silence") == []
    for d in range(400, 430):
        feed(usage("initech", at(d, 12), "u1"))  # usage tracking starts on day 400
    silences = feed.raised("silence", "acme")
    assert silences, "silence once 14 days of tracked usage passed without acme's"
    # Tracked from the day of the first usage (day 400): 14 days on, at the day-414 midnight
    # (it came two days late before, at the day-416 one, 16 days of tracked usage).
    first = min(silences, key=lambda alert: alert["raised_at"])
    assert first["raised_at"] == stamp(at(414))
    assert first["reasons"][0]["value"] == 14  # days of tracked usage, not the 414 since the start


def test_billing_history_from_before_usage_was_tracked_does_not_score_use() -> None:
    """A README walk: 51 of 145 alerts of the demo session were band changes in the simulated
    billing years before any usage, explained as "0 product events on 0 days in 28 days"."""
    feed = Feed()
    feed(started("acme", at(0), "100"))
    for d in range(10, 400, 10):  # billing history only: no usage anywhere yet
        feed(started(f"other-{d}", at(d), "50"))
    before = feed.evaluate("acme", at(399))
    assert not {"recency_days", "usage_28d", "events_28d"} & set(before.signals)
    assert not [a for a in feed.alerts if a["account_id"] == "acme" and a["rule"].startswith("band_")]
    for d in range(400, 420):
        feed(usage("initech", at(d, 12), "u1"))  # usage tracking starts on day 400, 12:00
    after = feed.evaluate("acme", at(410, 12))
    assert after.signals["recency_days"][0] == 10.5  # since the day tracking began, not day 0


def test_usage_arriving_newest_first_moves_the_tracking_start_once_a_day() -> None:
    """Each earlier tracking start re-scores every account that never used the product; usage
    events arriving newest first moved it at every event (quadratic in a busy partition).
    Counted by the day, it moves once per day however the events arrive."""
    feed = Feed()
    for n in range(20):
        feed(started(f"never-{n}", at(0), "100"))
    starts = set()
    for hour in range(47, -1, -1):  # days 3 and 2, newest first, within the allowed lateness
        feed(usage("initech", at(2 + hour // 24, hour % 24), "u1"))
        starts.add(feed.engine.usage_since)
    assert starts == {ms(at(3)), ms(at(2))}


def test_usage_drop_waits_until_usage_spans_the_whole_trend_window() -> None:
    feed = Feed(USAGE_DROP_ON)
    for d in range(7):
        feed(usage("acme", at(d, 10), "u1", "reports", 10))  # a busy first week
    for d in range(7, 31):
        feed(usage("acme", at(d, 10), "u1", "reports", 1))  # then steady, light use
    # days 7..13 hold 7 against a "weekly baseline" of 70/4 from the busy week: a drop of 60%,
    # but the 28 days before the last 7 were not all observed (usage began on day 0)
    assert feed.facts("acme", at(14)).usage_trend <= -0.5
    assert feed.raised("usage_drop") == []


# -- subscription events -----------------------------------------------------------------------


def test_scheduled_cancellation_alert() -> None:
    feed = Feed()
    feed(started("acme", at(0), "100"), canceled("acme", at(10, 15), effective_at="2024-02-15T00:00:00Z"))
    [alert] = feed.raised("scheduled_cancellation")
    assert alert["severity"] == "critical"
    assert alert["raised_at"] == stamp(at(10, 15))
    assert alert["mrr"] == "100.00"
    assert alert["reasons"][0]["message"] == "cancellation scheduled for 2024-02-15"


def test_immediate_cancellation_is_not_a_scheduled_one() -> None:
    feed = Feed()
    feed(started("acme", at(0), "100"), canceled("acme", at(10)))
    feed(started("globex", at(0), "100"), canceled("globex", at(11), effective_at=at(5)))  # backdated
    assert feed.raised("scheduled_cancellation") == []


def test_payment_failure_severity_by_attempt_and_cooldown() -> None:
    feed = Feed()
    feed(started("acme", at(0), "100"))
    feed(payment_failed("acme", at(5), 1))  # warning
    feed(payment_failed("acme", at(6), 1))  # same level inside 3 days: held back
    feed(payment_failed("acme", at(7), 2))  # higher attempt: raised
    feed(payment_failed("acme", at(7, 12), 3))  # third attempt: critical
    feed(payment_failed("acme", at(20), 1))  # after the cooldown: raised again
    failures = [(a["raised_at"], a["severity"]) for a in feed.raised("payment_failed")]
    assert failures == [
        (stamp(at(5)), "warning"),
        (stamp(at(7)), "warning"),
        (stamp(at(7, 12)), "critical"),
        (stamp(at(20)), "warning"),
    ]


def test_mrr_contraction_alert() -> None:
    feed = Feed()
    feed(started("acme", at(0), "100"), started("acme", at(0), "100", sub="s2"))
    feed(changed("acme", at(5), "150"))  # expansion: nothing
    assert feed.raised("mrr_contraction") == []
    feed(changed("acme", at(6), "50"))  # 250 -> 150
    feed(canceled("acme", at(7), sub="s2"))  # 150 -> 50
    contractions = feed.raised("mrr_contraction")
    assert [a["reasons"][0]["value"] for a in contractions] == [-0.4, pytest.approx(-2 / 3, abs=1e-4)]
    assert {a["severity"] for a in contractions} == {"warning"}
    feed(canceled("acme", at(8)))  # 50 -> 0 is churn, not contraction
    assert len(feed.raised("mrr_contraction")) == 2


def test_a_contraction_too_small_to_show_is_published_as_zero_not_minus_zero() -> None:
    feed = Feed()
    feed(started("acme", at(0), "1000000000"), changed("acme", at(5), "999999999.999999"))
    value = feed.raised("mrr_contraction")[0]["reasons"][0]["value"]
    assert value == 0 and math.copysign(1, value) == 1  # orjson would write "-0.0"


# -- renewal ---------------------------------------------------------------------------------------


NO_ADOPTION = ScoreConfig(weights=ComponentWeights(adoption=0, support=0.2, sentiment=0.2, financial=0.25))


def renewal_in_100_days(config: ScoreConfig, nps_score: int) -> Feed:
    feed = Feed(config)
    feed(started("acme", at(0), "100", term_end=at(100)), nps("acme", at(1), nps_score))
    for d in range(2, 46):
        feed(usage("initech", at(d, 12), "u1"))
    return feed


def test_renewal_within_60_days_while_not_green() -> None:
    # financial ~98 (w 0.25), sentiment 0 (w 0.2) -> ~55: yellow
    feed = renewal_in_100_days(NO_ADOPTION, 0)
    [alert] = feed.raised("renewal_at_risk", "acme")
    assert alert["raised_at"] == stamp(at(40))  # 60 days before term_end
    assert (alert["band"], alert["severity"]) == ("yellow", "warning")


def test_renewal_at_risk_is_critical_when_red() -> None:
    feed = renewal_in_100_days(ScoreConfig(), 0)  # never used for 40 days: adoption 0 too
    [alert] = feed.raised("renewal_at_risk", "acme")
    assert (alert["band"], alert["severity"]) == ("red", "critical")


def test_a_month_to_month_account_gets_no_renewal_alert_at_its_monthly_renewals() -> None:
    """Its term (a month) is shorter than the alert's 60 days, so it is always within them: an
    alert at each month's renewal of every account not green would say nothing new. Neither at a
    renewal event nor at the midnight its term ends before the renewal arrives."""
    feed = Feed(NO_ADOPTION)
    feed(started("acme", at(0), "100", term_end=at(30)), nps("acme", at(1), 0))
    for month in range(1, 4):
        feed(usage("initech", at(30 * month), "u1"))  # the tick at the term end, no renewal yet
        feed(renewed("acme", at(30 * month, 2), term_end=at(30 * (month + 1))))
        feed(usage("initech", at(30 * month + 10, 12), "u1"))
    evaluation = feed.evaluate("acme", at(100))
    assert evaluation.band != "green" and evaluation.facts.renewal_term_days == 30
    assert evaluation.facts.days_to_renewal is not None and evaluation.facts.days_to_renewal <= 60
    assert feed.raised("renewal_at_risk") == []


def test_a_term_longer_than_the_alert_window_gets_the_renewal_alert_after_renewals_too() -> None:
    feed = Feed(NO_ADOPTION)
    feed(started("acme", at(0), "100", term_end=at(30)), nps("acme", at(1), 0))
    feed(renewed("acme", at(30), term_end=at(130)))  # a 100-day term from the first one's end
    for d in range(31, 95):
        feed(usage("initech", at(d, 12), "u1"))
    first = feed.raised("renewal_at_risk", "acme")[0]  # (and again when it turns red)
    assert first["raised_at"] == stamp(at(70))  # 60 days before its end
    assert feed.evaluate("acme", at(90)).facts.renewal_term_days == 100


def test_a_renewal_alert_after_an_unrenewed_term_ended_says_so() -> None:
    """It said "renewal in 0 days", with no date, for as long as the renewal did not come."""
    feed = Feed(NO_ADOPTION)
    feed(started("acme", at(0), "100", term_end=at(100)), nps("acme", at(1), 10, "r1"))
    feed(usage("initech", at(105)))  # the term ended at day 100, no renewal came
    assert feed.raised("renewal_at_risk") == []  # green so far
    feed(nps("acme", at(110), 0, "r2"), nps("acme", at(110, 1), 0, "r3"))
    [alert] = feed.raised("renewal_at_risk", "acme")
    assert alert["band"] != "green"
    assert (
        alert["reasons"][0]["message"] == f"term ended on 2024-04-10, not renewed yet, while {alert['band']}"
    )


def test_no_renewal_alert_while_green() -> None:
    feed = renewal_in_100_days(NO_ADOPTION, 10)
    assert feed.evaluate("acme", at(45)).band == "green"
    assert feed.raised("renewal_at_risk") == []


# -- support ---------------------------------------------------------------------------------------


def test_urgent_ticket_open_over_72_hours_is_a_critical_backlog() -> None:
    feed = Feed()
    feed(opened("acme", at(0, 9), "t1", "urgent"), opened("globex", at(0, 9), "t1", "urgent"))
    feed(resolved("globex", at(2), "t1", 2))
    for d in range(1, 6):
        feed(usage("initech", at(d, 12), "u1"))
    [backlog] = feed.raised("support_backlog")
    assert backlog["account_id"] == "acme"
    assert backlog["raised_at"] == stamp(at(4))  # first tick more than 72 h after 09:00 on day 0
    assert backlog["severity"] == "critical"
    assert backlog["reasons"][0]["message"] == "1 urgent ticket open for over 3 days"


def test_three_high_priority_tickets_open_is_a_backlog_warning() -> None:
    feed = Feed()
    feed(opened("acme", at(0, 9), "t1", "high"), opened("acme", at(0, 10), "t2", "urgent"))
    assert feed.raised("support_backlog") == []
    feed(opened("acme", at(0, 11), "t3", "high"))
    [backlog] = feed.raised("support_backlog")
    assert (backlog["severity"], backlog["raised_at"]) == ("warning", stamp(at(0, 11)))
    assert backlog["reasons"][0]["message"] == "3 high/urgent tickets open"


# -- survey answers ------------------------------------------------------------------------------


def test_nps_detractor_answer_alert() -> None:
    feed = Feed()
    feed(nps("acme", at(1), 7, "r1"), nps("acme", at(2), 6, "r2"), nps("acme", at(2, 1), 0, "r3"))
    detractors = feed.raised("nps_detractor")
    assert [a["reasons"][0]["message"] for a in detractors] == ["NPS detractor: 6", "NPS detractor: 0"]
    assert {a["severity"] for a in detractors} == {"warning"}
    assert len({a["alert_id"] for a in detractors}) == 2  # no cooldown: one alert per answer


def test_csat_of_2_or_less_alert() -> None:
    feed = Feed()
    feed(csat("acme", at(1), 3), csat("acme", at(2), 2), csat("acme", at(3), 1))
    assert [a["reasons"][0]["value"] for a in feed.raised("csat_low")] == [2, 1]


# -- determinism -----------------------------------------------------------------------------------


def story() -> list:
    events = [
        started("acme", at(0), "100", term_end=at(80)),
        usage("acme", at(0, 10), "u1"),
        opened("acme", at(1), "t1", "urgent"),
        nps("acme", at(2), 3),
        csat("acme", at(3), 1),
        payment_failed("acme", at(4), 1),
        changed("acme", at(5), "60"),
        canceled("acme", at(6), effective_at=at(70)),
        started("globex", at(0), "500"),
    ]
    events += [usage("initech", at(d, 12), "u1") for d in range(1, 60)]
    return events


def test_same_input_gives_the_same_alerts_and_ids() -> None:
    events = story()
    first, second = Feed(), Feed()
    first(*events)
    second(*events)
    assert first.alerts == second.alerts
    assert len(first.alerts) >= 8
    assert len({a["alert_id"] for a in first.alerts}) == len(first.alerts)
    assert all(re.fullmatch(r"[0-9a-f]{20}", a["alert_id"]) for a in first.alerts)


def test_alert_id_depends_on_account_rule_and_key() -> None:
    assert alert_id("acme", "silence", "k") == alert_id("acme", "silence", "k")
    ids = {
        alert_id("acme", "silence", "k"),
        alert_id("globex", "silence", "k"),
        alert_id("acme", "usage_drop", "k"),
    }
    assert len(ids | {alert_id("acme", "silence", "k2")}) == 4


def test_disabled_rule_raises_nothing() -> None:
    config = ScoreConfig.model_validate({"alerts": {"nps_detractor": {"enabled": False}}})
    feed = Feed(config)
    feed(nps("acme", at(1), 0))
    assert feed.raised("nps_detractor") == []


def test_a_pending_band_change_makes_an_idle_account_due_when_it_has_held_long_enough() -> None:
    """An idle account is re-scored weekly; a pending band change is re-scored when it falls due
    (`band_confirm_due`), so its alert does not wait for the next weekly re-scoring."""
    feed = Feed()
    feed(nps("acme", at(0, 9), 10))
    feed(nps("other", at(60, 9), 10))  # acme idle for 60 days: weekly re-scoring only
    engine = feed.engine
    acme = engine.accounts["acme"]
    since = acme.now + 1  # as if its last scoring had found a band change
    acme.alerts.pending = (1, since)
    due = engine._next_due(acme)
    assert due is not None and since + 2 * DAY <= due < since + 3 * DAY
    acme.alerts.pending = None
    assert engine._next_due(acme) != due


def test_alert_messages_say_one_day_in_the_singular_and_a_short_wait_in_hours() -> None:
    config = ScoreConfig(
        curves=LINEAR_NPS.curves, alerts=Rules(score_drop_window_days=1, support_urgent_open_hours=24)
    )
    feed = Feed(config)
    respondents(feed, at(0, 9), dict.fromkeys(range(10), 10))  # 100
    respondents(feed, at(0, 12), {0: 8, 1: 8, 2: 8})  # 85: down 15 within the day
    [drop] = feed.raised("score_drop")
    assert drop["reasons"][0]["message"] == "score fell 15 points in 1 day (100 -> 85)"
    feed(opened("globex", at(1, 9), "t1", "urgent"))
    for d in range(2, 4):
        feed(usage("initech", at(d, 12), "u1"))
    [backlog] = feed.raised("support_backlog")
    assert backlog["reasons"][0]["message"] == "1 urgent ticket open for over 24 h"
