"""A batch reference for revenue metrics: recomputed from the full list of accepted events.

Nothing here is incremental. Each subscription is a step function: every started/changed event
sets its MRR from `occurred_at` on, every cancellation sets 0 from `effective_at` (default
`occurred_at`; one dated before the subscription's first start, from that start); at one
instant the last writer by occurred_at wins, at one occurred_at a change follows a start and a
cancellation follows both, and then the larger event_id. An account's MRR
is the sum over its subscriptions. Movements, month-start MRR and the period metrics are read
off those step functions by brute force, straight from the definitions in the metrics spec.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from streamer.contract.events import (
    Event,
    SubscriptionCanceled,
    SubscriptionChanged,
    SubscriptionStarted,
)

DAY = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KINDS = ("new", "expansion", "contraction", "churn", "reactivation")
MONTHS_IN = {"week": Fraction(12, 52), "month": Fraction(1), "year": Fraction(12)}


def epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def month_number(ms: int) -> int:
    moment = EPOCH + timedelta(milliseconds=ms)
    return moment.year * 12 + moment.month - 1


def month_begin(month: int) -> int:
    year, index = divmod(month, 12)
    return epoch_ms(datetime(year, index + 1, 1, tzinfo=UTC))


def month_name(month: int) -> str:
    year, index = divmod(month, 12)
    return f"{year:04d}-{index + 1:02d}"


def money(micros: int) -> str:
    """Two decimal places, half-even, of a micro-unit amount."""
    return str((Decimal(micros) / 1_000_000).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def monthly(amount: Decimal, interval: str, count: int, rate: Decimal) -> int:
    """MRR in micro-units, computed with exact fractions and rounded half-even to the micro."""
    exact = Fraction(amount) * Fraction(rate) * 1_000_000 / (MONTHS_IN[interval] * count)
    return round(exact)


@dataclass(frozen=True, order=True)
class Step:
    effective: int
    occurred: int
    kind: int  # at one instant: 0 started, 1 changed, 2 canceled
    event_id: str
    mrr: int


def accepted(arrivals: Iterable[Event], lateness_ms: int, partition_of=lambda account: 0) -> list[Event]:
    """The events a partitioned stream keeps: first copy of each (account, event_id), and only
    those no more than `lateness_ms` behind their partition's latest accepted event time."""
    seen: set[tuple[str, str]] = set()
    stream: dict[int, int] = {}
    kept = []
    for event in arrivals:
        key = (event.account_id, event.event_id)
        if key in seen:
            continue
        when = epoch_ms(event.occurred_at)
        partition = partition_of(event.account_id)
        latest = stream.get(partition)
        if latest is not None and when < latest - lateness_ms:
            continue
        seen.add(key)
        stream[partition] = when if latest is None else max(latest, when)
        kept.append(event)
    return kept


