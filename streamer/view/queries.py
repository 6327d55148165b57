"""The account list query, pure: which sorted set answers it, and how rows are filtered.

A query is answered from one sorted set (by score, MRR, renewal date or 60-day churn risk; per
band when it asks for one band; the MRR-at-risk set when it asks for accounts at risk sorted by
MRR, and the sort's set intersected with it in Redis, `within`, when sorted otherwise),
restricted to a score range where the sort field is also filtered on (minimum MRR, renewal
window). When that covers every filter, the page comes straight from Redis (`ZRANGEBYSCORE ...
LIMIT` and `ZCOUNT`, or the intersection's ids and the page's rows); otherwise the rows of the
range are fetched and filtered here (`residual`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from streamer.contract.vocabulary import Band
from streamer.core.clock import DAY
from streamer.projection.codec import at_risk, epoch_ms
from streamer.projection.keys import INDEXES, Keys
from streamer.projection.redis_reader import Range

T = TypeVar("T")
SORTS = INDEXES  # churn_risk and renewal list only the accounts that have one


@dataclass(frozen=True, slots=True)
class AccountQuery:
    """Filters, sort and page of `GET /api/accounts`."""

    bands: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    renewal_within_days: int | None = None
    min_mrr: Decimal | None = None
    at_risk: bool = False
    owners: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    search: str | None = None  # part of the name or id, any case
    sort: str = "score"
    descending: bool = False
    limit: int = 50
    offset: int = 0

    @property
    def sort_label(self) -> str:
        return f"-{self.sort}" if self.descending else self.sort


@dataclass(frozen=True, slots=True)
class Plan:
    """Where the answer comes from: a sorted set, a score range, and whether rows need filtering."""

    key: str
    where: Range
    residual: bool
    # A set whose members alone are listed (the at-risk set, when the list is sorted otherwise
    # than by MRR): intersected in Redis, rather than every row read and filtered here
    within: str | None = None


def renewal_window(query: AccountQuery, now_ms: int) -> Range:
    """Renewal dates from the portfolio's stream time to `renewal_within_days` after it."""
    assert query.renewal_within_days is not None
    return Range(float(now_ms), float(now_ms + query.renewal_within_days * DAY))


def float_exact(bound: Decimal) -> bool:
    """Whether a score range from `float(bound)` holds exactly the MRRs >= `bound`.

    An MRR index scores each account `float(mrr)`, rounded to nearest, which keeps the order:
    `mrr >= bound` gives `float(mrr) >= float(bound)`, so the range leaves nothing out. It can
    let in an MRR below the bound that rounds to the same float (29.00 for 29.000000000000001),
    unless both have at most 15 significant digits (`sys.float_info.dig`): such decimals are
    different floats, and an MRR has at most 15 (two places, at most 2^63-1 micro-units:
    9,223,372,036,854.78). A bound with more digits is checked on each row (`matches`)."""
    significant = "".join(map(str, bound.as_tuple().digits)).strip("0")
    return len(significant) <= sys.float_info.dig


def plan(query: AccountQuery, keys: Keys, now_ms: int | None) -> Plan:
    """The cheapest sorted set and score range for the query (see the module docstring)."""
    covered = {"sort"}
    within = None
    if query.at_risk:  # the at-risk set by MRR; by another sort, that sort's set within it
        key, within = (keys.risk, None) if query.sort == "mrr" else (keys.index(query.sort), keys.risk)
        if query.bands != (Band.green,):  # nothing green is at risk: filtered to nothing below
            covered.add("at_risk")
    elif len(query.bands) == 1:
        key = keys.index(query.sort, query.bands[0])
        covered.add("bands")
    else:
        key = keys.index(query.sort)
    where = Range()
    if query.sort == "mrr" and query.min_mrr is not None:
        where = Range(low=float(query.min_mrr))  # leaves out no MRR >= min_mrr (`float_exact`)
        if float_exact(query.min_mrr):
            covered.add("min_mrr")
    elif query.sort == "renewal" and query.renewal_within_days is not None and now_ms is not None:
        where = renewal_window(query, now_ms)
        covered.add("renewal_within_days")
    filters = {
        "bands": bool(query.bands),
        "stages": bool(query.stages),
        "plans": bool(query.plans),
        "renewal_within_days": query.renewal_within_days is not None,
        "min_mrr": query.min_mrr is not None,
        "at_risk": query.at_risk,
        "owners": bool(query.owners),
        "segments": bool(query.segments),
        "search": query.search is not None,
    }
    residual = any(active and name not in covered for name, active in filters.items())
    return Plan(key, where, residual, within)


def matches(row: dict[str, Any], query: AccountQuery, now_ms: int | None) -> bool:
    """Whether a list row passes every filter of the query."""
    if query.bands and row["band"] not in query.bands:
        return False
    if query.stages and row["lifecycle_stage"] not in query.stages:
        return False
    if query.plans and row.get("plan") not in query.plans:
        return False
    if query.owners and row.get("owner") not in query.owners:
        return False
    if query.segments and row.get("segment") not in query.segments:
        return False
    if query.search is not None and not searched(row, query.search):
        return False
    mrr = Decimal(row["mrr"])
    if query.min_mrr is not None and mrr < query.min_mrr:
        return False
    if query.at_risk and not at_risk(row):
        return False
    if query.renewal_within_days is not None:
        renewal = row.get("renewal_at")
        if renewal is None or now_ms is None:
            return False
        window = renewal_window(query, now_ms)
        assert window.low is not None and window.high is not None
        if not window.low <= epoch_ms(renewal) <= window.high:
            return False
    return True


def searched(row: dict[str, Any], text: str) -> bool:
    """Whether `text` is part of the row's name or account id, ignoring case."""
    needle = text.casefold()
    return needle in str(row["account_id"]).casefold() or needle in str(row.get("name") or "").casefold()


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters and page of `GET /api/alerts` (newest first)."""

    limit: int = 50
    offset: int = 0
    account_id: str | None = None
    severities: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()

    @property
    def filtered(self) -> bool:
        """Whether rows must be read and filtered (else the page comes from the sorted set)."""
        return bool(self.severities or self.rules or self.owners or self.segments)


def alert_matches(alert: dict[str, Any], query: AlertQuery) -> bool:
    """Whether an alert passes the query's filters (owner and segment from its `profile`)."""
    if query.severities and alert.get("severity") not in query.severities:
        return False
    if query.rules and alert.get("rule") not in query.rules:
        return False
    found = alert.get("profile")
    about: dict[str, Any] = found if isinstance(found, dict) else {}
    if query.owners and about.get("owner") not in query.owners:
        return False
    return not (query.segments and about.get("segment") not in query.segments)


def page(rows: Sequence[T], query: AccountQuery | AlertQuery) -> list[T]:
    return list(rows[query.offset : query.offset + query.limit])
