"""Exact money: integer micro-units of the reporting currency (sums are exact and order-free)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

MICROS = 1_000_000
# A subscription's MRR in micro-units of the reporting currency, at most: 100 billion a month.
# 64 of them (limits.max_subscriptions) stay within the 64 bits an account's record stores.
MAX_SUBSCRIPTION_MRR = 10**17
# An account's MRR in micro-units at any instant, at most: what its record's 64 bits hold
# (subscriptions past max_subscriptions, as made-up ids that start later, could go past it).
MAX_ACCOUNT_MRR = 2**63 - 1
_PRECISION = 60  # digits: amount (18) x rate x 10^6, exact before rounding to a micro-unit
_MICRO = Decimal(1)
_CENT = Decimal("0.01")

# Months in one billing interval of each kind, as a fraction (numerator, denominator): a week is
# 12/52 of a month. Held as a Decimal, 12/52 was rounded at 28 digits, and an MRR exactly half a
# micro-unit from two neighbours (0.09 every 32 weeks: 12,187.5) was rounded down, not half-even.
MONTHS_PER_INTERVAL: dict[str, tuple[int, int]] = {
    "week": (12, 52),
    "month": (1, 1),
    "year": (12, 1),
}


def monthly_micros(amount: Decimal, interval: str, interval_count: int, rate: Decimal) -> int:
    """MRR in micro-units: amount x rate / months in (interval_count x interval), rounded half-even."""
    months, per = MONTHS_PER_INTERVAL[interval]
    with localcontext() as exact:  # the default 28 digits refused an extreme configured rate
        exact.prec = _PRECISION
        monthly = amount * rate * (MICROS * per) / (months * interval_count)
        return int(monthly.quantize(_MICRO, rounding=ROUND_HALF_EVEN))


def format_money(micros: int) -> str:
    """Decimal string with two places, e.g. 158333333 -> '158.33'.

    Remembered per amount: a portfolio has few distinct MRRs, and every evaluation formats its
    account's (the decimal arithmetic was ~2% of an offline run on a wide portfolio).
    """
    text = _TEXTS.get(micros)
    if text is None:
        if len(_TEXTS) >= _TEXTS_MAX:
            _TEXTS.clear()
        with localcontext() as exact:  # sums past 28 digits (a partition's, in micro-units)
            exact.prec = _PRECISION
            text = str((Decimal(micros) / MICROS).quantize(_CENT, rounding=ROUND_HALF_EVEN))
        _TEXTS[micros] = text
    return text


_TEXTS: dict[int, str] = {}
_TEXTS_MAX = 4096  # amounts remembered at most (then forgotten all at once)
