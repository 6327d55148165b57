"""Period metrics of small portfolios, computed by hand in the comments."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streamer.core.clock import parse_month
from streamer.core.config import Portfolio, ScoreConfig
from streamer.core.periods import period_metrics, trailing_logo_churn
from streamer.core.portfolio import PeriodSums, merge

from .events import canceled, changed, started, usage
from .harness import months, run_offline

# Four accounts; February is the month where everything happens.
#   acme      started Jan 5 at 100, changed Feb 10 to 150   (expansion 50)
#   globex    started Jan 10 at 200, changed Feb 15 to 120  (contraction 80)
#   initech   started Jan 15 at 300, canceled Feb 20        (churn 300)
#   umbrella  started Feb 5 at 50                           (new 50)
# A usage event on Apr 2 moves stream time into April (months Jan..Apr are reported).
PORTFOLIO = [
    started("acme", "2024-01-05T09:00:00Z", "100"),
    started("globex", "2024-01-10T09:00:00Z", "200"),
    started("initech", "2024-01-15T09:00:00Z", "300"),
    started("umbrella", "2024-02-05T09:00:00Z", "50"),
    changed("acme", "2024-02-10T09:00:00Z", "150"),
    changed("globex", "2024-02-15T09:00:00Z", "120"),
    canceled("initech", "2024-02-20T09:00:00Z"),
    usage("umbrella", "2024-04-02T09:00:00Z"),
]


@pytest.fixture(scope="module")
def portfolio() -> dict:
    return months(run_offline(PORTFOLIO))


def test_reported_months_run_from_the_first_event_to_the_current_month(portfolio: dict) -> None:
    assert list(portfolio) == ["2024-01", "2024-02", "2024-03", "2024-04"]


def test_first_month_has_no_start_accounts(portfolio: dict) -> None:
    january = portfolio["2024-01"]
    # nobody paid at Jan 1: every rate over S is undefined
    assert (january["start_accounts"], january["end_accounts"], january["new_accounts"]) == (0, 3, 3)
    assert (january["start_mrr"], january["end_mrr"]) == ("0.00", "600.00")
    for rate in ("nrr", "grr", "logo_churn_rate", "retention_rate", "mrr_churn_rate", "expansion_rate"):
        assert january[rate] is None
    assert january["movements"]["new"] == "600.00"
    assert january["net_new_mrr"] == "600.00"
    assert january["quick_ratio"] is None  # nothing lost: undefined
    assert january["clv"] is None  # no churn yet


def test_february_by_hand(portfolio: dict) -> None:
    february = portfolio["2024-02"]
    # S = {acme 100, globex 200, initech 300} = 600 at Feb 1
    # E = {acme 150, globex 120, umbrella 50} = 320 at Mar 1; N = {umbrella}
    assert (february["start_accounts"], february["end_accounts"]) == (3, 3)
    assert (february["new_accounts"], february["churned_accounts"]) == (1, 1)
    assert (february["start_mrr"], february["end_mrr"]) == ("600.00", "320.00")
    assert february["nrr"] == 0.45  # (150 + 120 + 0) / 600
    assert february["grr"] == 0.3667  # (min(100,150) + min(200,120) + min(300,0)) / 600 = 220 / 600
    assert february["logo_churn_rate"] == 0.3333  # 1 / 3
    assert february["retention_rate"] == 0.6667  # (|E| 3 - |N| 1) / |S| 3
    assert february["mrr_churn_rate"] == 0.6333  # (300 + (200 - 120)) / 600
    assert february["movements"] == {
        "new": "50.00",
        "expansion": "50.00",
        "contraction": "80.00",
        "churn": "300.00",
        "reactivation": "0.00",
    }
    assert february["net_new_mrr"] == "-280.00"  # 50 + 50 - 80 - 300
    assert february["expansion_rate"] == 0.0833  # 50 / 600
    assert february["quick_ratio"] == 0.2632  # (50 + 50) / (80 + 300)
    assert february["arpa"] == "106.67"  # 320 / 3


def test_quiet_month_keeps_everything(portfolio: dict) -> None:
    march = portfolio["2024-03"]
    assert (march["start_mrr"], march["end_mrr"]) == ("320.00", "320.00")
    assert (march["nrr"], march["grr"], march["logo_churn_rate"], march["retention_rate"]) == (1, 1, 0, 1)
    assert march["mrr_churn_rate"] == 0
    assert set(march["movements"].values()) == {"0.00"}
    assert march["quick_ratio"] is None


def sums_of(events, config=None):
    run = run_offline(events, config)
    return merge(engine.periods.sums for engine in run.engines)


def test_multi_month_period_between_first_of_month_dates() -> None:
    metrics = period_metrics(sums_of(PORTFOLIO), parse_month("2024-02"), parse_month("2024-04"))
    # [Feb 1, Apr 1): same S and E as February, movements of February and March
    assert (metrics["nrr"], metrics["grr"], metrics["logo_churn_rate"]) == (0.45, 0.3667, 0.3333)
    assert metrics["retention_rate"] == 0.6667
    assert metrics["net_new_mrr"] == "-280.00"
    whole = period_metrics(sums_of(PORTFOLIO), parse_month("2024-01"), parse_month("2024-04"))
    assert (whole["start_accounts"], whole["end_accounts"], whole["new_accounts"]) == (0, 3, 3)
    assert whole["movements"]["new"] == "650.00"
    assert whole["movements"]["churn"] == "300.00"


def test_customer_retention_cost_per_retained_account() -> None:
    config = ScoreConfig(portfolio=Portfolio(cs_cost_per_month=Decimal("900")))
    run = run_offline(PORTFOLIO, config)
    by_month = months(run)
    assert by_month["2024-02"]["crc"] == "450.00"  # 900 / (3 start - 1 churned)
    assert by_month["2024-01"]["crc"] is None  # nobody retained
    sums = merge(engine.periods.sums for engine in run.engines)
    two = period_metrics(sums, parse_month("2024-02"), parse_month("2024-04"), cs_cost_per_month=Decimal(900))
    assert two["crc"] == "900.00"  # 2 months x 900 / 2 retained


# Four accounts at 100 from January; one cancels in February: trailing churn is exactly 1/4.
EVEN = [started(name, "2024-01-10T09:00:00Z", "100") for name in ("a1", "a2", "a3", "a4")] + [
    canceled("a4", "2024-02-10T09:00:00Z"),
    usage("a1", "2024-03-02T09:00:00Z"),
]


def test_clv_is_arpa_over_trailing_three_month_logo_churn() -> None:
    february = months(run_offline(EVEN))["2024-02"]
    # ARPA = 300 / 3 = 100; trailing logo churn over Dec..Feb = (0 + 0 + 1) / (0 + 0 + 4) = 0.25
    assert february["arpa"] == "100.00"
    assert february["clv"] == "400.00"


def test_clv_uses_the_configured_gross_margin() -> None:
    config = ScoreConfig(portfolio=Portfolio(gross_margin=0.8))
    assert months(run_offline(EVEN, config))["2024-02"]["clv"] == "320.00"  # 100 x 0.8 / 0.25


def test_clv_pools_churn_over_the_trailing_three_months() -> None:
    sums = sums_of(EVEN)
    march = months(run_offline(EVEN))["2024-03"]
    assert march["logo_churn_rate"] == 0
    # Jan: 0 of 0, Feb: 1 of 4, Mar: 0 of 3 -> 1 / 7 (not the mean of the monthly rates)
    assert trailing_logo_churn(sums, parse_month("2024-03")) == 1 / 7
    assert march["clv"] is not None


# -- known defects -----------------------------------------------------------------------------


def test_clv_uses_the_exact_churn_rate(portfolio: dict) -> None:
    assert portfolio["2024-02"]["clv"] == "320.00"  # 106.666667 x 3
    assert portfolio["2024-03"]["clv"] == "640.00"  # churn (0 + 1 + 0) / (0 + 3 + 3) = 1/6
    assert months(run_offline(EVEN))["2024-03"]["clv"] == "700.00"  # 100 / (1/7), got 699.79


def test_cancellation_scheduled_for_the_first_of_next_month_is_that_months_churn() -> None:
    by_month = months(
        run_offline(
            [
                started("acme", "2024-01-10T00:00:00Z", "100"),
                canceled("acme", "2024-02-10T00:00:00Z", effective_at="2024-03-01T00:00:00Z"),
                usage("acme", "2024-03-05T00:00:00Z"),
            ]
        )
    )
    assert by_month["2024-02"]["churned_accounts"] == 1  # MRR 0 at Mar 1: right
    assert by_month["2024-03"]["movements"]["churn"] == "100.00"


def test_month_of_an_out_of_order_first_event_is_reported() -> None:
    by_month = months(
        run_offline(
            [
                usage("acme", "2024-02-02T00:00:00Z"),
                started("acme", "2024-01-30T00:00:00Z", "100"),  # 3 days late, in January
            ]
        )
    )
    assert list(by_month) == ["2024-01", "2024-02"]
    assert by_month["2024-01"]["movements"]["new"] == "100.00"


def test_renewal_rate_is_reported() -> None:
    by_month = months(
        run_offline(
            [
                started("acme", "2024-01-05T00:00:00Z", "100", term_end="2024-02-10T00:00:00Z"),
                started("globex", "2024-01-05T00:00:00Z", "100", term_end="2024-02-12T00:00:00Z"),
                canceled("globex", "2024-02-12T00:00:00Z"),
                usage("acme", "2024-03-02T00:00:00Z"),
            ]
        )
    )
    assert by_month["2024-02"]["renewal_rate"] == 0.5


def test_clv_defined_for_a_tiny_positive_churn() -> None:
    march = parse_month("2024-03")
    sums = PeriodSums(hi=march + 1, lo=march + 1 - 36, first_month=march)
    # 30,000 accounts at 100 each, one of them churns: ARPA 100, churn 1 / 30,000
    start_mrr = 30_000 * 100_000_000
    sums.pairs[(march, march + 1)] = [
        30_000,
        29_999,
        0,
        1,
        start_mrr,
        start_mrr - 100_000_000,
        start_mrr - 100_000_000,
        start_mrr - 100_000_000,
        100_000_000,
    ]
    metrics = period_metrics(sums, march, march + 1)
    assert metrics["arpa"] == "100.00"
    assert metrics["clv"] == "3000000.00"


def test_subscription_starting_at_a_month_start_counts_from_that_instant() -> None:
    by_month = months(
        run_offline(
            [
                usage("acme", "2024-01-20T00:00:00Z"),  # a trial user in January
                started("acme", "2024-02-01T00:00:00Z", "100"),
                canceled("acme", "2024-03-01T00:00:00Z"),  # effective at Mar 1 00:00: not counted then
                usage("acme", "2024-03-02T00:00:00Z"),
            ]
        )
    )
    # MRR at Feb 1 00:00 is 100: acme ends January paying (new in that period) ...
    assert (by_month["2024-01"]["end_accounts"], by_month["2024-01"]["new_accounts"]) == (1, 1)
    # ... while the movement itself happens on Feb 1, in February
    assert by_month["2024-01"]["movements"]["new"] == "0.00"
    assert by_month["2024-02"]["movements"]["new"] == "100.00"
    # MRR at Mar 1 00:00 is 0: February starts with acme and ends without it
    assert (by_month["2024-02"]["start_accounts"], by_month["2024-02"]["churned_accounts"]) == (1, 1)
    assert by_month["2024-03"]["movements"]["churn"] == "100.00"


def test_arpa_and_clv_are_exact_past_the_precision_of_a_float() -> None:
    """60 accounts with 21,132,800,000,000,000,000 micro-units a month: ARPA is
    352,213,333,333,333.332992 exactly. Through a float it read .31; the current figures (in
    integers) read .33, so a month and `current` disagreed."""
    end_mrr, accounts = 21_132_799_999_999_999_999_520, 60
    sums = PeriodSums(hi=5, lo=4, first_month=4)
    sums.points[4] = [accounts, end_mrr]
    sums.points[5] = [accounts, end_mrr]
    sums.pairs[(4, 5)] = [accounts, accounts, 0, 0, end_mrr, end_mrr, end_mrr, end_mrr, 0]
    metrics = period_metrics(sums, 4, 5)
    assert metrics["arpa"] == "352213333333333.33"
