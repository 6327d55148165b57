"""Portfolio sums: one account's pair terms, partitions adding up, late changes replacing terms."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from state.histories import CONFIG, histories

from streamer.contract.events import Event
from streamer.core.clock import DAY, month_start, parse_month
from streamer.core.engine import PartitionEngine
from streamer.core.portfolio import PAIR_FIELDS, PeriodAggregates, PeriodSums, contribution, merge, pair_terms
from streamer.core.revenue import Revenue

from .events import at, canceled, changed, started, usage
from .harness import months, run_offline


def terms(v1: int, v2: int) -> dict[str, int] | None:
    result = pair_terms(v1, v2)
    return None if result is None else dict(zip(PAIR_FIELDS, result, strict=True))


def test_pair_terms_of_a_retained_expanding_account() -> None:
    assert terms(100, 150) == {
        "start_accounts": 1,
        "end_accounts": 1,
        "new_accounts": 0,
        "churned_accounts": 0,
        "start_mrr": 100,
        "end_mrr": 150,
        "retained_mrr": 150,
        "gross_retained_mrr": 100,
        "churned_mrr": 0,
    }


def test_pair_terms_of_a_contracting_account() -> None:
    result = terms(100, 60)
    assert result is not None
    assert (result["retained_mrr"], result["gross_retained_mrr"], result["churned_mrr"]) == (60, 60, 40)


def test_pair_terms_of_a_churned_account() -> None:
    result = terms(100, 0)
    assert result is not None
    assert (result["start_accounts"], result["end_accounts"], result["churned_accounts"]) == (1, 0, 1)
    assert (result["retained_mrr"], result["churned_mrr"]) == (0, 100)


def test_pair_terms_of_a_new_account() -> None:
    result = terms(0, 50)
    assert result is not None
    assert (result["start_accounts"], result["end_accounts"], result["new_accounts"]) == (0, 1, 1)
    assert result["start_mrr"] == 0 and result["end_mrr"] == 50


def test_pair_terms_of_a_never_paying_account() -> None:
    assert pair_terms(0, 0) is None


def test_contribution_holds_month_start_mrr_and_monthly_movements() -> None:
    revenue = Revenue()
    revenue.set_state(
        "s1",
        month_start(parse_month("2024-01")) + 5,
        "e1",
        100,
        "p",
        None,
        None,
        started=True,
        max_points=400,
        max_steps=2000,
        span=30 * DAY,
    )
    revenue.set_state(
        "s1",
        month_start(parse_month("2024-02")) + 5,
        "e2",
        150,
        "p",
        None,
        None,
        started=False,
        max_points=400,
        max_steps=2000,
        span=30 * DAY,
    )
    jan = parse_month("2024-01")
    share = contribution(revenue, jan - 1, jan + 3)
    assert [share.value(m) for m in range(jan - 1, jan + 4)] == [0, 0, 100, 150, 150]
    assert share.movements == {jan: (100, 0, 0, 0, 0), jan + 1: (0, 50, 0, 0, 0)}


def test_merge_adds_partitions() -> None:
    events = [
        started("acme", "2024-01-05T09:00:00Z", "100"),
        started("globex", "2024-01-10T09:00:00Z", "200"),
        started("initech", "2024-01-15T09:00:00Z", "300"),
        changed("acme", "2024-02-10T09:00:00Z", "150"),
        canceled("initech", "2024-02-20T09:00:00Z"),
        usage("globex", "2024-03-02T09:00:00Z"),
    ]
    one = months(run_offline(events, partitions=1))
    for partitions in (2, 3, 8):
        assert months(run_offline(events, partitions=partitions)) == one
    assert one["2024-02"]["nrr"] == 0.5833  # (150 + 200 + 0) / 600


def test_merge_of_nothing_is_empty() -> None:
    assert merge([]) == PeriodSums()
    assert merge([PeriodSums()]) == PeriodSums()


def test_late_change_replaces_the_accounts_terms() -> None:
    events = [
        started("acme", "2024-01-25T09:00:00Z", "100"),
        usage("acme", "2024-02-03T09:00:00Z"),
        changed("acme", "2024-01-30T09:00:00Z", "300"),  # 4 days late, back in January
        usage("acme", "2024-03-02T09:00:00Z"),
    ]
    by_month = months(run_offline(events))
    assert by_month["2024-01"]["end_mrr"] == "300.00"
    assert by_month["2024-01"]["movements"]["new"] == "100.00"
    assert by_month["2024-01"]["movements"]["expansion"] == "200.00"
    assert by_month["2024-02"]["start_mrr"] == "300.00"


def test_scheduled_cancellation_lands_in_its_month() -> None:
    events = [
        started("acme", "2024-01-05T09:00:00Z", "100"),
        started("globex", "2024-01-05T09:00:00Z", "100"),
        canceled("acme", "2024-01-20T09:00:00Z", effective_at="2024-03-15T12:00:00Z"),
        usage("globex", "2024-04-02T09:00:00Z"),
    ]
    by_month = months(run_offline(events))
    assert by_month["2024-02"]["churned_accounts"] == 0
    assert by_month["2024-03"]["churned_accounts"] == 1
    assert by_month["2024-03"]["movements"]["churn"] == "100.00"
    assert by_month["2024-04"]["start_accounts"] == 1


@pytest.mark.parametrize("partitions", [1, 4])
def test_current_totals(partitions: int) -> None:
    events = [
        started("acme", "2024-01-05T09:00:00Z", "100"),
        started("globex", "2024-01-05T09:00:00Z", "50", currency="EUR"),
        started("initech", "2024-01-05T09:00:00Z", "10"),
        canceled("initech", "2024-01-06T09:00:00Z"),
    ]
    current = run_offline(events, partitions=partitions).portfolio()["current"]
    assert (current["accounts"], current["paying_accounts"]) == (3, 2)
    assert (current["mrr"], current["arr"], current["arpa"]) == ("154.00", "1848.00", "77.00")
    assert sum(current["accounts_by_band"].values()) == 2  # a churned account is in no band
    assert current["accounts_by_stage"]["churned"] == 1


def test_history_window_is_bounded() -> None:
    from streamer.core.config import ScoreConfig, Time

    config = ScoreConfig(time=Time(portfolio_history_months=6))
    events = [started("acme", at(0), "100")] + [usage("acme", at(d)) for d in range(0, 400, 5)]
    run = run_offline(events, config)
    sums = run.engines[0].periods.sums
    assert sums.hi - sums.lo <= 6
    assert len(sums.points) <= 7
    assert len(run.portfolio()["months"]) <= 6


def test_lagging_partition_still_counts_its_scheduled_cancellation() -> None:
    events = [  # in event-time order, so nothing is too late for a single partition either
        started("acme", "2024-01-05T09:00:00Z", "100"),  # partition 0 of 2
        started("globex", "2024-01-05T10:00:00Z", "100"),  # partition 1 of 2
        canceled("acme", "2024-01-20T09:00:00Z", effective_at="2024-02-15T00:00:00Z"),
        usage("globex", "2024-03-02T09:00:00Z"),
    ]
    one = months(run_offline(events, partitions=1))
    assert one["2024-02"]["churned_accounts"] == 1  # a single partition gets it right
    two = months(run_offline(events, partitions=2))
    assert two["2024-02"]["churned_accounts"] == 1
    assert two == one


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
def test_adding_all_accounts_at_once_gives_the_sums_of_updating_them_one_by_one(history: list[Event]) -> None:
    """Recovery adds a partition's accounts in bulk (identical contributions once, with their
    count); the sums must be those of the account-by-account path."""
    engine = PartitionEngine(CONFIG, {})
    for event in history:
        engine.process(event)
    months = CONFIG.time.portfolio_history_months
    one_by_one, at_once = PeriodAggregates(months), PeriodAggregates(months)
    for aggregates in (one_by_one, at_once):
        aggregates.advance(engine.clock.stream_time, lambda aid: engine.accounts[aid].revenue)
    for account_id in sorted(engine.accounts):
        one_by_one.update(account_id, engine.accounts[account_id].revenue)
    at_once.add_all((aid, engine.accounts[aid].revenue) for aid in sorted(engine.accounts))
    assert at_once.sums == one_by_one.sums
    assert at_once.scheduled == one_by_one.scheduled
    assert at_once.contributions == one_by_one.contributions


def test_a_churned_account_stored_with_its_band_counted_is_in_no_band_once_recovered() -> None:
    """Accounts stored before churned ones had no band (a dormant churned account is never
    scored again) are counted as they are now when a partition is recovered."""
    from streamer.core.config import ScoreConfig
    from streamer.core.totals import _BAND_INDEX, report

    feed = [started("acme", at(0), "100"), started("initech", at(0), "10"), canceled("initech", at(3))]
    engine = PartitionEngine(ScoreConfig(), {})
    for event in feed:
        engine.process(event)
    stored = engine.accounts["initech"]
    assert not any(stored.terms[index] for index in _BAND_INDEX.values())
    band = _BAND_INDEX[stored.band] if stored.band else 0
    stored.terms = tuple(1 if index == band else term for index, term in enumerate(stored.terms))  # as before
    recovered = PartitionEngine(ScoreConfig(), dict(engine.accounts), engine.clock)
    current = report(recovered.totals.sums, "USD")
    assert current["accounts_by_band"] == report(engine.totals.sums, "USD")["accounts_by_band"]
    assert sum(current["accounts_by_band"].values()) == 1 and current["accounts_by_stage"]["churned"] == 1
