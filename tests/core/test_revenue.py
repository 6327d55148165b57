"""Subscriptions, MRR at an instant, daily-netted MRR movements, scheduled cancellations."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from streamer.core.clock import DAY
from streamer.core.config import Currency, ScoreConfig
from streamer.core.engine import ACCEPTED, REJECTED
from streamer.core.revenue import (
    CHURN,
    CONTRACTION,
    EXPANSION,
    MAX_PAYMENT_FAILURES,
    NEW,
    REACTIVATION,
    Revenue,
)

from .events import at, canceled, changed, ms, payment_failed, renewed, started, usage
from .harness import Feed


def day(when) -> int:
    return ms(when) // DAY


SPAN = 30 * DAY  # how far behind the latest version a read may ask (`history_span`)


def set_state(
    revenue: Revenue,
    sub: str,
    at: int,
    event_id: str,
    mrr: int,
    *,
    plan: str = "pro",
    seats: int | None = None,
    term_end: int | None = None,
    started: bool = True,
    max_steps: int = 2000,
) -> None:
    """`Revenue.set_state` with room for 400 steps per subscription."""
    revenue.set_state(
        sub,
        at,
        event_id,
        mrr,
        plan,
        seats,
        term_end,
        started=started,
        max_points=400,
        max_steps=max_steps,
        span=SPAN,
    )


# -- MRR of an account -------------------------------------------------------------------------


def test_snapshot_mrr_and_arr_of_a_yearly_subscription() -> None:
    feed = Feed()
    feed(started("acme", at(9), "1900.00", interval="year"))
    snap = feed.snapshot("acme")
    assert snap["mrr"] == "158.33"  # 1900 / 12 = 158.333333
    assert snap["arr"] == "1900.00"  # 12 x 158.333333 = 1899.999996


def test_weekly_and_multi_month_subscriptions_add_up() -> None:
    feed = Feed()
    feed(
        started("acme", at(9), "120", sub="s1", interval="week"),  # 520.00
        started("acme", at(9, 1), "300", sub="s2", interval="month", interval_count=3),  # 100.00
        started("acme", at(9, 2), "100", sub="s3", currency="EUR"),  # 108.00 at 1.08
    )
    assert feed.mrr_at("acme", at(10)) == 728_000_000
    assert feed.snapshot("acme")["mrr"] == "728.00"


def test_other_currency_converts_with_the_configured_rate() -> None:
    config = ScoreConfig(currency=Currency(reporting="EUR", rates={"USD": Decimal("0.9")}))
    feed = Feed(config)
    feed(
        started("acme", at(9), "100", currency="USD"), started("acme", at(9), "50", sub="s2", currency="EUR")
    )
    snap = feed.snapshot("acme")
    assert snap["currency"] == "EUR"
    assert snap["mrr"] == "140.00"  # 100 USD x 0.9 + 50 EUR


def test_unknown_currency_is_rejected_with_the_reason_and_changes_nothing() -> None:
    feed = Feed()
    feed(started("acme", at(9), "100"))
    before = feed.snapshot("acme")
    [outcome] = feed(started("acme", at(9, 1), "5000", sub="s2", currency="JPY"))
    assert outcome.status == REJECTED
    assert "no exchange rate configured for currency 'JPY'" in outcome.reason
    assert "currency.rates" in outcome.reason
    assert feed.snapshot("acme")["mrr"] == before["mrr"] == "100.00"
    [outcome] = feed(started("globex", at(9, 2), "10", currency="CHF"))
    assert outcome.status == REJECTED
    assert "globex" not in feed.store


def test_changed_event_replaces_the_full_state_of_the_subscription() -> None:
    feed = Feed()
    feed(started("acme", at(9), "100", seats=5), changed("acme", at(20), "1200", interval="year", seats=8))
    assert feed.mrr_at("acme", at(19)) == 100_000_000
    assert feed.mrr_at("acme", at(20)) == 100_000_000  # 1200 a year is the same 100 a month
    assert feed.account("acme").revenue.seats(ms(at(21))) == 8


# -- MRR at a date -----------------------------------------------------------------------------


def test_subscription_starting_at_an_instant_counts_at_that_instant() -> None:
    feed = Feed()
    feed(started("acme", at(31), "100"))  # 2024-02-01T00:00Z
    assert feed.mrr_at("acme", "2024-02-01T00:00:00Z") == 100_000_000
    assert feed.mrr_at("acme", "2024-01-31T23:59:59.999Z") == 0


def test_cancellation_effective_at_an_instant_no_longer_counts_at_it() -> None:
    feed = Feed()
    feed(started("acme", at(9), "100"), canceled("acme", "2024-02-01T00:00:00Z"))
    assert feed.mrr_at("acme", "2024-01-31T23:59:59.999Z") == 100_000_000
    assert feed.mrr_at("acme", "2024-02-01T00:00:00Z") == 0


def test_scheduled_cancellation_keeps_mrr_until_effective_at() -> None:
    feed = Feed()
    feed(
        started("acme", at(9), "100"),
        canceled("acme", at(40), effective_at="2024-03-15T00:00:00Z"),
    )
    assert feed.mrr_at("acme", at(40)) == 100_000_000
    assert feed.mrr_at("acme", "2024-03-14T23:59:59.999Z") == 100_000_000
    assert feed.mrr_at("acme", "2024-03-15T00:00:00Z") == 0
    snap = feed.snapshot("acme")
    assert snap["mrr"] == "100.00"
    assert snap["lifecycle_stage"] != "churned"
    assert snap["metrics"]["scheduled_cancellation_at"] == "2024-03-15T00:00:00Z"
    assert feed.evaluate("acme", "2024-03-16T00:00:00Z").stage == "churned"
    churn = (day("2024-03-15T00:00:00Z"), CHURN, 100_000_000)
    assert feed.account("acme").revenue.movements()[-1] == churn


def test_immediate_cancellation_drops_mrr_at_occurred_at() -> None:
    feed = Feed()
    feed(started("acme", at(9), "100"), canceled("acme", at(20, 15)))
    assert feed.mrr_at("acme", at(20, 14, 59)) == 100_000_000
    assert feed.mrr_at("acme", at(20, 15)) == 0
    assert feed.snapshot("acme")["mrr"] == "0.00"
    assert feed.snapshot("acme")["lifecycle_stage"] == "churned"


def test_out_of_order_change_within_lateness_rewrites_the_timeline() -> None:
    feed = Feed()
    feed(
        started("acme", at(10), "100"),
        usage("acme", at(20)),
        changed("acme", at(15), "200"),  # arrives 5 days late
    )
    assert feed.mrr_at("acme", at(14, 23)) == 100_000_000
    assert feed.mrr_at("acme", at(15)) == 200_000_000
    assert feed.snapshot("acme")["mrr"] == "200.00"
    assert feed.account("acme").revenue.movements() == [
        (day(at(10)), NEW, 100_000_000),
        (day(at(15)), EXPANSION, 100_000_000),
    ]


def test_renewal_moves_term_end_and_a_late_older_renewal_does_not_undo_it() -> None:
    feed = Feed()
    feed(
        started("acme", at(0), "100", term_end="2024-06-30T00:00:00Z"),
        usage("acme", at(160)),
        renewed("acme", at(170), "2024-12-31T00:00:00Z"),
        renewed("acme", at(165), "2024-09-30T00:00:00Z"),  # older writer, arrives late
    )
    facts = feed.facts("acme", at(171))
    assert facts.renewal_at == ms("2024-12-31T00:00:00Z")


# -- daily-netted movements --------------------------------------------------------------------


def test_each_movement_kind_from_a_subscription_history() -> None:
    feed = Feed()
    feed(
        started("acme", at(9, 10), "100"),  # new 100
        changed("acme", at(19), "150"),  # expansion 50
        changed("acme", at(24), "120"),  # contraction 30
        canceled("acme", at(33)),  # churn 120
        started("acme", at(60, 12), "80", sub="s2"),  # reactivation 80
    )
    assert feed.account("acme").revenue.movements() == [
        (day(at(9)), NEW, 100_000_000),
        (day(at(19)), EXPANSION, 50_000_000),
        (day(at(24)), CONTRACTION, 30_000_000),
        (day(at(33)), CHURN, 120_000_000),
        (day(at(60)), REACTIVATION, 80_000_000),
    ]


def test_plan_swap_on_same_day_is_one_expansion() -> None:
    feed = Feed()
    feed(
        started("acme", at(9), "100", plan="pro"),
        canceled("acme", at(35, 10)),
        started("acme", at(35, 10, 5), "150", sub="s2", plan="enterprise"),
    )
    assert feed.account("acme").revenue.movements() == [
        (day(at(9)), NEW, 100_000_000),
        (day(at(35)), EXPANSION, 50_000_000),
    ]
    assert feed.snapshot("acme")["plan"] == "enterprise"


def test_plan_swap_whose_old_plan_ends_at_midnight_is_one_expansion_that_day() -> None:
    """The spec nets a movement per UTC calendar day, and 00:00 is the day it begins: a term that
    ends at midnight and a new plan later that day are one expansion, not a churn the day before
    and a reactivation (which booking a change at 00:00 on the day before, so that every month's
    start MRR plus its net new MRR is its end MRR, made of them)."""
    feed = Feed()
    feed(
        started("acme", at(9), "100", plan="pro"),
        canceled("acme", at(20), effective_at="2024-01-25T00:00:00Z"),
        started("acme", "2024-01-25T09:00:00Z", "150", sub="s2", plan="enterprise"),
    )
    assert feed.account("acme").revenue.movements() == [
        (day(at(9)), NEW, 100_000_000),
        (day("2024-01-25T00:00:00Z"), EXPANSION, 50_000_000),
    ]


def test_start_and_cancel_in_one_day_is_no_movement() -> None:
    feed = Feed()
    feed(started("acme", at(9, 8), "100"), canceled("acme", at(9, 17)))
    assert feed.account("acme").revenue.movements() == []


def test_up_and_back_down_on_one_day_is_no_movement() -> None:
    feed = Feed()
    feed(started("acme", at(1), "100"), changed("acme", at(9, 8), "300"), changed("acme", at(9, 17), "100"))
    assert feed.account("acme").revenue.movements() == [(day(at(1)), NEW, 100_000_000)]


def test_changes_of_two_subscriptions_on_one_day_are_netted() -> None:
    feed = Feed()
    feed(
        started("acme", at(9), "100", sub="s1"),
        started("acme", at(9), "50", sub="s2"),
        changed("acme", at(31, 12), "180", sub="s1"),  # +80
        canceled("acme", at(31, 13), sub="s2"),  # -50
    )
    assert feed.account("acme").revenue.movements() == [
        (day(at(9)), NEW, 150_000_000),
        (day(at(31)), EXPANSION, 30_000_000),
    ]


def test_changes_either_side_of_midnight_are_two_days() -> None:
    feed = Feed()
    feed(
        started("acme", at(1), "100"),
        changed("acme", "2024-01-10T23:59:59.999Z", "200"),
        changed("acme", "2024-01-11T00:00:00Z", "100"),
    )
    assert feed.account("acme").revenue.movements() == [
        (day(at(1)), NEW, 100_000_000),
        (day(at(9)), EXPANSION, 100_000_000),
        (day(at(10)), CONTRACTION, 100_000_000),
    ]


# -- known defects -----------------------------------------------------------------------------


def test_change_occurring_when_a_scheduled_cancellation_takes_effect_wins() -> None:
    feed = Feed()
    outcomes = feed(
        started("acme", at(0), "100", event_id="a-start"),
        canceled("acme", at(40), effective_at="2024-03-01T00:00:00Z", event_id="z-cancel"),
        changed("acme", "2024-03-01T00:00:00Z", "200", event_id="a-change"),
    )
    assert all(outcome.status == ACCEPTED for outcome in outcomes)
    assert feed.mrr_at("acme", "2024-03-01T00:00:00Z") == 200_000_000


def test_very_large_amount_counts_at_its_start_instant() -> None:
    # The largest MRR one subscription may hold (100 billion a month), 64 of them: past 2**62.
    feed = Feed(ScoreConfig.model_validate({"currency": {"rates": {"EUR": "10"}}}))
    feed(*(started("acme", at(9), "10000000000", currency="EUR", sub=f"s{n}") for n in range(64)))
    assert feed.mrr_at("acme", at(9)) == 64 * 10**17 > 2**62
    # one past it is refused (test_a_subscription_past_the_mrr_an_account_record_holds_...)
    [outcome] = feed(started("acme", at(10), "999999999999", currency="EUR", sub="s0"))
    assert outcome.status == REJECTED and feed.mrr_at("acme", at(10)) == 64 * 10**17


def test_active_subscriptions_asked_in_any_order_match_a_fresh_computation() -> None:
    """`active_at` remembers a span of instants; asked around and exactly at every step of two
    overlapping subscriptions, in a scrambled order, it answers as computed from scratch."""
    revenue = Revenue()
    day = 19_000 * DAY
    set_state(revenue, "a", day, "e1", 100, seats=3)
    set_state(revenue, "b", day + 5 * DAY, "e2", 50, plan="team", seats=2)
    revenue.cancel("a", day + 7 * DAY, "e3", day + 10 * DAY, max_points=50, max_steps=2000)
    set_state(revenue, "a", day + 12 * DAY, "e4", 80, seats=3, started=False)
    steps = [day, day + 5 * DAY, day + 10 * DAY, day + 12 * DAY]
    instants = sorted({s + d for s in steps for d in (-1, 0, 1, DAY)}, key=lambda t: (t * 7919) % 1009)
    for ts in instants + instants[::-1]:
        fresh = [sub for sub in revenue.subscriptions.values() if sub.mrr_at(ts) > 0]
        assert revenue.active_at(ts) == fresh, ts
        assert revenue.seats(ts) == (sum(sub.seats or 0 for sub in fresh) if fresh else None)


# -- the short-list scan equals the bisection ----------------------------------------------------


def test_mrr_at_and_before_equal_the_bisection_at_every_instant() -> None:
    """`mrr_at` / `mrr_before` scan short step lists from the end: the same answers as the
    bisection they replace, at every step, between steps and around them, short and long."""
    from bisect import bisect_left, bisect_right
    from random import Random

    from streamer.core.revenue import Subscription

    rng = Random(11)
    for length in (0, 1, 2, 3, 8, 9, 20):
        times = sorted(rng.sample(range(0, 1000, 5), length))
        revenue = Revenue()
        revenue.timeline = [(ts, rng.randrange(0, 5) * 1000) for ts in times]
        sub = Subscription(points=sorted((ts, ts, 1, f"e{ts}", rng.randrange(0, 5)) for ts in times))
        for ts in (-1, 0, 1, 4, 5, 6, *times, *(t - 1 for t in times), *(t + 1 for t in times), 2000):
            keys = [point[0] for point in revenue.timeline]
            right, left = bisect_right(keys, ts), bisect_left(keys, ts)
            assert revenue.mrr_at(ts) == (revenue.timeline[right - 1][1] if right else 0)
            assert revenue.mrr_before(ts) == (revenue.timeline[left - 1][1] if left else 0)
            index = bisect_right([point[0] for point in sub.points], ts)
            assert sub.mrr_at(ts) == (sub.points[index - 1][4] if index else 0)


# -- steps at one instant ------------------------------------------------------------------------


@pytest.mark.parametrize(("first_id", "second_id"), [("e-1", "e-2"), ("z-first", "a-second")])
@pytest.mark.parametrize("in_order", [True, False])
def test_a_subscription_started_and_canceled_in_one_second_has_no_mrr_whatever_the_event_ids(
    first_id: str, second_id: str, in_order: bool
) -> None:
    """A checkout rolled back in the second it began: the cancellation is the last step."""
    events = [
        started("acme", at(0, 10), "100", event_id=first_id),
        canceled("acme", at(0, 10), event_id=second_id),  # effective at once
    ]
    feed = Feed()
    feed(*(events if in_order else events[::-1]))
    assert feed.mrr_at("acme", at(5)) == 0


@pytest.mark.parametrize(("first_id", "second_id"), [("e-1", "e-2"), ("z-first", "a-second")])
@pytest.mark.parametrize("in_order", [True, False])
def test_a_subscription_started_and_changed_in_one_second_ends_as_the_change_says(
    first_id: str, second_id: str, in_order: bool
) -> None:
    """A billing system that creates a subscription and updates its price or plan within the
    second (a coupon, a quantity) sends both at one instant: the change is what holds."""
    events = [
        started("acme", at(0, 10), "100", plan="starter", event_id=first_id),
        changed("acme", at(0, 10), "250", plan="pro", event_id=second_id),
    ]
    feed = Feed()
    feed(*(events if in_order else events[::-1]))
    assert feed.mrr_at("acme", at(5)) == 250 * 1_000_000
    assert feed.evaluate("acme", at(5)).plan == "pro"


# -- bounded per account -------------------------------------------------------------------------


def _timeline_by_definition(revenue: Revenue) -> list[tuple[int, int]]:
    """The account MRR at each step instant as the sum of every subscription's MRR there, kept
    where it changes (what the sweep of `_rebuild_timeline` must equal)."""
    subscriptions = revenue.subscriptions.values()
    timeline, last = [], 0
    for ts in sorted({point[0] for sub in subscriptions for point in sub.points}):
        mrr = sum(sub.mrr_at(ts) for sub in subscriptions)
        if mrr != last:
            timeline.append((ts, mrr))
            last = mrr
    return timeline


def test_the_timeline_sweep_equals_the_sum_of_the_subscriptions_at_every_step() -> None:
    from random import Random

    for seed in range(60):
        rng = Random(seed)
        revenue = Revenue()
        day = 19_000 * DAY
        for n in range(rng.randint(1, 40)):
            sub = f"s{rng.randint(0, 5)}"
            when = day + rng.randint(0, 20) * DAY  # many steps share an instant
            if rng.random() < 0.2:
                effective = when + rng.randint(0, 5) * DAY
                revenue.cancel(sub, when, f"e{n}", effective, max_points=400, max_steps=2000)
            else:
                mrr = rng.choice([0, 50, 100, 100, 250])
                set_state(revenue, sub, when, f"e{n}", mrr)
            assert revenue.timeline == _timeline_by_definition(revenue), (seed, n)


def test_past_max_account_steps_the_oldest_steps_of_the_account_are_forgotten() -> None:
    revenue = Revenue()
    day = 19_000 * DAY
    for n in range(30):
        sub = f"s{n % 3}"
        set_state(revenue, sub, day + n * DAY, f"e{n}", 100 + n, max_steps=12)
    points = sorted(point for sub in revenue.subscriptions.values() for point in sub.points)
    assert len(points) == 12
    assert [point[0] for point in points] == [day + n * DAY for n in range(18, 30)]
    assert revenue.timeline == _timeline_by_definition(revenue)
    assert revenue.mrr_at(day + 29 * DAY) == (127 + 128 + 129)


def test_past_max_account_steps_a_subscription_that_never_changed_keeps_its_price() -> None:
    """An annual subscription's one step is the account's oldest; daily metered changes of
    others pushed it out and its 1,000 a month read 0 (a false contraction alert followed)."""
    revenue = Revenue()
    day = 19_000 * DAY

    def step(sub: str, at: int, event_id: str, mrr: int) -> None:
        set_state(revenue, sub, at, event_id, mrr, max_steps=12)

    step("annual", day, "a", 1000)
    for n in range(30):
        step(f"metered{n % 2}", day + (1 + n) * DAY, f"m{n}", 100 + n % 2)
    assert sum(len(sub.points) for sub in revenue.subscriptions.values()) == 12
    assert [point[4] for point in revenue.subscriptions["annual"].points] == [1000]
    assert revenue.mrr_at(day + 31 * DAY) == 1000 + 100 + 101
    assert revenue.timeline == _timeline_by_definition(revenue)


@pytest.mark.parametrize(
    ("reporting", "rates", "currency", "amount", "interval", "said"),
    [
        # a realistic IDR reporting currency: a billion dollars a week is 69 trillion rupiah a month
        ("IDR", {"USD": "16000"}, "USD", "1000000000", "week", "is 69333333333333.33 IDR a month"),
        # the highest rate and amount the configuration and the contract accept
        ("USD", {"XAU": "1e9"}, "XAU", "999999999999", "month", "is 999999999999000000000.00 USD"),
    ],
)
def test_a_subscription_past_the_mrr_an_account_record_holds_is_dead_lettered(
    reporting: str, rates: dict[str, str], currency: str, amount: str, interval: str, said: str
) -> None:
    """64 subscriptions of an account must stay within the 64 bits its record stores: one past
    100 billion a month was accepted, and the worker could not store the account (again at
    every restart)."""
    config = ScoreConfig(
        currency=Currency(reporting=reporting, rates={k: Decimal(v) for k, v in rates.items()})
    )
    feed = Feed(config)
    [outcome] = feed(started("acme", at(1), amount, currency=currency, interval=interval))
    assert outcome.status == REJECTED, outcome
    assert said in (outcome.reason or "") and "more than the 100000000000.00 one subscription may hold" in (
        outcome.reason or ""
    )
    assert "acme" not in feed.store
    [outcome] = feed(started("acme", at(1), "100000000000", currency=reporting))  # exactly at the ceiling
    assert outcome.status == ACCEPTED


def test_one_subscription_past_max_subscriptions_is_dead_lettered_and_changes_nothing() -> None:
    config = ScoreConfig.model_validate({"limits": {"max_subscriptions": 3}})
    feed = Feed(config)
    for n in range(3):
        [outcome] = feed(started("acme", at(1 + n), sub=f"s{n}"))
        assert outcome.status == ACCEPTED
    before = feed.mrr_at("acme", at(9))
    [outcome] = feed(started("acme", at(5), sub="s3"))
    assert outcome.status == REJECTED and "limits.max_subscriptions" in (outcome.reason or "")
    [outcome] = feed(changed("acme", at(5), "10.00", sub="s4"))
    assert outcome.status == REJECTED
    assert len(feed.account("acme").revenue.subscriptions) == 3 and feed.mrr_at("acme", at(9)) == before
    [outcome] = feed(changed("acme", at(6), "300.00", sub="s1"))  # one it has: accepted
    assert outcome.status == ACCEPTED


def test_made_up_subscription_ids_fill_their_own_cap_and_never_block_a_real_subscription() -> None:
    """Renewals and cancellations may name a subscription before its start arrives, so they are
    kept; an adversarial producer naming made-up ids fills a cap of their own."""
    config = ScoreConfig.model_validate({"limits": {"max_subscriptions": 3}})
    feed = Feed(config)
    made_up = [renewed("acme", at(1), sub="x0", term_end=at(40)), canceled("acme", at(1), sub="x1")]
    made_up.append(renewed("acme", at(1), sub="x2", term_end=at(50)))
    assert [outcome.status for outcome in feed(*made_up)] == [ACCEPTED] * 3
    [outcome] = feed(canceled("acme", at(2), sub="x3"))
    assert outcome.status == REJECTED
    assert "3 subscriptions known only from renewals or cancellations" in (outcome.reason or "")
    assert "'x3', that never started" in (outcome.reason or "")
    for n in range(3):  # the real ones still fit
        [outcome] = feed(started("acme", at(3 + n), sub=f"s{n}"))
        assert outcome.status == ACCEPTED, outcome.reason
    assert feed.mrr_at("acme", at(9)) > 0
    [outcome] = feed(started("acme", at(7), sub="s3"))
    assert outcome.status == REJECTED and "has 3 subscriptions, the most" in (outcome.reason or "")
    assert len(feed.account("acme").revenue.subscriptions) == 6  # at most twice the cap in all


def test_past_max_remembered_ids_the_oldest_are_forgotten_and_the_recent_still_dedupe() -> None:
    config = ScoreConfig.model_validate({"limits": {"max_remembered_ids": 1000}})
    feed = Feed(config)
    events = [usage("acme", at(1, minute=n / 10), event_id=f"u{n}") for n in range(2500)]
    feed(*events)
    seen = feed.account("acme").seen
    assert len(seen) <= 1000
    assert [outcome.status for outcome in feed(events[-1], events[-900])] == ["duplicate", "duplicate"]


def test_payment_failures_remembered_are_bounded_to_the_latest() -> None:
    """A producer retrying a charge without end must not grow the account's record without end."""
    feed = Feed()
    feed(started("acme", at(0), "100"))
    feed(*(payment_failed("acme", at(1, minute=n)) for n in range(MAX_PAYMENT_FAILURES + 50)))
    failures = feed.account("acme").revenue.payment_failures
    assert failures == [ms(at(1, minute=n)) for n in range(50, MAX_PAYMENT_FAILURES + 50)]
    assert feed.facts("acme", at(2)).payment_failures_30d == MAX_PAYMENT_FAILURES


