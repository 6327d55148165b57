"""An account's bounded score and MRR history in the projection: one compact point per snapshot,
hourly for the last three days, daily for 400 days, keyed by `as_of` so a re-delivered snapshot never
adds a point twice.

A point is one comma-separated line in the order of `FIELDS`: what the account page draws (score, band,
components, MRR, stage) and the few counters the timeline is inferred from (tickets, payment
failures, survey respondents, cancellation and renewal dates, usage). Bound per account:
`FINE_DAYS` * 24 hourly points + `KEEP_DAYS` daily points = 472 points at most, about 71 KB
in Redis (measured by tests/projection/test_history.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from streamer.core.clock import DAY, HOUR
from streamer.core.config import COMPONENTS
from streamer.core.facts import rounded
from streamer.core.money import MAX_ACCOUNT_MRR, MICROS, format_money
from streamer.core.score import Evaluation
from streamer.core.snapshot import PointFigures, point_figures
from streamer.projection.codec import epoch_ms, override_band

V = TypeVar("V")

FINE_DAYS = 3  # the last three days keep one point per hour ...
KEEP_DAYS = 400  # ... older points one per day, for this many days
MAX_POINTS = FINE_DAYS * 24 + KEEP_DAYS
COUNTS = ("open_tickets", "reopens_90d", "payment_failures_30d", "nps_respondents")
FIELDS = (
    "as_of",  # whole seconds; the sorted set's score keeps the milliseconds
    "score",
    "band",
    "stage",
    "mrr",  # decimal string
    *COMPONENTS,  # 0-100 or null when missing
    *COUNTS,
    "scheduled_cancellation_at",  # instant or null
    "renewal_at",  # instant or null
    "events_28d",
    "days_since_last_use",
    "override_band",  # the band a person's override puts the account in, when one is in force
)


@dataclass(frozen=True, slots=True)
class Point:
    """One decoded history point (see `FIELDS`)."""

    as_of: int
    score: float
    band: str
    stage: str
    mrr: str
    components: dict[str, float | None]
    open_tickets: int | None
    reopens_90d: int | None
    payment_failures_30d: int | None
    nps_respondents: int | None
    scheduled_cancellation_at: int | None
    renewal_at: int | None
    events_28d: float | None
    days_since_last_use: float | None
    override_band: str | None


BAND_LETTERS = {"green": "g", "yellow": "y", "red": "r"}
STAGE_LETTERS = {"onboarding": "o", "adopted": "a", "renewal": "r", "churned": "c"}
_BAND_NAMES = {letter: name for name, letter in BAND_LETTERS.items()}
_STAGE_NAMES = {letter: name for name, letter in STAGE_LETTERS.items()}


def _seconds(ms: int | None) -> str:
    """Epoch milliseconds as whole seconds in base 36 (6 characters until 2038)."""
    if ms is None:
        return ""
    value, digits = ms // 1000, ""
    while True:
        value, digit = divmod(value, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
        if value == 0:
            return digits


def _number(value: Any, places: int = 1) -> str:
    if value is None:
        return ""
    rounded = round(float(value), places)
    return str(int(rounded)) if rounded == int(rounded) else repr(rounded)


def _ms(text: Any) -> int | None:
    return epoch_ms(text) if isinstance(text, str) and text else None


def point(snapshot: dict[str, Any]) -> bytes:
    """The history point of a snapshot: its `FIELDS` as one comma-separated line (about 60 bytes;
    bands and stages as letters, instants as base-36 seconds, empty for null)."""
    metrics = snapshot.get("metrics") or {}
    components = snapshot.get("components") or {}
    return _line(
        (epoch_ms(snapshot["as_of"]), snapshot["score"], snapshot["band"], snapshot["lifecycle_stage"]),
        str(snapshot["mrr"]),
        [(components.get(name) or {}).get("score") for name in COMPONENTS],
        [metrics.get(name) for name in COUNTS],
        (_ms(metrics.get("scheduled_cancellation_at")), _ms(metrics.get("renewal_at"))),
        (metrics.get("events_28d"), metrics.get("days_since_last_use")),
        override_band(snapshot),
    )


def point_of(evaluation: Evaluation) -> bytes:
    """`point` of the snapshot `evaluation` gives, without building the snapshot."""
    return point_from(point_figures(evaluation))


def point_from(figures: PointFigures) -> bytes:
    """The point of a scoring's `PointFigures`: the engine's hour finals
    (`PartitionEngine.take_hour_finals`) are points only, never published."""
    now, score, band, stage, mrr, components, *counts = figures[:10]
    cancel_at, renewal_at, events_28d, since_last_use, forced = figures[10:]
    return _line(
        (now, score, band, stage),
        format_money(mrr),
        components,
        counts,
        (cancel_at, renewal_at),
        (events_28d, since_last_use),
        forced,
    )


def _line(
    head: tuple[int, float, str, str],
    mrr: str,
    components: Sequence[float | None],
    counts: Sequence[float | None],
    instants: tuple[int | None, int | None],
    usage: tuple[float | None, float | None],
    forced: str | None,
) -> bytes:
    """The point's line, from a snapshot or from an evaluation's figures: as_of, score, band and
    stage; MRR as written; the components; the four counts (open tickets, reopens, payment
    failures, NPS respondents); the cancellation and renewal instants; events in 28 days and days
    since last use; the override's band."""
    now, score, band, stage = head
    values = [
        _seconds(now),
        _number(score),
        BAND_LETTERS[band],
        STAGE_LETTERS[stage],
        mrr,
        *(_number(component) for component in components),
        *(_number(_published(count)) for count in counts),
        *(_seconds(instant) for instant in instants),
        *(_number(_published(figure)) for figure in usage),
        "" if forced is None else BAND_LETTERS.get(forced, ""),
    ]
    return ",".join(values).encode()


