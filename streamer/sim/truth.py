"""The ground truth of a simulation: each account's hidden health and when it churned."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from streamer.sim.config import SimulationConfig
from streamer.sim.portfolio import AccountModel, build_portfolio
from streamer.sim.times import DAY, rfc3339


def generate_truth(
    config: SimulationConfig, portfolio: Sequence[AccountModel] | None = None
) -> dict[str, Any]:
    """The hidden state behind `generate_events(config)`, as a JSON-ready dict.

    Per account: plan, currency, the weekly mean of its hidden health (null in weeks it was
    not a customer), every churn (the instant its MRR reached 0, with the notice time, kind
    and reason), every reactivation, and a cancellation still pending at the end.
    """
    models = build_portfolio(config) if portfolio is None else portfolio
    accounts = [_account(model, config) for model in models]
    return {
        "simulation": {
            "accounts": config.accounts,
            "months": config.months,
            "seed": config.seed,
            "start": rfc3339(config.start_ts),
            "end": rfc3339(config.end_ts),
            "usage_density": config.usage_density,
            "initial_share": config.initial_share,
            "history_months": config.history_months,
            "churn_scale": config.churn_scale,
            "dirty_rate": config.dirty_rate,
        },
        "summary": {
            "accounts": len(accounts),
            "joined_during_simulation": sum(1 for a in accounts if a["joined_during_simulation"]),
            "churned_accounts": sum(1 for a in accounts if a["churns"]),
            "churn_events": sum(len(a["churns"]) for a in accounts),
            "reactivated_accounts": sum(1 for a in accounts if a["reactivations"]),
            "customers_at_end": sum(1 for a in accounts if a["status_at_end"] != "churned"),
        },
        "accounts": accounts,
    }


def _account(model: AccountModel, config: SimulationConfig) -> dict[str, Any]:
    lived = [h for h in model.health if not math.isnan(h)]
    pending = model.pending
    if pending is not None:
        status = "canceling"
    elif model.churns and (not model.reactivations or model.reactivations[-1] < model.churns[-1].at):
        status = "churned"
    else:
        status = "active"
    return {
        "account_id": model.account_id,
        "customer_since": rfc3339(model.customer_since),
        "joined_during_simulation": model.joined_during,
        "initial_plan": model.initial_plan,
        "initial_interval": model.initial_interval,
        "currency": model.currency,
        "timezone_offset_hours": model.tz_hours,
        "fit": round(model.fit, 4),
        "health": {
            "mean": round(sum(lived) / len(lived), 4) if lived else None,
            "min": round(min(lived), 4) if lived else None,
            "final": round(lived[-1], 4) if lived else None,
            "weekly_from": rfc3339(config.start_ts),
            "weekly": _weekly(model),
        },
        "engagement": {"mean": _mean(model.engagement), "weekly": _weekly_of(model.engagement)},
        "churns": [
            {
                "at": rfc3339(churn.at),
                "notice_at": rfc3339(churn.notice_at),
                "notice_days": round((churn.at - churn.notice_at) / DAY, 2),
                "kind": churn.kind,
                "reason": churn.reason,
            }
            for churn in model.churns
        ],
        "reactivations": [rfc3339(ts) for ts in model.reactivations],
        "pending_cancellation": None
        if pending is None
        else {"notice_at": rfc3339(pending.notice_at), "effective_at": rfc3339(pending.at)},
        "status_at_end": status,
    }


def _mean(values: Sequence[float]) -> float | None:
    lived = [v for v in values if not math.isnan(v)]
    return round(sum(lived) / len(lived), 4) if lived else None


def _weekly_of(values: Sequence[float]) -> list[float | None]:
    """Mean of each 7-day week from the start; None when never a customer in it."""
    return [_mean(values[first : first + 7]) for first in range(0, len(values), 7)]


def _weekly(model: AccountModel) -> list[float | None]:
    """Mean hidden health of each 7-day week from the start; None when never a customer in it."""
    weeks: list[float | None] = []
    health = model.health
    for first in range(0, len(health), 7):
        days = [h for h in health[first : first + 7] if not math.isnan(h)]
        weeks.append(round(sum(days) / len(days), 4) if days else None)
    return weeks
