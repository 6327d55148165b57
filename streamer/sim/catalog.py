"""The simulated product: plans, add-ons, currencies, features and support vocabulary."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    """A base plan: a flat or per-seat monthly list price (USD cents) and its seat range."""

    name: str
    tier: int
    monthly_cents: int
    per_seat: bool
    min_seats: int
    max_seats: int
    share: float
    annual_share: float


PLANS: tuple[Plan, ...] = (
    Plan("starter", 0, 2900, False, 1, 3, 0.30, 0.15),
    Plan("team", 1, 1500, True, 3, 25, 0.38, 0.30),
    Plan("business", 2, 3500, True, 10, 120, 0.22, 0.60),
    Plan("enterprise", 3, 6000, True, 50, 400, 0.10, 0.92),
)
PLAN_BY_NAME = {plan.name: plan for plan in PLANS}

WEEKLY_STARTER_CENTS = 900
"""The rare weekly starter plan: 9.00 a week."""

QUARTERLY_DISCOUNT = 0.95
ANNUAL_MONTHS_CHARGED = 10
"""An annual term costs ten months (two months free)."""

ADDONS: tuple[tuple[str, int], ...] = (
    ("addon-analytics", 9900),
    ("addon-premium-support", 19900),
    ("addon-sandbox", 4900),
    ("addon-extra-storage", 2500),
)
"""Add-ons are monthly flat-price second subscriptions (name, USD cents a month)."""

CURRENCIES: tuple[tuple[str, float, float], ...] = (
    ("USD", 1.0, 0.80),
    ("EUR", 1.0, 0.13),
    ("GBP", 0.85, 0.07),
)
"""(code, price factor against USD list prices, share of accounts)."""

FEATURES: tuple[tuple[str, float, float], ...] = (
    ("dashboards", 10.0, 6.0),
    ("search", 7.0, 5.0),
    ("reports", 6.0, 2.0),
    ("comments", 5.0, 4.0),
    ("alerts", 4.0, 3.0),
    ("mobile", 3.0, 3.0),
    ("export", 3.0, 1.5),
    ("integrations", 2.5, 2.0),
    ("automation", 2.0, 3.0),
    ("api", 2.0, 25.0),
    ("sso", 1.5, 1.5),
    ("billing", 0.5, 1.2),
)
"""(feature, popularity weight, mean uses per user-day when used)."""

TIMEZONE_HOURS: tuple[tuple[int, float], ...] = (
    (-8, 0.15),
    (-6, 0.08),
    (-5, 0.25),
    (0, 0.12),
    (1, 0.22),
    (2, 0.05),
    (5, 0.04),
    (8, 0.05),
    (10, 0.04),
)
"""(UTC offset of an account's office, share of accounts)."""

CHANNELS: tuple[tuple[str, float], ...] = (
    ("email", 0.40),
    ("chat", 0.30),
    ("portal", 0.20),
    ("phone", 0.10),
)

RESOLUTION_MEDIAN_HOURS = {"urgent": 3.0, "high": 10.0, "normal": 26.0, "low": 60.0}

VOLUNTARY_REASONS: tuple[tuple[str, float, float], ...] = (
    ("too_expensive", 3.0, 0.5),
    ("missing_features", 2.0, 0.3),
    ("switched_competitor", 2.0, 0.3),
    ("low_usage", 3.0, 0.2),
    ("budget_cuts", 1.0, 2.0),
    ("business_closed", 0.5, 2.0),
)
"""(reason, weight when the account is unhealthy, weight when it is healthy)."""
INVOLUNTARY_REASON = "payment_failed"
