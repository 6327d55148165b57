"""Exact money: integer micro-units of the reporting currency (sums are exact and order-free)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

MICROS = 1_000_000
_MICRO = Decimal(1)
_CENT = Decimal("0.01")

# Months in one billing interval of each kind; a week is 12/52 of a month.
MONTHS_PER_INTERVAL: dict[str, Decimal] = {
    "week": Decimal(12) / Decimal(52),
    "month": Decimal(1),
    "year": Decimal(12),
}


def monthly_micros(amount: Decimal, interval: str, interval_count: int, rate: Decimal) -> int:
    """MRR in micro-units: amount x rate / months in (interval_count x interval), rounded half-even."""
    months = MONTHS_PER_INTERVAL[interval] * interval_count
    return int((amount * rate * MICROS / months).quantize(_MICRO, rounding=ROUND_HALF_EVEN))


def format_money(micros: int) -> str:
    """Decimal string with two places, e.g. 158333333 -> '158.33'.

    Remembered per amount: a portfolio has few distinct MRRs, and every evaluation formats its
    account's (the decimal arithmetic was ~2% of an offline run on a wide portfolio).
    """
    text = _TEXTS.get(micros)
    if text is None:
        if len(_TEXTS) >= _TEXTS_MAX:
            _TEXTS.clear()
        text = _TEXTS[micros] = str((Decimal(micros) / MICROS).quantize(_CENT, rounding=ROUND_HALF_EVEN))
    return text


_TEXTS: dict[int, str] = {}
_TEXTS_MAX = 4096  # amounts remembered at most (then forgotten all at once)
