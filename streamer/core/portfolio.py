"""Portfolio aggregates kept incrementally: period sums for every pair of kept month starts.

Each account contributes, for each pair of month starts (d1, d2), a few numbers that depend only
on its MRR at d1 and at d2 (`pair_terms`). When an account's MRR timeline changes, its old
contribution is subtracted and the new one added, so late and out-of-order events are exact.
Month starts after the newest one carry its values forward, which makes opening a new month
cost O(months) plus the accounts with changes already known for it (scheduled cancellations).
Partial sums of different partitions add up (`PeriodSums.add`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from streamer.core.clock import DAY, month_of, month_start
from streamer.core.revenue import MOVEMENTS, Revenue


class PairTerms(NamedTuple):
    """The sums of a pair of month starts (d1, d2), over accounts S paying at d1 and E at d2.

    Stored as plain lists in this order (`PeriodSums.pairs`); read by name through `pair`.
    """

    start_accounts: int  # |S|: MRR > 0 at d1
    end_accounts: int  # |E|: MRR > 0 at d2
    new_accounts: int  # |E \ S|
    churned_accounts: int  # |S \ E|
    start_mrr: int  # sum over S of MRR at d1
    end_mrr: int  # sum over E of MRR at d2
    retained_mrr: int  # sum over S of MRR at d2 (NRR numerator)
    gross_retained_mrr: int  # sum over S of min(MRR d1, MRR d2) (GRR numerator)
    churned_mrr: int  # sum over S of max(0, MRR d1 - MRR d2) (MRR churn numerator)

    @classmethod
    def unchanged(cls, accounts: int, mrr: int) -> PairTerms:
        """The sums when nothing changed between d1 and d2 (carried forward)."""
        return cls(accounts, accounts, 0, 0, mrr, mrr, mrr, mrr, 0)


PAIR_FIELDS = PairTerms._fields
NO_TERMS = PairTerms(*[0] * len(PAIR_FIELDS))


def pair_terms(v1: int, v2: int) -> PairTerms | None:
    """One account's contribution to the (d1, d2) sums given its MRR at d1 and d2."""
    if v1 > 0:
        if v2 > 0:
            return PairTerms(1, 1, 0, 0, v1, v2, v2, min(v1, v2), max(0, v1 - v2))
        return PairTerms(1, 0, 0, 1, v1, 0, 0, 0, v1)
    if v2 > 0:
        return PairTerms(0, 1, 1, 0, 0, v2, 0, 0, 0)
    return None


def _add(target: list[int], terms: Iterable[int], sign: int) -> None:
    for index, value in enumerate(terms):
        target[index] += sign * value


@dataclass(slots=True)
class Contribution:
    """An account's share: MRR at month starts from `base` on (last value carries forward)."""

    base: int
    values: list[int]
    movements: dict[int, tuple[int, ...]]  # month -> micros by movement kind
    renewals: dict[int, tuple[int, ...]] = field(default_factory=dict)  # month -> (due, renewed)

    def value(self, month: int) -> int:
        if month < self.base or not self.values:
            return 0
        return self.values[min(month - self.base, len(self.values) - 1)]


EMPTY = Contribution(0, [], {})


@dataclass(slots=True)
class PeriodSums:
    """Summed period aggregates over some accounts (one partition, or all of them)."""

    hi: int = -1  # newest kept month start (absolute month number); -1 before any data
    lo: int = -1
    first_month: int | None = None  # earliest month with any event
    points: dict[int, list[int]] = field(default_factory=dict)  # month -> [accounts, mrr]
    pairs: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    movements: dict[int, list[int]] = field(default_factory=dict)
    renewals: dict[int, list[int]] = field(default_factory=dict)  # month -> [terms ending, renewed]

    def point(self, month: int) -> list[int]:
        """[paying accounts, MRR] at the start of `month` (carried forward past `hi`)."""
        return self.points.get(min(month, self.hi), [0, 0])

    def pair(self, m1: int, m2: int) -> PairTerms:
        """The sums for month starts m1 < m2 (carried forward past `hi`)."""
        if m1 >= self.hi:
            return PairTerms.unchanged(*self.point(m1))
        found = self.pairs.get((m1, min(m2, self.hi)))
        return NO_TERMS if found is None else PairTerms(*found)


