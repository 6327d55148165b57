"""The view's portfolio answers equal `streamer offline`'s portfolio.json for the same partitions."""

from __future__ import annotations

import pytest
from projection.scored import scored

from streamer.core.clock import parse_month
from streamer.projection.codec import decode_sums, encode_sums
from streamer.projection.redis_reader import PartitionData
from streamer.view import portfolio

META = {"currency": "USD", "gross_margin": "1.0", "cs_cost_per_month": ""}


@pytest.fixture(scope="module")
def parts() -> tuple[list[PartitionData], dict[str, object]]:
    run = scored().run
    expected = run.portfolio()  # also brings every partition to the same newest month
    parts = [
        PartitionData(
            index,
            engine.clock.stream_time,
            decode_sums(encode_sums(engine.periods.sums)),
            list(engine.totals.sums),
        )
        for index, engine in enumerate(run.engines)
    ]
    return parts, expected


def test_now_is_portfolio_json_current(parts: tuple[list[PartitionData], dict[str, object]]) -> None:
    data, expected = parts
    answer = portfolio.now(data, META)
    assert answer["current"] == expected["current"]
    assert answer["currency"] == "USD" and answer["as_of"] == "2024-03-31T23:23:00Z"


def test_months_are_portfolio_json_months(parts: tuple[list[PartitionData], dict[str, object]]) -> None:
    data, expected = parts
    assert portfolio.months(portfolio.merged(data), META) == expected["months"]


def test_a_month_period_is_that_month(parts: tuple[list[PartitionData], dict[str, object]]) -> None:
    data, expected = parts
    months = expected["months"]
    assert isinstance(months, list)
    last = months[-1]
    m = parse_month(last["month"])
    answer = portfolio.period(portfolio.merged(data), m, m + 1, META)
    assert answer == {"from": portfolio.label(m), "to": portfolio.label(m + 1), "months": 1, **last}


def test_a_quarter_and_its_bounds(parts: tuple[list[PartitionData], dict[str, object]]) -> None:
    data, _ = parts
    sums = portfolio.merged(data)
    answer = portfolio.period(sums, sums.hi - 3, sums.hi, META)
    assert answer["months"] == 3 and "month" not in answer
    with pytest.raises(portfolio.OutOfRange, match="outside the kept history"):
        portfolio.period(sums, sums.lo - 1, sums.hi, META)
    with pytest.raises(portfolio.OutOfRange, match="outside the kept history"):
        portfolio.period(sums, sums.hi - 1, sums.hi + 1, META)


def test_configuration_reaches_the_metrics(parts: tuple[list[PartitionData], dict[str, object]]) -> None:
    data, _ = parts
    sums = portfolio.merged(data)
    costly = {**META, "cs_cost_per_month": "25000", "gross_margin": "0.8"}
    answer = portfolio.period(sums, sums.hi - 1, sums.hi, costly)
    assert answer["crc"] is not None
    plain = portfolio.period(sums, sums.hi - 1, sums.hi, META)
    if plain["clv"] is not None:
        assert answer["clv"] != plain["clv"]


def test_no_data_yet() -> None:
    assert portfolio.now([], META)["as_of"] is None
    assert portfolio.months(portfolio.merged([]), META) == []
    with pytest.raises(portfolio.OutOfRange, match="no portfolio data yet"):
        portfolio.period(portfolio.merged([]), 1, 2, META)
