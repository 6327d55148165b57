"""Query-string parsing with clear 400 messages: unknown names, bad numbers, bad choices."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal

from streamer.contract.vocabulary import BANDS, STAGES, Severity
from streamer.core.clock import parse_month
from streamer.view.errors import BadRequest
from streamer.view.queries import SORTS, AccountQuery, AlertQuery

MAX_LIMIT = 500
MAX_EXPORT = 100_000  # rows of one CSV export
FORMATS = ("json", "csv")
MAX_TEXT = 256  # an account id, a plan or a rule name
MAX_MRR = Decimal(10) ** 12  # a monthly revenue filter above a trillion matches nothing real
FIRST_YEAR, LAST_YEAR = 1970, 2999  # months the view answers for (a period ends a month later)
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")
# The forms numbers are written in, in ASCII digits: Python's int() and Decimal() also take other
# scripts' digits, underscores, a '+', exponents, 'NaN'... (a '-' passes to say "must be >= 0")
INTEGER = re.compile(r"-?[0-9]+")
DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
MONTH = re.compile(r"[0-9-]+")  # then `parse_month` says what is wrong with the digits


class Params:
    """One request's query parameters (a multi-mapping, as aiohttp's `request.query`)."""

    def __init__(self, query: Mapping[str, str], allowed: Iterable[str]) -> None:
        self.query = query
        allowed = tuple(allowed)
        unknown = sorted(set(query) - set(allowed))
        if unknown:
            expected = ", ".join(allowed) if allowed else "none"
            raise BadRequest(f"unknown query parameter {unknown[0]!r}; expected: {expected}")

    def text(self, name: str) -> str | None:
        """One value, the spaces around it trimmed."""
        return self._one(name, trim=True)

    def exact(self, name: str) -> str | None:
        """One value taken as it is, never trimmed: an account id may begin or end with a space
        (`account_id=acct-1%20` returned the alerts of `acct-1`)."""
        return self._one(name, trim=False)

    def _one(self, name: str, *, trim: bool) -> str | None:
        """The parameter given once (None when not given), not empty nor only spaces, at most
        `MAX_TEXT` characters."""
        values = self._all(name)
        if len(values) > 1:
            raise BadRequest(f"{name!r} given {len(values)} times; give it once")
        if not values:
            return None
        value = values[0].strip() if trim else values[0]
        if not value.strip():
            raise BadRequest(f"{name!r} is empty; leave it out or give a value")
        if len(value) > MAX_TEXT:
            raise BadRequest(f"{name!r} must be at most {MAX_TEXT} characters, got {len(value)}")
        return value

    def _all(self, name: str) -> list[str]:
        getall = getattr(self.query, "getall", None)
        if getall is not None:
            return list(getall(name, []))
        value = self.query.get(name)
        return [] if value is None else [value]

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        raw = self.text(name)
        if raw is None:
            return default
        if not INTEGER.fullmatch(raw):
            raise BadRequest(f"{name!r} must be an integer in the digits 0-9, got {raw!r}")
        value = int(raw)
        if not low <= value <= high:
            raise BadRequest(f"{name!r} must be between {low} and {high}, got {value}")
        return value

    def decimal(self, name: str) -> Decimal | None:
        raw = self.text(name)
        if raw is None:
            return None
        if not DECIMAL.fullmatch(raw):
            raise BadRequest(
                f"{name!r} must be a decimal number in the digits 0-9, such as 1000 or 99.50, got {raw!r}"
            )
        value = Decimal(raw)
        if raw.startswith("-"):
            raise BadRequest(f"{name!r} must be a finite number >= 0, got {raw!r}")
        if value > MAX_MRR:
            raise BadRequest(f"{name!r} must be at most {MAX_MRR:,}, got {raw!r}")
        return value

    def boolean(self, name: str) -> bool:
        raw = self.text(name)
        if raw is None:
            return False
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        raise BadRequest(f"{name!r} must be true or false, got {raw!r}")

    def choices(self, name: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """Comma-separated values (the parameter may also repeat); checked against `allowed`."""
        values: list[str] = []
        for raw in self._all(name):
            values += [part.strip() for part in raw.split(",") if part.strip()]
        if self._all(name) and not values:
            raise BadRequest(f"{name!r} is empty; leave it out or give a value")
        for value in values:
            if allowed is not None and value not in allowed:
                raise BadRequest(f"{name!r} must be one of {', '.join(allowed)}; got {value!r}")
            if len(value) > MAX_TEXT:
                raise BadRequest(f"{name!r} values must be at most {MAX_TEXT} characters")
        return tuple(dict.fromkeys(values))

    def names(self, name: str) -> tuple[str, ...]:
        """Values taken as they are, never split or trimmed (an owner may be "Smith, Ana", a
        segment " enterprise ", a plan "Pro, annual"): the parameter repeats for several."""
        values = self._all(name)
        for value in values:
            if not value.strip():
                raise BadRequest(f"{name!r} is empty; leave it out or give a value")
            if len(value) > MAX_TEXT:
                raise BadRequest(f"{name!r} values must be at most {MAX_TEXT} characters")
        return tuple(dict.fromkeys(values))

    def month(self, name: str) -> int | None:
        raw = self.text(name)
        if raw is None:
            return None
        if not MONTH.fullmatch(raw):
            raise BadRequest(
                f"{name!r}: expected a month 'YYYY-MM' or a first-of-month date 'YYYY-MM-01' "
                f"in the digits 0-9, got {raw!r}"
            )
        try:
            month = parse_month(raw)
        except ValueError as error:
            raise BadRequest(f"{name!r}: {error}") from None
        if not FIRST_YEAR * 12 <= month < (LAST_YEAR + 1) * 12:
            raise BadRequest(f"{name!r} must be a month from {FIRST_YEAR}-01 to {LAST_YEAR}-12, got {raw!r}")
        return month


ACCOUNT_LIST = (
    "band",
    "stage",
    "plan",
    "renewal_within_days",
    "min_mrr",
    "at_risk",
    "owner",
    "segment",
    "q",
    "sort",
    "limit",
    "offset",
    "format",
)
SORT_CHOICES = tuple(f"{sign}{field}" for field in SORTS for sign in ("", "-"))


def output_format(params: Params) -> str:
    """`format`: json (the default) or csv."""
    value = params.text("format") or "json"
    if value not in FORMATS:
        raise BadRequest(f"'format' must be one of {', '.join(FORMATS)}; got {value!r}")
    return value


def wants_csv(query: Mapping[str, str]) -> bool:
    """Whether the request asks for CSV: `format` read as `output_format` reads it (trimmed, as
    every parameter), so the answer's form and its row limit never disagree (a "csv " counted as
    an export, lifting the 500-row cap, yet answered JSON). Checked by the endpoint's own parser."""
    return output_format(Params(query, query)) == "csv"


