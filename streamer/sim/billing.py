"""Subscriptions of the simulated accounts: pricing, billing periods and event fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamer.sim.catalog import (
    ADDONS,
    ANNUAL_MONTHS_CHARGED,
    PLAN_BY_NAME,
    QUARTERLY_DISCOUNT,
    WEEKLY_STARTER_CENTS,
)
from streamer.sim.times import DAY, add_months, rfc3339

ADDON_PRICES = dict(ADDONS)


@dataclass(slots=True)
class Subscription:
    """One live subscription: the full state a `subscription.started/changed` carries."""

    subscription_id: str
    plan: str
    seats: int | None
    interval: str
    interval_count: int
    amount_cents: int
    period_start: int
    next_bill: int
    term_end: int | None = None

    @property
    def is_addon(self) -> bool:
        """True for an add-on (a second subscription next to the base plan)."""
        return self.plan.startswith("addon-")


def money(cents: int) -> str:
    """Cents as a decimal string in major units, e.g. 190000 -> "1900.00"."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def list_price(
    plan: str, seats: int | None, interval: str, count: int, factor: float, discount: float
) -> int:
    """Cents charged per billing interval for a plan in a currency, after discount."""
    if plan in ADDON_PRICES:
        monthly = ADDON_PRICES[plan]
    elif interval == "week":
        return _whole_units(WEEKLY_STARTER_CENTS * factor)
    else:
        spec = PLAN_BY_NAME[plan]
        monthly = spec.monthly_cents * (seats or 1) if spec.per_seat else spec.monthly_cents
    monthly_local = _whole_units(monthly * factor) * (1.0 - discount)
    if interval == "year":
        return round(monthly_local * ANNUAL_MONTHS_CHARGED)
    if count > 1:
        return round(monthly_local * count * QUARTERLY_DISCOUNT)
    return round(monthly_local)


def _whole_units(cents: float) -> int:
    """Round a converted list price to whole currency units, as price lists do."""
    return max(100, round(cents / 100) * 100)


def next_period(ts: int, interval: str, count: int) -> int:
    """The end of a billing period that starts at `ts`."""
    if interval == "week":
        return ts + 7 * DAY * count
    if interval == "year":
        return add_months(ts, 12 * count)
    return add_months(ts, count)


def state_fields(sub: Subscription, currency: str) -> dict[str, Any]:
    """The fields of `subscription.started` / `subscription.changed` for `sub`."""
    fields: dict[str, Any] = {
        "subscription_id": sub.subscription_id,
        "plan": sub.plan,
        "amount": money(sub.amount_cents),
        "currency": currency,
        "interval": sub.interval,
        "interval_count": sub.interval_count,
    }
    if sub.seats is not None:
        fields["seats"] = sub.seats
    if sub.term_end is not None:
        fields["term_end"] = rfc3339(sub.term_end)
    return fields
