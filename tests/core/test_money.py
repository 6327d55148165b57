"""MRR of one subscription: amount / months in (interval_count x interval), exact micro-units."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streamer.core.money import format_money, monthly_micros


@pytest.mark.parametrize(
    ("amount", "interval", "count", "rate", "micros"),
    [
        ("100", "month", 1, "1", 100_000_000),
        ("1200", "year", 1, "1", 100_000_000),  # a year is 12 months
        ("1900.00", "year", 1, "1", 158_333_333),  # 158.333333|33 -> rounded to the micro
        ("120", "week", 1, "1", 520_000_000),  # a week is 12/52 month: 120 * 52 / 12 = 520
        ("100", "week", 1, "1", 433_333_333),  # 100 * 52 / 12 = 433.333333|3
        ("50", "week", 2, "1", 108_333_333),  # 50 / (2 * 12/52) = 108.333333|3
        ("300", "month", 3, "1", 100_000_000),  # quarterly
        ("100", "month", 3, "1", 33_333_333),  # 33.333333|3
        ("300", "year", 2, "1", 12_500_000),  # 300 / 24
        ("0.01", "month", 1, "1", 10_000),
        ("0", "month", 1, "1", 0),
        ("100", "month", 1, "1.08", 108_000_000),  # EUR at the default rate
        ("1200", "year", 1, "1.27", 127_000_000),  # GBP at the default rate
        ("19.99", "week", 1, "1.08", 93_553_200),  # 19.99 * 1.08 * 52 / 12 = 93.5532
        # exactly half a micro-unit: half-even, as 12/52 rounded at 28 digits did not
        ("0.09", "week", 32, "1", 12_188),  # 0.09 * 52 / (32 * 12) = 0.0121875
        ("0.000009", "week", 2, "1", 20),  # 19.5 micro-units
        ("0.000003", "week", 2, "1", 6),  # 6.5 micro-units: to the even neighbour below
    ],
)
def test_monthly_micros_from_amount_interval_and_count(
    amount: str, interval: str, count: int, rate: str, micros: int
) -> None:
    assert monthly_micros(Decimal(amount), interval, count, Decimal(rate)) == micros


def test_weekly_mrr_is_exact_for_a_whole_year_of_weeks() -> None:
    # 52 weeks of 1.00 are 52.00 a year, i.e. 4.333333 a month (not a float approximation)
    assert monthly_micros(Decimal("1"), "week", 1, Decimal(1)) == 4_333_333
    assert monthly_micros(Decimal("12"), "week", 52, Decimal(1)) == 1_000_000


@pytest.mark.parametrize(
    ("micros", "text"),
    [(158_333_333, "158.33"), (100_000_000, "100.00"), (0, "0.00"), (5_000, "0.00"), (15_000, "0.02")],
)
def test_format_money_two_places_half_even(micros: int, text: str) -> None:
    assert format_money(micros) == text


def test_format_money_remembered_and_forgotten_gives_the_same_text() -> None:
    """Amounts are remembered (at most `_TEXTS_MAX`, then forgotten at once): the text is the
    decimal one every time, first call, repeated call, and after the memory was cleared."""
    from decimal import ROUND_HALF_EVEN

    from streamer.core import money

    def decimal_text(micros: int) -> str:
        return str((Decimal(micros) / 1_000_000).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))

    amounts = [-1, 0, 1, 4_999, 5_000, 15_000, 25_000, -25_000, 158_333_333, *range(0, 10_000_000, 997)]
    for _ in range(2):
        for micros in amounts:
            assert format_money(micros) == decimal_text(micros), micros
    assert len(money._TEXTS) <= money._TEXTS_MAX
