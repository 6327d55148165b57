"""Build the published health snapshot of an account from its latest evaluation."""

from __future__ import annotations

from typing import Any

from streamer.core.account import Account
from streamer.core.clock import iso
from streamer.core.config import RiskModel
from streamer.core.identity import override_record, profile_record
from streamer.core.money import format_money
from streamer.core.peers import COMPOSITE, PEER_SIGNALS
from streamer.core.reasons import explain
from streamer.core.risk import churn_risk
from streamer.core.score import Evaluation

# Facts published under `metrics`, with the name they are published as.
PUBLISHED_FACTS = (
    "dau",
    "wau",
    "mau",
    "stickiness",
    "seats",
    "seat_utilisation",
    "feature_breadth",
    "usage_trend",
    "days_since_last_use",
    "time_to_value_days",
    "open_tickets",
    "oldest_open_ticket_hours",
    "art_hours_90d",
    "fcr_90d",
    "tickets_opened_30d",
    "tickets_baseline_30d",
    "reopens_90d",
    "nps",
    "nps_respondents",
    "csat",
    "ces",
    "payment_failures_30d",
    "mrr_trend_90d",
    "days_to_renewal",
    "events_28d",
    "events_prev_28d",
    "events_trend_28d",
    "active_days_28d",
    "active_users_28d",
    "user_days_28d",
)
TIME_FACTS = ("scheduled_cancellation_at", "renewal_at")


def _rounded(value: float | int | None) -> float | int | None:
    return round(value, 4) if isinstance(value, float) else value


def build_snapshot(
    account: Account, evaluation: Evaluation, currency: str, model: RiskModel | None = None
) -> dict[str, Any]:
    """The `cs.health` record: score, band, components, reasons, stage, MRR, key metrics, and the
    calibrated churn risk when the configuration carries a fitted model (else null)."""
    facts = evaluation.facts
    metrics: dict[str, Any] = {name: _rounded(facts.get(name)) for name in PUBLISHED_FACTS}
    metrics["open_tickets_by_priority"] = {
        priority: int(facts.get(f"open_{priority}") or 0) for priority in ("low", "normal", "high", "urgent")
    }
    for name in TIME_FACTS:
        value = facts.get(name)
        metrics[name] = iso(int(value)) if value is not None else None
    missing = [name for name, value in evaluation.components.items() if value is None]
    return {
        "account_id": account.account_id,
        "as_of": iso(evaluation.now),
        "score": evaluation.score,
        "band": evaluation.band,
        "churn_risk_60d": churn_risk(evaluation.signals, model),
        "components": {
            name: {
                "score": None if value is None else round(value, 1),
                "weight": round(evaluation.weights[name], 4),
                "missing": value is None,
            }
            for name, value in evaluation.components.items()
        },
        "missing": missing,
        "reasons": explain(evaluation),
        "lifecycle_stage": evaluation.stage,
        "plan": evaluation.plan,
        "currency": currency,
        "mrr": format_money(evaluation.mrr),
        "arr": format_money(evaluation.mrr * 12),
        "metrics": metrics,
        "comments": [
            {"at": iso(at), "survey": kind, "score": score, "comment": text}
            for at, _, kind, score, text in reversed(account.sentiment.comments)
        ],
        "peers": _peers(evaluation),
        "profile": profile_record(account.profile),
        "override": override_record(evaluation.override),
    }


def _peers(evaluation: Evaluation) -> dict[str, Any] | None:
    if evaluation.peer_group is None:
        return None
    facts = evaluation.facts
    percentiles = {
        name: float(value)
        for name in (*PEER_SIGNALS, COMPOSITE)
        if (value := facts.get(f"{name}_percentile")) is not None
    }
    return {
        "group": evaluation.peer_group,
        "size": int(facts.get("peer_group_size") or 0),
        "percentiles": percentiles,
    }