def as_written(point: bytes | PointFigures) -> bytes:
    """A staged point as written: an hour final is staged as its figures and formatted only if it
    is still kept when written (`thin`), so a backfill formats a fraction of them."""
    return point if isinstance(point, bytes) else point_from(point)


def _published(value: float | None) -> float | None:
    """A fact as the snapshot's `metrics` carry it (`Facts.to_json`): floats to 4 places."""
    return rounded(value, 4) if isinstance(value, float) else value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]!r} is not a finite number")
    return value


def _float(text: str) -> float | None:
    return _finite(text) if text else None


def _int(text: str) -> int | None:
    return int(float(text)) if text else None


def _instant(text: str) -> int | None:
    return int(text, 36) * 1000 if text else None


# An account's MRR as a point holds it: a plain decimal (ASCII digits, no sign or exponent) with at
# most 6 places (micro-units) and no more than an account's MRR can reach as written
# (`MAX_ACCOUNT_MRR` to the cent, 13 digits before the point). '1E+999990' took the view ~31 s
# to turn into micro-units and print.
_MRR = re.compile(rf"[0-9]{{1,{len(str(MAX_ACCOUNT_MRR // MICROS))}}}(?:\.[0-9]{{1,6}})?")
_MAX_MRR = Decimal(format_money(MAX_ACCOUNT_MRR))


def _amount(text: str) -> str:
    """An MRR as written (raises on anything else, see `_MRR`: the movements compute with it)."""
    if not _MRR.fullmatch(text) or Decimal(text) > _MAX_MRR:
        raise ValueError(f"mrr {text[:40]!r} is not a plain decimal of at most {_MAX_MRR}")
    return text


def decode(raw: bytes | str, as_of: int | None = None) -> Point:
    """The inverse of `point` (a point written before a field was appended reads it as null);
    `as_of`, the sorted set's score, gives the instant to the millisecond."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    values = text.split(",")
    values += [""] * (len(FIELDS) - len(values))
    data = dict(zip(FIELDS, values, strict=False))
    return Point(
        as_of=as_of if as_of is not None else _instant(data["as_of"]) or 0,
        score=_finite(data["score"]),
        band=_BAND_NAMES[data["band"]],
        stage=_STAGE_NAMES[data["stage"]],
        mrr=_amount(data["mrr"]),
        components={name: _float(data[name]) for name in COMPONENTS},
        open_tickets=_int(data["open_tickets"]),
        reopens_90d=_int(data["reopens_90d"]),
        payment_failures_30d=_int(data["payment_failures_30d"]),
        nps_respondents=_int(data["nps_respondents"]),
        scheduled_cancellation_at=_instant(data["scheduled_cancellation_at"]),
        renewal_at=_instant(data["renewal_at"]),
        events_28d=_float(data["events_28d"]),
        days_since_last_use=_float(data["days_since_last_use"]),
        override_band=_BAND_NAMES.get(data["override_band"]),
    )


def bucket(at: int, newest: int) -> tuple[int, int]:
    """The [start, end) of the bucket a point at `at` falls in while the account's newest point is
    at `newest`: an hour within `FINE_DAYS` of it, else a UTC day (the Lua script does the same)."""
    size = DAY if at < newest - FINE_DAYS * DAY else HOUR
    start = at - at % size
    return start, start + size


def thin(points: dict[int, tuple[int, V]]) -> dict[int, tuple[int, V]]:
    """Staged points (bucket start -> (as_of, point)) re-bucketed against their newest one, keeping
    the latest point per bucket and nothing older than `KEEP_DAYS` (bounds what a worker stages
    while Redis is away)."""
    if not points:
        return points
    newest = max(at for at, _ in points.values())
    kept: dict[int, tuple[int, V]] = {}
    for at, raw in points.values():
        if at < newest - KEEP_DAYS * DAY:
            continue
        start, _ = bucket(at, newest)
        if start not in kept or kept[start][0] <= at:
            kept[start] = (at, raw)
    return kept
