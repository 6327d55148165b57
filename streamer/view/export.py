"""CSV exports of the view's lists: one row per item, nested values flattened into named columns."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any

from streamer.projection.codec import override_band

ACCOUNT_COLUMNS = (
    "account_id",
    "name",
    "owner",
    "segment",
    "tier",
    "score",
    "band",
    "lifecycle_stage",
    "plan",
    "currency",
    "mrr",
    "churn_risk_60d",
    "renewal_at",
    "days_to_renewal",
    "scheduled_cancellation_at",
    "events_28d",
    "active_days_28d",
    "events_28d_percentile",
    "override_band",
    "reasons",
)
ALERT_COLUMNS = (
    "raised_at",
    "alert_id",
    "account_id",
    "name",
    "owner",
    "segment",
    "rule",
    "severity",
    "score",
    "band",
    "previous_score",
    "previous_band",
    "mrr",
    "reasons",
)
HISTORY_COLUMNS = (
    "as_of",
    "score",
    "band",
    "lifecycle_stage",
    "mrr",
    "adoption",
    "support",
    "sentiment",
    "financial",
    "override_band",
)
TIMELINE_COLUMNS = ("at", "kind", "text")


def _cell(value: Any) -> str:
    """A CSV cell; a text a spreadsheet would run as a formula is quoted with a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _reasons(reasons: Any) -> str:
    return "; ".join(r["message"] if isinstance(r, dict) else str(r) for r in reasons or [])


def _account(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "override_band": override_band(row), "reasons": _reasons(row.get("reasons"))}


def _alert(alert: dict[str, Any]) -> dict[str, Any]:
    about = alert.get("profile") or {}
    flat = {name: about.get(name) for name in ("name", "owner", "segment")}
    return {**alert, **flat, "reasons": _reasons(alert.get("reasons"))}


def _history(point: dict[str, Any]) -> dict[str, Any]:
    return {**point, **point["components"]}


def to_csv(
    items: Sequence[dict[str, Any]],
    columns: Sequence[str],
    flatten: Callable[[dict[str, Any]], dict[str, Any]],
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for item in items:
        flat = flatten(item)
        writer.writerow([_cell(flat.get(column)) for column in columns])
    return out.getvalue().encode("utf-8")


def accounts(items: Sequence[dict[str, Any]]) -> bytes:
    return to_csv(items, ACCOUNT_COLUMNS, _account)


def alerts(items: Sequence[dict[str, Any]]) -> bytes:
    return to_csv(items, ALERT_COLUMNS, _alert)


def history(items: Sequence[dict[str, Any]]) -> bytes:
    return to_csv(items, HISTORY_COLUMNS, _history)


def timeline(items: Sequence[dict[str, Any]]) -> bytes:
    return to_csv(items, TIMELINE_COLUMNS, dict)