def merge(parts: Iterable[PeriodSums]) -> PeriodSums:
    """Add partitions' partial sums, aligning their newest month start by carrying forward."""
    live = [part for part in parts if part.hi >= 0]
    if not live:
        return PeriodSums()
    hi, lo = max(p.hi for p in live), max(p.lo for p in live)
    firsts = [p.first_month for p in live if p.first_month is not None]
    total = PeriodSums(hi, lo, min(firsts) if firsts else None)
    for part in live:
        for m in range(lo, hi + 1):
            _add(total.points.setdefault(m, [0, 0]), part.point(m), 1)
            for m2 in range(m + 1, hi + 1):
                terms = part.pair(m, m2)
                if any(terms):
                    _add(total.pairs.setdefault((m, m2), [0] * len(PAIR_FIELDS)), terms, 1)
        for m, values in part.movements.items():
            if m >= lo:
                _add(total.movements.setdefault(m, [0] * len(MOVEMENTS)), values, 1)
        for m, values in part.renewals.items():
            if m >= lo:
                _add(total.renewals.setdefault(m, [0, 0]), values, 1)
    return total


@dataclass(slots=True)
class PeriodAggregates:
    """One partition's incrementally maintained period sums and each account's contribution."""

    history_months: int
    sums: PeriodSums = field(default_factory=PeriodSums)
    contributions: dict[str, Contribution] = field(default_factory=dict)
    scheduled: dict[str, int] = field(default_factory=dict)  # account -> last known MRR change

    def note(self, ts: int) -> None:
        """An event at `ts` was accepted: its month has data (late events may add earlier ones)."""
        month = month_of(ts)
        sums = self.sums
        if sums.first_month is None or month < sums.first_month:
            sums.first_month = month

    def advance(self, ts: int, revenue_of: Callable[[str], Revenue]) -> None:
        """Stream time reached `ts`: make sure the next month start is kept."""
        month = month_of(ts)
        sums = self.sums
        self.note(ts)
        if sums.hi < 0:
            sums.hi, sums.lo = month + 1, month + 1 - self.history_months
            return
        while sums.hi < month + 1:
            self._open_next_month(revenue_of)

    def _open_next_month(self, revenue_of: Callable[[str], Revenue]) -> None:
        sums = self.sums
        old, new = sums.hi, sums.hi + 1
        for m in range(sums.lo, old):
            terms = sums.pairs.get((m, old))
            if terms is not None:
                sums.pairs[(m, new)] = terms.copy()
        accounts, mrr = sums.point(old)
        if accounts or mrr:
            sums.pairs[(old, new)] = list(PairTerms.unchanged(accounts, mrr))
            sums.points[new] = [accounts, mrr]
        sums.hi = new
        # Accounts with changes after the old month start: recompute them against the new one.
        for account_id in sorted(self.scheduled):
            self.update(account_id, revenue_of(account_id))
        # Drop what falls out of the kept history.
        while sums.hi - sums.lo > self.history_months:
            gone = sums.lo
            sums.points.pop(gone, None)
            sums.movements.pop(gone, None)
            sums.renewals.pop(gone, None)
            for key in [key for key in sums.pairs if key[0] == gone]:
                del sums.pairs[key]
            sums.lo += 1

    def update(self, account_id: str, revenue: Revenue) -> None:
        """Replace the account's contribution with one computed from its current timeline."""
        sums = self.sums
        if sums.hi < 0:
            return
        old = self.contributions.get(account_id, EMPTY)
        new = self._remember(account_id, revenue)
        _replace_values(sums, old, new, 1)
        _replace_monthly(sums.movements, old.movements, new.movements, len(MOVEMENTS), sums.lo)
        _replace_monthly(sums.renewals, old.renewals, new.renewals, 2, sums.lo)

    def add_all(self, accounts: Iterable[tuple[str, Revenue]]) -> None:
        """`update` for accounts that have no contribution yet (a partition's recovery), in bulk.

        The sums are the same as `update` gives account by account (integer sums, in any order):
        accounts with the same MRR at every kept month start (most of them: a steady plan) are
        added once with their count, and identical contributions are shared, not copied.
        """
        sums = self.sums
        if sums.hi < 0:
            return
        counts: dict[tuple[int, tuple[int, ...]], tuple[Contribution, int]] = {}
        shared: dict[tuple[object, ...], Contribution] = {}
        for account_id, revenue in accounts:
            if account_id in self.contributions:
                raise ValueError(f"add_all: {account_id!r} has a contribution already; use update")
            new = self._remember(account_id, revenue)
            key = (new.base, tuple(new.values), tuple(new.movements.items()), tuple(new.renewals.items()))
            new = self.contributions[account_id] = shared.setdefault(key, new)
            values_key = (new.base, tuple(new.values))
            first, count = counts.get(values_key, (new, 0))
            counts[values_key] = (first, count + 1)
            _replace_monthly(sums.movements, EMPTY.movements, new.movements, len(MOVEMENTS), sums.lo)
            _replace_monthly(sums.renewals, EMPTY.renewals, new.renewals, 2, sums.lo)
        for new, count in counts.values():
            _replace_values(sums, EMPTY, new, count)

    def _remember(self, account_id: str, revenue: Revenue) -> Contribution:
        """Compute and keep the account's contribution; note it for the next month if it has
        changes or term ends already known for after the newest kept month start (it is
        recomputed when that month opens)."""
        sums = self.sums
        new = contribution(revenue, sums.lo, sums.hi)
        self.contributions[account_id] = new
        known = [revenue.timeline[-1][0]] if revenue.timeline else []
        known += [sub.term_ends[-1] for sub in revenue.subscriptions.values() if sub.term_ends]
        last_change = max(known, default=None)
        if last_change is not None and last_change >= month_start(sums.hi):
            self.scheduled[account_id] = last_change
        else:
            self.scheduled.pop(account_id, None)
        return new