def test_a_cancellation_dated_before_the_start_ends_the_subscription_at_its_start() -> None:
    """ "Signed up by mistake", recorded an hour after the start with the day before as its
    effective date: it was accepted and did nothing, and the subscription paid for good."""
    start = started("acme", "2024-03-10T12:00:00Z", "100")
    cancel = canceled("acme", "2024-03-10T13:00:00Z", effective_at="2024-03-09T00:00:00Z")
    for arrivals in ((start, cancel), (cancel, start)):  # whichever arrives first
        feed = Feed()
        feed(*arrivals)
        for when in ("2024-03-10T12:00:00Z", "2024-03-10T14:00:00Z", "2024-04-15T00:00:00Z"):
            assert feed.mrr_at("acme", when) == 0, (when, arrivals[0].event_type)


def test_a_cancellation_recorded_before_the_start_stays_where_it_is_dated() -> None:
    """Canceled and changed to 10 on 01-11, started at 0 only on 03-24: moved to that start, the
    cancellation let the change pay 10 from January, so the start rewrote months the allowed
    lateness had closed, and a peer reference built before it arrived disagreed with one built
    after (`test_properties`, peers by segment). Hand-computed: it never pays."""
    feed = Feed()
    feed(
        canceled("acme", "2024-01-11T00:00:00Z", event_id="e-1"),
        changed("acme", "2024-01-11T00:00:00Z", "10", event_id="e-2"),
        started("acme", "2024-03-24T00:00:00Z", "0", event_id="e-3"),
    )
    for when in (
        "2024-01-11T00:00:00Z",
        "2024-02-01T00:00:00Z",
        "2024-03-24T00:00:00Z",
        "2024-04-01T00:00:00Z",
    ):
        assert feed.mrr_at("acme", when) == 0, when


