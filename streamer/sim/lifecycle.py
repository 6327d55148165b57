"""One account's subscriptions over time: billing, dunning, renewals, changes and churn."""

from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import Any

from streamer.sim.billing import Subscription, list_price, next_period, state_fields
from streamer.sim.catalog import ADDONS, INVOLUNTARY_REASON, PLANS, VOLUNTARY_REASONS
from streamer.sim.times import DAY, HOUR, rfc3339

SubEvent = tuple[int, str, dict[str, Any]]
"""(epoch seconds, event_type, fields besides the envelope)."""

RETRY_DAYS = (3, 4, 3)
"""Days from one failed charge to the next retry; after the third failure comes the verdict."""


@dataclass(frozen=True, slots=True)
class Churn:
    """The account's MRR reached zero at `at`; the decision was known from `notice_at`."""

    at: int
    notice_at: int
    kind: str
    reason: str


@dataclass(slots=True)
class Dunning:
    """A failed charge being retried."""

    subscription_id: str
    attempt: int
    next_ts: int


class Lifecycle:
    """The subscription state machine of one account; its decisions follow the hidden health."""

    def __init__(self, account_id: str, currency: str, factor: float, discount: float, rng: Random) -> None:
        self.account_id = account_id
        self.currency = currency
        self.factor = factor
        self.discount = discount
        self.rng = rng
        self.subs: dict[str, Subscription] = {}
        self.base_id: str | None = None
        self.pending: Churn | None = None
        self.addon_ends: dict[str, int] = {}
        self.dunning: Dunning | None = None
        self.events: list[SubEvent] = []
        self.churns: list[Churn] = []
        self.reactivations: list[int] = []
        self.last_plan = "team"
        self.last_seats = 5
        self._counter = 0

    # -- state ------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """True while the account has at least one live subscription (MRR > 0)."""
        return bool(self.subs)

    @property
    def base(self) -> Subscription | None:
        """The base-plan subscription, if live."""
        return self.subs.get(self.base_id) if self.base_id else None

    @property
    def settled(self) -> bool:
        """True when nothing (cancellation, dunning) is in flight, so a change may happen."""
        return self.active and self.pending is None and self.dunning is None

    # -- starting ---------------------------------------------------------------------

    def start_base(self, ts: int, plan: str, seats: int, interval: str, count: int) -> None:
        """A base subscription starts at `ts` (a first purchase or a reactivation)."""
        if self.churns:
            self.reactivations.append(ts)
        sub = self._new_sub(ts, plan, seats, interval, count)
        self.base_id = sub.subscription_id
        self._emit(ts, "subscription.started", state_fields(sub, self.currency))

    def backfill(self, until: int) -> None:
        """Roll billing of a pre-existing account forward to `until` (renewals, no failures)."""
        for sub in self.subs.values():
            while sub.next_bill < until:
                self._advance(sub)
                if sub.interval == "year":
                    self._renewed(sub)

    def _new_sub(self, ts: int, plan: str, seats: int | None, interval: str, count: int) -> Subscription:
        self._counter += 1
        end = next_period(ts, interval, count)
        sub = Subscription(
            subscription_id=f"{self.account_id}-sub{self._counter}",
            plan=plan,
            seats=seats,
            interval=interval,
            interval_count=count,
            amount_cents=list_price(plan, seats, interval, count, self.factor, self.discount),
            period_start=ts,
            next_bill=end,
            term_end=end if interval == "year" else None,
        )
        self.subs[sub.subscription_id] = sub
        return sub

    # -- time passing -----------------------------------------------------------------

    def process_due(self, day_end: int, health: float) -> None:
        """Apply everything due before `day_end`, earliest first."""
        while True:
            due = self._next_due(day_end)
            if due is None:
                return
            ts, kind, sub_id = due
            if kind == "churn":
                self._churn_effective()
            elif kind == "addon_end":
                self.subs.pop(sub_id, None)
                del self.addon_ends[sub_id]
            elif kind == "retry":
                self._retry(ts, health)
            else:
                self._bill(self.subs[sub_id], health)

    def _next_due(self, day_end: int) -> tuple[int, str, str] | None:
        best: tuple[int, int, str, str] | None = None
        candidates: list[tuple[int, int, str, str]] = []
        if self.pending is not None:
            candidates.append((self.pending.at, 0, "churn", ""))
        candidates.extend((at, 1, "addon_end", sid) for sid, at in self.addon_ends.items())
        if self.dunning is not None:
            candidates.append((self.dunning.next_ts, 2, "retry", self.dunning.subscription_id))
        candidates.extend((s.next_bill, 3, "bill", s.subscription_id) for s in self.subs.values())
        for candidate in candidates:
            if candidate[0] < day_end and (best is None or candidate < best):
                best = candidate
        return None if best is None else (best[0], best[2], best[3])

    def _advance(self, sub: Subscription) -> None:
        sub.period_start = sub.next_bill
        sub.next_bill = next_period(sub.next_bill, sub.interval, sub.interval_count)
        if sub.interval == "year":
            sub.term_end = sub.next_bill

    def _renewed(self, sub: Subscription) -> None:
        assert sub.term_end is not None
        fields = {"subscription_id": sub.subscription_id, "term_end": rfc3339(sub.term_end)}
        self._emit(sub.period_start, "subscription.renewed", fields)

    def _bill(self, sub: Subscription, health: float) -> None:
        """A period ends: annual terms renew, the base plan is charged."""
        self._advance(sub)
        ts = sub.period_start
        if sub.interval == "year":
            self._renewed(sub)
            if health < 0.45 and self.rng.random() < 0.5:
                self._resize(ts, sub, shrink=True)
            elif health > 0.7 and self.rng.random() < 0.3:
                self._resize(ts, sub, shrink=False)
        if sub.subscription_id != self.base_id or self.pending or self.dunning:
            return
        if self.rng.random() < 0.012 + 0.10 * (1.0 - health) ** 2:
            failed_at = ts + self.rng.randrange(60, HOUR)
            self._payment_failed(failed_at, sub.subscription_id, 1)
            self.dunning = Dunning(sub.subscription_id, 1, failed_at + RETRY_DAYS[0] * DAY)

    def _payment_failed(self, ts: int, sub_id: str, attempt: int) -> None:
        fields = {"subscription_id": sub_id, "attempt": attempt}
        self._emit(ts, "subscription.payment_failed", fields)

    def _retry(self, ts: int, health: float) -> None:
        dunning = self.dunning
        assert dunning is not None
        if dunning.attempt >= len(RETRY_DAYS):
            self.dunning = None
            if self.rng.random() < 0.8:
                self.cancel_all(ts, ts, "involuntary", INVOLUNTARY_REASON)
            return
        if self.rng.random() < 0.35 + 0.4 * health:
            self.dunning = None
            return
        dunning.attempt += 1
        self._payment_failed(ts, dunning.subscription_id, dunning.attempt)
        dunning.next_ts = ts + RETRY_DAYS[dunning.attempt - 1] * DAY

    def _churn_effective(self) -> None:
        churn = self.pending
        assert churn is not None
        base = self.base
        if base is not None:
            self.last_plan, self.last_seats = base.plan, base.seats or 1
        self.subs.clear()
        self.addon_ends.clear()
        self.base_id = None
        self.pending = None
        self.dunning = None
        self.churns.append(churn)

    # -- decisions --------------------------------------------------------------------

    def cancel_all(self, ts: int, effective: int, kind: str, reason: str) -> None:
        """Cancel every live subscription, effective at `effective` (== `ts`: immediately)."""
        for sub in self.subs.values():
            if sub.subscription_id in self.addon_ends:
                continue
            fields: dict[str, Any] = {"subscription_id": sub.subscription_id}
            if effective != ts or self.rng.random() < 0.5:
                fields["effective_at"] = rfc3339(effective)
            fields["reason"] = reason
            self._emit(ts, "subscription.canceled", fields)
        self.pending = Churn(at=effective, notice_at=ts, kind=kind, reason=reason)

    def consider_churn(
        self,
        ts: int,
        smooth: float,
        decline: float,
        onboarding: bool,
        scale: float,
        engagement: float = 0.6,
        engagement_decline: float = 0.0,
    ) -> None:
        """Voluntary cancellation, with a hazard that rises as health or engagement is low or falling.

        Engagement (the volume and value of use) weighs about as much as health: an account
        can answer surveys happily and log in every day while doing less and less of its work
        in the product, and leave.
        """
        base = self.base
        if base is None or not self.settled:
            return
        risk = max(0.0, (0.5 - smooth) / 0.5)
        falling = max(0.0, decline - 0.05)
        unengaged = max(0.0, (0.45 - engagement) / 0.45)
        disengaging = max(0.0, engagement_decline - 0.05)
        monthly = 0.002 + 0.2 * risk * risk + 0.4 * falling + 0.35 * unengaged * unengaged + 0.8 * disengaging
        monthly *= scale * (1.5 if onboarding else 1.0)
        if base.term_end is not None:
            monthly *= 2.5 if base.term_end - ts <= 90 * DAY else 0.1
        if self.rng.random() >= monthly / 30.0:
            return
        immediate = self.rng.random() < (0.03 if base.interval == "year" else 0.2)
        effective = ts if immediate else base.next_bill
        column = 1 if smooth < 0.5 else 2
        weights = [float(row[column]) for row in VOLUNTARY_REASONS]
        reason = self.rng.choices([row[0] for row in VOLUNTARY_REASONS], weights)[0]
        self.cancel_all(ts, effective, "voluntary", reason)

    def consider_change(self, ts: int, smooth: float) -> None:
        """Healthy accounts expand (seats, upgrades, add-ons, annual); unhealthy ones shrink."""
        base = self.base
        if base is None or not self.settled:
            return
        rng = self.rng
        tier = _tier(base.plan)
        if rng.random() < 0.006 * max(0.0, (smooth - 0.6) / 0.4):
            self._resize(ts, base, shrink=False)
        elif rng.random() < 0.006 * max(0.0, (0.5 - smooth) / 0.5):
            addons = [
                s for s in self.subs.values() if s.is_addon and s.subscription_id not in self.addon_ends
            ]
            if addons and rng.random() < 0.4:
                self._end_addon(ts, rng.choice(addons))
            elif base.interval != "year":
                self._resize(ts, base, shrink=True)
        elif smooth > 0.7 and tier >= 1 and rng.random() < 0.0012:
            owned = {s.plan for s in self.subs.values()}
            missing = [name for name, _ in ADDONS if name not in owned]
            if missing:
                sub = self._new_sub(ts, rng.choice(missing), None, "month", 1)
                self._emit(ts, "subscription.started", state_fields(sub, self.currency))
        elif smooth > 0.75 and (base.interval, base.interval_count) == ("month", 1) and rng.random() < 0.0006:
            self._to_annual(ts, base)

    def _end_addon(self, ts: int, sub: Subscription) -> None:
        effective = ts if self.rng.random() < 0.4 else sub.next_bill
        fields: dict[str, Any] = {
            "subscription_id": sub.subscription_id,
            "effective_at": rfc3339(effective),
            "reason": "not_needed",
        }
        self._emit(ts, "subscription.canceled", fields)
        self.addon_ends[sub.subscription_id] = effective

    def _to_annual(self, ts: int, sub: Subscription) -> None:
        sub.interval, sub.interval_count = "year", 1
        sub.period_start = ts
        sub.next_bill = sub.term_end = next_period(ts, "year", 1)
        self._reprice(ts, sub)

    def _resize(self, ts: int, sub: Subscription, shrink: bool) -> None:
        """Seats up or down by 5-30 %; crossing a plan's seat range moves the plan."""
        seats = sub.seats or 1
        tier = _tier(sub.plan)
        step = max(1, round(seats * self.rng.uniform(0.05, 0.3)))
        new_seats = seats - step if shrink else seats + step
        plan = PLANS[tier]
        if new_seats < plan.min_seats:
            if tier == 0 or self.rng.random() >= 0.6:
                new_seats = plan.min_seats
            else:
                plan = PLANS[tier - 1]
                new_seats = min(max(new_seats, plan.min_seats), plan.max_seats)
        elif new_seats > plan.max_seats:
            if tier == len(PLANS) - 1:
                new_seats = plan.max_seats
            else:
                plan = PLANS[tier + 1]
                new_seats = max(new_seats, plan.min_seats)
        if sub.interval == "week" and plan.tier > 0:
            sub.interval, sub.interval_count = "month", 1
            sub.next_bill = next_period(sub.period_start, "month", 1)
            while sub.next_bill <= ts:
                sub.next_bill = next_period(sub.next_bill, "month", 1)
        if new_seats == seats and plan.name == sub.plan:
            return
        sub.plan, sub.seats = plan.name, new_seats
        self._reprice(ts, sub)

    def _reprice(self, ts: int, sub: Subscription) -> None:
        sub.amount_cents = list_price(
            sub.plan, sub.seats, sub.interval, sub.interval_count, self.factor, self.discount
        )
        self._emit(ts, "subscription.changed", state_fields(sub, self.currency))

    def _emit(self, ts: int, event_type: str, fields: dict[str, Any]) -> None:
        self.events.append((ts, event_type, fields))


def _tier(plan: str) -> int:
    for spec in PLANS:
        if spec.name == plan:
            return spec.tier
    raise ValueError(f"unknown base plan {plan!r}")