def _replace_values(sums: PeriodSums, old: Contribution, new: Contribution, weight: int) -> None:
    """Swap `weight` accounts' contribution `old` for `new` in the points and pair sums."""
    changed = [m for m in range(sums.lo, sums.hi + 1) if old.value(m) != new.value(m)]
    if not changed:
        return
    for m in changed:
        o, n = old.value(m), new.value(m)
        point = sums.points.setdefault(m, [0, 0])
        _add(point, ((o > 0) * -1 + (n > 0), n - o), weight)
    touched = {(a, b) if a < b else (b, a) for a in changed for b in range(sums.lo, sums.hi + 1) if b != a}
    for m1, m2 in touched:
        before = pair_terms(old.value(m1), old.value(m2))
        after = pair_terms(new.value(m1), new.value(m2))
        if before == after:
            continue
        target = sums.pairs.setdefault((m1, m2), [0] * len(PAIR_FIELDS))
        if before is not None:
            _add(target, before, -weight)
        if after is not None:
            _add(target, after, weight)


def _replace_monthly(
    target: dict[int, list[int]],
    old: dict[int, tuple[int, ...]],
    new: dict[int, tuple[int, ...]],
    width: int,
    lo: int,
) -> None:
    """Swap an account's old per-month vectors for its new ones in the sums."""
    for m in old.keys() | new.keys():
        before, after = old.get(m), new.get(m)
        if before == after or m < lo:
            continue
        sums = target.setdefault(m, [0] * width)
        if before is not None:
            _add(sums, before, -1)
        if after is not None:
            _add(sums, after, 1)


def contribution(revenue: Revenue, lo: int, hi: int) -> Contribution:
    """An account's MRR at each kept month start and its movements per month (up to `hi`)."""
    values = [revenue.mrr_at(month_start(m)) for m in range(lo, hi + 1)]
    while len(values) > 1 and values[-1] == values[-2]:
        values.pop()  # trailing repeats are implied by carrying forward
    limit = month_start(hi)
    movements: dict[int, list[int]] = {}
    for day, kind, amount in revenue.movements():
        if day * DAY >= limit:
            break
        month = month_of(day * DAY)
        if month >= lo:
            movements.setdefault(month, [0] * len(MOVEMENTS))[kind] += amount
    renewals: dict[int, list[int]] = {}
    for term_end, renewed in revenue.term_ends():
        month = month_of(term_end)
        if lo <= month < hi:
            counts = renewals.setdefault(month, [0, 0])
            counts[0] += 1
            counts[1] += renewed
    return Contribution(
        lo,
        values,
        {m: tuple(v) for m, v in movements.items()},
        {m: (due, renewed) for m, (due, renewed) in renewals.items()},
    )
