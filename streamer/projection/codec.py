"""How projected values are encoded in Redis: period sums as JSON, list rows, instants, money."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from streamer.contract.vocabulary import Band
from streamer.core.portfolio import PeriodSums
from streamer.jsonbytes import kept_json
from streamer.wideints import narrow, wide

SUMMARY_REASONS = 4


def encode_sums(sums: PeriodSums) -> bytes:
    """`PeriodSums` as JSON; month keys as strings, pair keys as "m1:m2", sums past 64 bits as
    strings (`wide`)."""
    return kept_json(
        {
            "hi": sums.hi,
            "lo": sums.lo,
            "first_month": sums.first_month,
            "points": {str(m): wide(v) for m, v in sums.points.items()},
            "pairs": {f"{m1}:{m2}": wide(v) for (m1, m2), v in sums.pairs.items()},
            "movements": {str(m): wide(v) for m, v in sums.movements.items()},
            "renewals": {str(m): wide(v) for m, v in sums.renewals.items()},
        }
    )


def decode_sums(raw: bytes | str) -> PeriodSums:
    """The inverse of `encode_sums`."""
    data = orjson.loads(raw)
    pairs: dict[tuple[int, int], list[int]] = {}
    for key, value in data["pairs"].items():
        m1, _, m2 = key.partition(":")
        pairs[(int(m1), int(m2))] = narrow(value)
    return PeriodSums(
        hi=int(data["hi"]),
        lo=int(data["lo"]),
        first_month=None if data["first_month"] is None else int(data["first_month"]),
        points={int(m): narrow(v) for m, v in data["points"].items()},
        pairs=pairs,
        movements={int(m): narrow(v) for m, v in data["movements"].items()},
        renewals={int(m): narrow(v) for m, v in data["renewals"].items()},
    )


def epoch_ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 instant such as `as_of` or `raised_at`."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def money(text: str | None) -> float:
    """A decimal money string as a float (for sorted-set scores; exact values stay in the JSON)."""
    return float(Decimal(text)) if text else 0.0


def profile(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot's `profile` (name, owner, segment, tier), or an empty one when it has none."""
    value = snapshot.get("profile")
    return value if isinstance(value, dict) else {}


def override(snapshot: dict[str, Any]) -> dict[str, Any] | None:
    """The snapshot's health `override` when one is in force, else None."""
    value = snapshot.get("override")
    return value if isinstance(value, dict) else None


def summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The compact row of an account in lists: what a list shows, filters and sorts on."""
    metrics = snapshot.get("metrics") or {}
    about = profile(snapshot)
    forced = override(snapshot)
    return {
        "account_id": snapshot["account_id"],
        "name": about.get("name"),
        "owner": about.get("owner"),
        "segment": about.get("segment"),
        "tier": about.get("tier"),
        "override": None if forced is None else {k: forced.get(k) for k in ("band", "reason", "author")},
        "as_of": snapshot["as_of"],
        "score": snapshot["score"],
        "band": snapshot["band"],
        "churn_risk_60d": snapshot.get("churn_risk_60d"),
        "lifecycle_stage": snapshot["lifecycle_stage"],
        "plan": snapshot.get("plan"),
        "currency": snapshot["currency"],
        "mrr": snapshot["mrr"],
        "renewal_at": metrics.get("renewal_at"),
        "days_to_renewal": metrics.get("days_to_renewal"),
        "scheduled_cancellation_at": metrics.get("scheduled_cancellation_at"),
        "events_28d": metrics.get("events_28d"),
        "active_days_28d": metrics.get("active_days_28d"),
        "events_28d_percentile": ((snapshot.get("peers") or {}).get("percentiles") or {}).get("events_28d"),
        "reasons": [reason["message"] for reason in snapshot.get("reasons", [])[:SUMMARY_REASONS]],
    }


def override_band(snapshot: dict[str, Any]) -> str | None:
    """The band a person's override puts the account in, None when none is in force: the band it
    asked for, or, for a score override, the band of that score (the snapshot's, an override's)."""
    override = snapshot.get("override")
    return (override.get("band") or snapshot.get("band")) if isinstance(override, dict) else None


def at_risk(snapshot: dict[str, Any]) -> bool:
    """An account whose MRR counts as at risk: paying and not green."""
    return snapshot["band"] != Band.green and money(snapshot["mrr"]) > 0


def index_values(snapshot: dict[str, Any]) -> dict[str, str]:
    """The account's value in each sorted set of `keys.INDEXES`, as Redis scores; '' where it has
    none (no renewal date, or no `churn_risk_60d`), so it leaves that set."""
    renewal = (snapshot.get("metrics") or {}).get("renewal_at")
    risk = snapshot.get("churn_risk_60d")
    return {
        "score": repr(float(snapshot["score"])),
        "mrr": repr(money(snapshot["mrr"])),
        "renewal": str(epoch_ms(renewal)) if renewal else "",
        "churn_risk": "" if risk is None else repr(float(risk)),
    }


def shown(value: Any) -> str:
    """A key, member or field as a log or a message names it (bytes that are no UTF-8 replaced)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
