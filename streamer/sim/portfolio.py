"""The hidden account model: who the customers are and how their health and contracts evolve."""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from random import Random

from streamer.sim.catalog import CURRENCIES, PLANS, TIMEZONE_HOURS
from streamer.sim.config import SimulationConfig
from streamer.sim.health import Engagement, Health
from streamer.sim.lifecycle import Churn, Lifecycle, SubEvent
from streamer.sim.times import DAY, HOUR

ONBOARDING_DAYS = 90

NOT_CUSTOMER, ACTIVE, CANCELING = 0, 1, 2
"""Per-day status codes in `AccountModel.status`."""


@dataclass(slots=True)
class AccountModel:
    """Everything hidden about one account, day by day, plus its subscription events."""

    index: int
    account_id: str
    currency: str
    tz_hours: int
    customer_since: int
    joined_during: bool
    initial_plan: str
    initial_interval: str
    health: array[float]
    engagement: array[float]
    """Hidden engagement per day (volume and value of use; NaN when not a customer)."""
    seats: array[int]
    status: bytearray
    windows: dict[int, tuple[int, int]]
    """Days on which the account was a customer only part of the day: day -> [from, to)."""
    start_days: list[int]
    """Simulation day indices of each (re)start; negative for starts before the simulation."""
    sub_events: list[SubEvent]
    churns: list[Churn]
    reactivations: list[int]
    pending: Churn | None
    fit: float

    def days_since_start(self, day: int) -> int:
        """Days since the latest (re)start on or before `day`."""
        latest = self.start_days[0]
        for start in self.start_days:
            if start <= day:
                latest = start
        return day - latest


def account_id(index: int, accounts: int) -> str:
    """The id of the `index`-th account (from 1), zero-padded to the portfolio's width."""
    return f"acct-{index:0{max(4, len(str(accounts)))}d}"


def build_portfolio(config: SimulationConfig) -> list[AccountModel]:
    """The hidden model of every account of the portfolio."""
    return [build_account(config, index) for index in range(1, config.accounts + 1)]


def _business_time(rng: Random, day_ts: int, tz_hours: int) -> int:
    """A moment of office hours (local 8:00-18:00) on the UTC day starting at `day_ts`."""
    local = rng.randrange(8 * HOUR, 18 * HOUR)
    return day_ts + (local - tz_hours * HOUR) % DAY


def _first_contract(rng: Random) -> tuple[str, int, str, int]:
    """Plan, seats, interval and interval count of a new customer."""
    plan = PLANS[rng.choices(range(len(PLANS)), weights=[p.share for p in PLANS])[0]]
    seats = plan.min_seats + int((plan.max_seats - plan.min_seats) * rng.random() ** 2.2)
    if plan.tier == 0 and rng.random() < 0.04:
        return plan.name, seats, "week", 1
    if rng.random() < plan.annual_share:
        return plan.name, seats, "year", 1
    if plan.tier in (1, 2) and rng.random() < 0.06:
        return plan.name, seats, "month", 3
    return plan.name, seats, "month", 1