def test_a_cancellation_before_two_starts_ends_at_the_earliest_whatever_the_order() -> None:
    """A start at 00:00, a restart at 12:00 and a cancellation dated the day before: clamped to
    the start known when it arrived, it stayed at 12:00 when the 00:00 start came last, and the
    subscription read cancelled where in event-time order the restart wins."""
    early = started("acme", "2026-11-02T00:00:00Z", "250", event_id="e-18")
    restart = started("acme", "2026-11-02T12:00:00Z", "1200", interval="year", event_id="e-6")
    cancel = canceled("acme", "2026-11-02T12:00:00Z", effective_at="2026-11-01T12:00:00Z", event_id="e-17")
    answers = set()
    for arrivals in itertools.permutations((early, restart, cancel)):
        feed = Feed()
        feed(*arrivals)
        answers.add(
            tuple(feed.mrr_at("acme", when) for when in ("2026-11-02T06:00:00Z", "2026-11-03T00:00:00Z"))
        )
    assert answers == {(0, 100 * 10**6)}  # ended at 00:00, restarted at 12:00 for 100 a month


def test_an_account_whose_mrr_could_pass_64_bits_is_refused_the_subscription_that_would() -> None:
    """With limits.max_subscriptions raised (up to 1,000 is allowed), subscriptions each within
    the 100 billion a month one may hold still add up past the 64 bits an account's record
    stores: the one that could take the account past them is refused."""
    config = ScoreConfig.model_validate(
        {"currency": {"rates": {"EUR": "10"}}, "limits": {"max_subscriptions": 1000}}
    )
    feed = Feed(config)
    outcomes = feed(*(started("acme", at(9), "10000000000", currency="EUR", sub=f"s{n}") for n in range(93)))
    assert [outcome.status for outcome in outcomes] == [ACCEPTED] * 92 + [REJECTED]
    assert "could then pay 9300000000000.00 USD a month, more than the 9223372036854.78" in (
        outcomes[-1].reason or ""
    )
    assert feed.mrr_at("acme", at(9)) == 92 * 10**17
    [outcome] = feed(changed("acme", at(10), "1", currency="EUR", sub="s0"))  # less: fine
    assert outcome.status == ACCEPTED