class Book:
    """Every account's subscriptions as lists of steps, plus every event time."""

    def __init__(self, events: Iterable[Event], rates: dict[str, Decimal]) -> None:
        self.steps: dict[str, dict[str, list[Step]]] = defaultdict(lambda: defaultdict(list))
        self.times: dict[str, list[int]] = defaultdict(list)
        for event in events:
            occurred = epoch_ms(event.occurred_at)
            self.times[event.account_id].append(occurred)
            if isinstance(event, SubscriptionStarted | SubscriptionChanged):
                mrr = monthly(event.amount, event.interval.value, event.interval_count, rates[event.currency])
                kind = 0 if isinstance(event, SubscriptionStarted) else 1
                step = Step(occurred, occurred, kind, event.event_id, mrr)
            elif isinstance(event, SubscriptionCanceled):
                effective = epoch_ms(event.effective_at) if event.effective_at else occurred
                step = Step(effective, occurred, 2, event.event_id, 0)
            else:
                continue
            self.steps[event.account_id][event.subscription_id].append(step)
        for (
            subscriptions
        ) in self.steps.values():  # a cancellation recorded after the start ends nothing before it
            for steps in subscriptions.values():
                starts = [step.effective for step in steps if step.kind == 0]
                if starts:
                    first = min(starts)
                    steps[:] = [
                        Step(first, step.occurred, step.kind, step.event_id, step.mrr)
                        if step.kind == 2 and step.effective < first <= step.occurred
                        else step
                        for step in steps
                    ]

    @property
    def accounts(self) -> list[str]:
        return sorted(self.times)

    def mrr_at(self, account: str, instant: int, *, inclusive: bool = True) -> int:
        """MRR at `instant` (counting changes effective at it), or just before it."""
        total = 0
        for steps in self.steps.get(account, {}).values():
            applied = [s for s in steps if (s.effective <= instant if inclusive else s.effective < instant)]
            if applied:
                total += max(applied).mrr  # latest effective, then latest writer
        return total

    def movements(self, account: str) -> list[tuple[int, str, int]]:
        """(UTC day, kind, amount): the net MRR change of every day with a change."""
        days = sorted({s.effective // DAY for steps in self.steps.get(account, {}).values() for s in steps})
        result = []
        had_mrr = False
        for day in days:
            before = self.mrr_at(account, day * DAY, inclusive=False)
            after = self.mrr_at(account, (day + 1) * DAY, inclusive=False)
            if after != before:
                if before == 0:
                    kind = "reactivation" if had_mrr else "new"
                elif after == 0:
                    kind = "churn"
                else:
                    kind = "expansion" if after > before else "contraction"
                result.append((day, kind, abs(after - before)))
            had_mrr = had_mrr or before > 0 or after > 0
        return result

    def months(self) -> range:
        """Calendar months from the first event's to the latest event's."""
        times = [t for ts in self.times.values() for t in ts]
        return range(month_number(min(times)), month_number(max(times)) + 1)

    def period(self, m1: int, m2: int) -> dict:
        """The period metrics for [start of m1, start of m2), as portfolio.json reports them."""
        d1, d2 = month_begin(m1), month_begin(m2)
        at1 = {a: self.mrr_at(a, d1) for a in self.accounts}
        at2 = {a: self.mrr_at(a, d2) for a in self.accounts}
        start = {a for a in self.accounts if at1[a] > 0}
        end = {a for a in self.accounts if at2[a] > 0}
        new = end - start
        churned = start - end
        start_mrr = sum(at1[a] for a in start)
        end_mrr = sum(at2[a] for a in end)
        moves = dict.fromkeys(KINDS, 0)
        for account in self.accounts:
            for day, kind, amount in self.movements(account):
                if d1 <= day * DAY < d2:
                    moves[kind] += amount
        gained = moves["new"] + moves["expansion"] + moves["reactivation"]
        lost = moves["contraction"] + moves["churn"]
        return {
            "start_mrr": money(start_mrr),
            "end_mrr": money(end_mrr),
            "nrr": ratio(sum(at2[a] for a in start), start_mrr),
            "grr": ratio(sum(min(at1[a], at2[a]) for a in start), start_mrr),
            "logo_churn_rate": ratio(len(churned), len(start)),
            "retention_rate": ratio(len(end) - len(new), len(start)),
            "mrr_churn_rate": ratio(sum(max(0, at1[a] - at2[a]) for a in start), start_mrr),
            "start_accounts": len(start),
            "end_accounts": len(end),
            "new_accounts": len(new),
            "churned_accounts": len(churned),
            "arpa": money(round(Fraction(end_mrr, len(end)))) if end else None,
            "movements": {kind: money(value) for kind, value in moves.items()},
            "net_new_mrr": money(gained - lost),
            "expansion_rate": ratio(moves["expansion"] + moves["reactivation"], start_mrr),
            "quick_ratio": ratio(gained, lost),
        }

    def clv(self, month: int, gross_margin: float = 1.0) -> str | None:
        """ARPA x margin / logo churn pooled over the trailing 3 months (exact)."""
        churned = started = 0
        for m in range(month - 2, month + 1):
            d1, d2 = month_begin(m), month_begin(m + 1)
            start = [a for a in self.accounts if self.mrr_at(a, d1) > 0]
            started += len(start)
            churned += sum(1 for a in start if self.mrr_at(a, d2) == 0)
        end_mrr = [self.mrr_at(a, month_begin(month + 1)) for a in self.accounts]
        paying = [v for v in end_mrr if v > 0]
        if not churned or not paying:
            return None
        arpa = Fraction(sum(paying), len(paying))
        return money(round(arpa * Fraction(gross_margin) / Fraction(churned, started)))