def build_account(config: SimulationConfig, index: int) -> AccountModel:
    """Simulate one account's hidden health and contract history over the whole period."""
    rng = Random(f"{config.seed}/{index}/model")
    aid = account_id(index, config.accounts)
    start, days = config.start_ts, config.days
    currency, factor = _currency(rng)
    tz_hours = rng.choices([tz for tz, _ in TIMEZONE_HOURS], [w for _, w in TIMEZONE_HOURS])[0]
    plan, seats, interval, count = _first_contract(rng)
    discount = 0.05 * rng.randrange(0, 7) if plan == "enterprise" else 0.0
    existing = rng.random() < config.initial_share
    if existing:
        back = rng.randrange(1, config.history_months * 30)
        join_day = -back
        fit = rng.betavariate(4.0, 1.8)
    else:
        join_day = rng.randrange(0, days)
        fit = rng.betavariate(3.2, 1.8)
    since = _business_time(rng, start + join_day * DAY, tz_hours)
    life = Lifecycle(aid, currency, factor, discount, rng)
    health = Health.new(fit, rng)
    engaged_rng = Random(f"{config.seed}/{index}/engagement")  # its own stream: health's stays as it was
    engagement = Engagement.new(fit, engaged_rng)
    start_days = [join_day]
    if existing:
        life.start_base(since, plan, seats, interval, count)
        life.backfill(start)

    health_by_day = array("f", [math.nan] * days)
    engagement_by_day = array("f", [math.nan] * days)
    seats_by_day = array("i", [0] * days)
    status = bytearray(days)
    windows: dict[int, tuple[int, int]] = {}
    for day in range(days):
        day_ts = start + day * DAY
        day_end = day_ts + DAY
        began = -1
        if not life.active:
            if day == join_day:
                life.start_base(since, plan, seats, interval, count)
                began = since
            elif life.churns and _reactivates(rng, life.churns[-1], day_ts):
                began = _business_time(rng, day_ts, tz_hours)
                life.start_base(began, *_comeback_contract(rng, life))
                health.restart(rng)
                engagement.restart(engaged_rng)
                start_days.append(day)
            else:
                continue
        onboarding = day - start_days[-1] < ONBOARDING_DAYS
        value = health.step(rng, volatile=onboarding)
        engaged = engagement.step(engaged_rng)
        churns_before = len(life.churns)
        life.process_due(day_end, value)
        decided_at = _business_time(rng, day_ts, tz_hours)
        if life.events and life.events[-1][0] >= decided_at:
            decided_at = life.events[-1][0] + 60
        life.consider_churn(
            decided_at,
            health.smooth,
            health.decline,
            onboarding,
            config.churn_scale,
            engaged,
            engagement.decline,
        )
        life.consider_change(decided_at, health.smooth)
        life.process_due(day_end, value)
        ended = life.churns[-1].at if len(life.churns) > churns_before else -1
        if began >= 0 or ended >= 0:
            windows[day] = (max(began, day_ts), ended if ended >= 0 else day_end)
        health_by_day[day] = value
        engagement_by_day[day] = engaged
        base = life.base
        seats_by_day[day] = (base.seats or 1) if base is not None else life.last_seats
        status[day] = CANCELING if life.pending is not None else ACTIVE

    life.events.sort(key=lambda event: event[0])
    return AccountModel(
        index=index,
        account_id=aid,
        currency=currency,
        tz_hours=tz_hours,
        customer_since=since,
        joined_during=not existing,
        initial_plan=plan,
        initial_interval=interval,
        health=health_by_day,
        engagement=engagement_by_day,
        seats=seats_by_day,
        status=status,
        windows=windows,
        start_days=start_days,
        sub_events=life.events,
        churns=life.churns,
        reactivations=life.reactivations,
        pending=life.pending,
        fit=fit,
    )


def _currency(rng: Random) -> tuple[str, float]:
    code, factor, _ = rng.choices(CURRENCIES, weights=[c[2] for c in CURRENCIES])[0]
    return code, factor


def _reactivates(rng: Random, churn: Churn, day_ts: int) -> bool:
    """A churned account comes back: soon after a failed card, rarely after leaving on purpose."""
    away = (day_ts - churn.at) // DAY
    if churn.kind == "involuntary":
        return away >= 10 and rng.random() < 0.004
    return away >= 45 and rng.random() < 0.0007


def _comeback_contract(rng: Random, life: Lifecycle) -> tuple[str, int, str, int]:
    """A returning customer buys the same or a smaller plan, mostly monthly."""
    tier = next(p.tier for p in PLANS if p.name == life.last_plan)
    if tier > 0 and rng.random() < 0.4:
        tier -= 1
    plan = PLANS[tier]
    seats = round(life.last_seats * rng.uniform(0.5, 1.0))
    seats = min(max(seats, plan.min_seats), plan.max_seats)
    interval = "year" if tier >= 2 and rng.random() < 0.3 else "month"
    return plan.name, seats, interval, 1