def test_starting_subscriptions_known_only_from_cancellations_counts_against_the_cap() -> None:
    """Cancel three made-up ids, start them, cancel three more, start them...: each start was of
    a known id, so no cap was checked and the account grew without bound (a record past the
    changelog's 8 MiB stopped the worker at every restart)."""
    config = ScoreConfig.model_validate({"limits": {"max_subscriptions": 3}})
    feed = Feed(config)
    statuses = []
    for cycle in range(3):
        ids = [f"c{cycle}-{n}" for n in range(3)]
        statuses += [o.status for o in feed(*(canceled("acme", at(1 + cycle), sub=s) for s in ids))]
        statuses += [o.status for o in feed(*(started("acme", at(1 + cycle), sub=s) for s in ids))]
    assert statuses[:6] == [ACCEPTED] * 6  # the first three fit
    assert statuses[6:9] == [ACCEPTED] * 3  # cancellations of ids never started: their own cap
    assert statuses[9:12] == [REJECTED] * 3  # a fourth started subscription
    subscriptions = feed.account("acme").revenue.subscriptions
    assert sum(1 for sub in subscriptions.values() if sub.plan is not None) == 3


# -- a subscription as it was at an instant --------------------------------------------------------


def _described(order: list[tuple[int, str, str, int, int]]) -> Revenue:
    """Changes of one subscription (event time, id, plan, seats, term end), applied in `order`."""
    revenue = Revenue()
    for when, event_id, plan, seats, term_end in order:
        set_state(
            revenue, "s1", when, event_id, 100, plan=plan, seats=seats, term_end=term_end, started=False
        )
    return revenue


