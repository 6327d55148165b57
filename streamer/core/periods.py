"""Period metrics (NRR, GRR, churn, CRR, movements, ARPA, CLV, ...) read off `PeriodSums`.

One definition per metric; the sums behind them are explained in `streamer.core.portfolio`.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

from streamer.core.clock import month_label
from streamer.core.money import format_money
from streamer.core.portfolio import PeriodSums
from streamer.core.revenue import MOVEMENTS

TRAILING_CHURN_MONTHS = 3


def _rate(numerator: float, denominator: float) -> float | None:
    """A ratio rounded to 4 places; None when the denominator is 0 (undefined)."""
    return round(numerator / denominator, 4) if denominator else None


def _movements(sums: PeriodSums, m1: int, m2: int) -> list[int]:
    total = [0] * len(MOVEMENTS)
    for month in range(m1, m2):
        for index, value in enumerate(sums.movements.get(month, ())):
            total[index] += value
    return total


def trailing_logo_churn(sums: PeriodSums, month: int) -> float | None:
    """Monthly logo churn over the trailing 3 months: churned logos / start logos, pooled."""
    churned = started = 0
    for m in range(max(sums.lo, month - TRAILING_CHURN_MONTHS + 1), month + 1):
        terms = sums.pair(m, m + 1)
        churned += terms.churned_accounts
        started += terms.start_accounts
    return churned / started if started else None


def period_metrics(
    sums: PeriodSums,
    m1: int,
    m2: int,
    *,
    gross_margin: float = 1.0,
    cs_cost_per_month: Decimal | None = None,
) -> dict[str, Any]:
    """Metrics for the period [start of month m1, start of month m2)."""
    p = sums.pair(m1, m2)
    moves = dict(zip(MOVEMENTS, _movements(sums, m1, m2), strict=True))
    start_mrr, start_accounts = p.start_mrr, p.start_accounts
    retained = start_accounts - p.churned_accounts
    # exact (a Fraction of micro-units): a float lost cents on a portfolio of 10^14 a month
    arpa = Fraction(p.end_mrr, p.end_accounts) if p.end_accounts else None
    if m2 - m1 == 1:
        churn = trailing_logo_churn(sums, m1)  # CLV uses the trailing 3 months for a month
    else:
        churn = p.churned_accounts / start_accounts if start_accounts else None
    clv = arpa * Fraction(gross_margin) / Fraction(churn) if arpa is not None and churn else None
    gained = moves["new"] + moves["expansion"] + moves["reactivation"]
    lost = moves["contraction"] + moves["churn"]
    due = renewed = 0
    for month in range(m1, m2):
        terms_ending, terms_renewed = sums.renewals.get(month, (0, 0))
        due, renewed = due + terms_ending, renewed + terms_renewed
    crc = None
    if cs_cost_per_month is not None and retained:
        cost = cs_cost_per_month * (m2 - m1)
        crc = str((cost / retained).quantize(Decimal("0.01")))
    return {
        "start_mrr": format_money(start_mrr),
        "end_mrr": format_money(p.end_mrr),
        "nrr": _rate(p.retained_mrr, start_mrr),
        "grr": _rate(p.gross_retained_mrr, start_mrr),
        "logo_churn_rate": _rate(p.churned_accounts, start_accounts),
        "retention_rate": _rate(p.end_accounts - p.new_accounts, start_accounts),
        "mrr_churn_rate": _rate(p.churned_mrr, start_mrr),
        "start_accounts": start_accounts,
        "end_accounts": p.end_accounts,
        "new_accounts": p.new_accounts,
        "churned_accounts": p.churned_accounts,
        "arpa": format_money(round(arpa)) if arpa is not None else None,
        "clv": format_money(round(clv)) if clv is not None else None,
        "movements": {kind: format_money(value) for kind, value in moves.items()},
        "net_new_mrr": format_money(gained - lost),
        "expansion_rate": _rate(moves["expansion"] + moves["reactivation"], start_mrr),
        "quick_ratio": _rate(gained, lost),
        "renewal_rate": _rate(renewed, due),
        "crc": crc,
    }


def month_metrics(sums: PeriodSums, month: int, **kwargs: Any) -> dict[str, Any]:
    """The month object of portfolio.json (and of the HTTP view)."""
    return {"month": month_label(month), **period_metrics(sums, month, month + 1, **kwargs)}


def months_in_data(sums: PeriodSums) -> range:
    """Calendar months from the first one with data to the current one, within kept history."""
    if sums.first_month is None or sums.hi < 0:
        return range(0)
    return range(max(sums.first_month, sums.lo), sums.hi)