def _limit(params: Params, export: bool) -> int:
    """`limit`: a page (default 50, at most 500), or for a CSV export every row (at most 100,000)."""
    if export:
        return params.integer("limit", MAX_EXPORT, 1, MAX_EXPORT) or MAX_EXPORT
    return params.integer("limit", 50, 1, MAX_LIMIT) or 50


def account_query(query: Mapping[str, str]) -> AccountQuery:
    """`GET /api/accounts` parameters."""
    params = Params(query, ACCOUNT_LIST)
    export = output_format(params) == "csv"
    sort = params.text("sort") or "score"
    if sort not in SORT_CHOICES:
        raise BadRequest(f"'sort' must be one of {', '.join(SORT_CHOICES)}; got {sort!r}")
    return AccountQuery(
        bands=params.choices("band", BANDS),
        stages=params.choices("stage", STAGES),
        plans=params.names("plan"),  # a plan may hold a comma ("Pro, annual"), as an owner may
        renewal_within_days=params.integer("renewal_within_days", None, 0, 3650),
        min_mrr=params.decimal("min_mrr"),
        at_risk=params.boolean("at_risk"),
        owners=params.names("owner"),
        segments=params.names("segment"),
        search=params.text("q"),
        sort=sort.lstrip("-"),
        descending=sort.startswith("-"),
        limit=_limit(params, export),
        offset=params.integer("offset", 0, 0, 1_000_000) or 0,
    )


def period_query(query: Mapping[str, str]) -> tuple[int, int]:
    """`GET /api/period`: `month=YYYY-MM`, or `from` and `to` first-of-month dates."""
    params = Params(query, ("month", "from", "to"))
    month, start, end = params.month("month"), params.month("from"), params.month("to")
    if month is not None:
        if start is not None or end is not None:
            raise BadRequest("give either 'month' or 'from' and 'to', not both")
        return month, month + 1
    if start is None or end is None:
        raise BadRequest("give 'month' (YYYY-MM) or both 'from' and 'to' (first-of-month dates YYYY-MM-01)")
    if start >= end:
        raise BadRequest(f"'from' ({query['from']}) must be before 'to' ({query['to']})")
    return start, end


ALERT_LIST = ("limit", "offset", "account_id", "severity", "rule", "owner", "segment", "format")
ACCOUNT_ALERT_LIST = ("limit", "offset", "severity", "rule", "format")
SEVERITIES = tuple(Severity)


def alert_query(query: Mapping[str, str], account_id: str | None = None) -> AlertQuery:
    """`GET /api/alerts` (or one account's, `account_id` from the path): page and filters."""
    params = Params(query, ALERT_LIST if account_id is None else ACCOUNT_ALERT_LIST)
    export = output_format(params) == "csv"
    return AlertQuery(
        limit=_limit(params, export),
        offset=params.integer("offset", 0, 0, 1_000_000) or 0,
        account_id=account_id if account_id is not None else params.exact("account_id"),
        severities=params.choices("severity", SEVERITIES),
        rules=params.choices("rule"),
        owners=params.names("owner") if account_id is None else (),
        segments=params.names("segment") if account_id is None else (),
    )


def filters_query(query: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`GET /api/filters`: the `owner` and `segment` filters chosen (listed whatever their size)."""
    params = Params(query, ("owner", "segment"))
    return params.names("owner"), params.names("segment")


HISTORY_DAYS = 400


def history_query(query: Mapping[str, str]) -> int:
    """`GET /api/accounts/{id}/history`: `days` back from the newest point (1-400, default 400)."""
    params = Params(query, ("days", "format"))
    output_format(params)
    return params.integer("days", HISTORY_DAYS, 1, HISTORY_DAYS) or HISTORY_DAYS


def timeline_query(query: Mapping[str, str]) -> int:
    """`GET /api/accounts/{id}/timeline`: `per_kind` entries of each kind (1-50, default 10)."""
    params = Params(query, ("per_kind", "format"))
    output_format(params)
    return params.integer("per_kind", 10, 1, 50) or 10


def no_params(query: Mapping[str, str]) -> None:
    Params(query, ())