def test_plan_seats_and_term_end_read_as_they_were_at_an_instant_whatever_the_arrival_order() -> None:
    """`state_by` and `term_end_by` answer with the latest change dated at or before the
    instant, at every midnight within the span behind the latest change (a peer reference's
    membership instant is one), and the subscription kept is the same for every arrival order:
    earlier versions past the span are dropped, and all but the last of a day."""
    base = 19_000 * DAY
    changes = [
        (base + hours * 3_600_000, f"e{n:02d}", ("basic", "pro")[n % 2], n + 1, base + (60 + n) * DAY)
        for n, hours in enumerate((0, 5, 30, 30, 24 * 20, 24 * 33 + 1, 24 * 33 + 7, 24 * 40 + 1))
    ]
    latest = max(changes)[0]
    orders = [changes, changes[::-1], changes[3:] + changes[:3], sorted(changes, key=lambda c: c[1][::-1])]
    revenues = [_described(order) for order in orders]
    first = revenues[0].subscriptions["s1"]
    for revenue in revenues[1:]:
        assert revenue.subscriptions["s1"] == first
    for instant in range((latest - SPAN) // DAY * DAY + DAY, latest + DAY, DAY):
        dated = [c for c in changes if c[0] <= instant]
        plan, seats, _ = first.state_by(instant)
        want = max(dated, key=lambda c: (c[0], c[1]))
        assert (plan, seats, first.term_end_by(instant)) == (want[2], want[3], want[4]), instant
    # e03, the latest of those dated 30 days or more before e07 (e00-e03), then e04 and e06, the
    # later of day 33's two
    assert [state[2] for state in first.earlier_states] == ["e03", "e04", "e06"]


def test_a_subscription_described_anew_without_end_keeps_its_latest_few_earlier_versions() -> None:
    """Once a day for 50 days: the latest and the 4 days before it (`MAX_EARLIER`)."""
    changes = [(19_000 * DAY + n * DAY + 1, f"e{n:03d}", "pro", n, 20_000 * DAY + n) for n in range(50)]
    sub = _described(changes).subscriptions["s1"]
    assert [state[2] for state in sub.earlier_states] == [f"e{n:03d}" for n in range(45, 49)]
    assert [term[1] for term in sub.earlier_terms] == [f"e{n:03d}" for n in range(45, 49)]
    assert (sub.seats, sub.term_end) == (49, 20_000 * DAY + 49)
