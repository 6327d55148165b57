"""Plain-words reasons: the weakest signals of an evaluation, as a person would say them."""

from __future__ import annotations

import math
from collections.abc import Callable

from streamer.core.clock import iso
from streamer.core.facts import Facts, rounded
from streamer.core.overrides import override_reason
from streamer.core.score import SIGNAL_COMPONENT, Evaluation, Raw

Reason = dict[str, float | str | None]

REASON_BELOW = 70.0  # signals scoring under this are worth a sentence
# A signal ranked among peers scores its standing (healthier higher): only the less healthy half
# is a reason ("overall use low ..., top 43% of all paying accounts" contradicted itself).
PEER_REASON_BELOW = 50.0
MAX_REASONS = 4


def _pct(value: float) -> str:
    return f"{abs(value) * 100:.0f}%"


def days(value: float) -> str:
    """A whole number of days in words: "1 day", "3 days"."""
    return f"{value:.0f} day" + ("" if round(value) == 1 else "s")


def _count(value: float | int | None, noun: str, window: str = "") -> str:
    count = int(value or 0)
    counted = f"{count} {noun}{'' if count == 1 else 's'}"
    return f"{counted} {window}" if window else counted


def _recency(value: float, facts: Facts) -> str:
    if facts.days_since_last_use is None:
        return f"no product usage since the subscription started {days(value)} ago"
    return f"no product usage for {days(value)}"


def _trend(value: float, facts: Facts) -> str:
    direction = "down" if value < 0 else "up"
    return f"usage {direction} {_pct(value)} vs the 4-week baseline"


def _open_high(value: float, facts: Facts) -> str:
    urgent, high = facts.open_urgent or 0, facts.open_high or 0
    parts = [f"{n} {label}" for n, label in ((urgent, "urgent"), (high, "high-priority")) if n]
    noun = "ticket" if urgent + high == 1 else "tickets"
    return f"{' and '.join(parts)} {noun} open"


def _oldest(value: float, facts: Facts) -> str:
    return f"oldest open ticket waiting {value / 24:.1f} days"


def _renewal(value: float, facts: Facts) -> str:
    renewal_at = facts.renewal_at
    if renewal_at is None and facts.term_ended_at is not None:
        return f"term ended on {iso(facts.term_ended_at)[:10]}, not renewed yet"
    when = f" (on {iso(renewal_at)[:10]})" if renewal_at is not None else ""
    return f"renewal in {days(value)}{when}"


def _cancellation(value: float, facts: Facts) -> str:
    cancel_at = facts.scheduled_cancellation_at
    if cancel_at is None:
        return "no active subscription (churned)"
    return f"cancellation scheduled for {iso(cancel_at)[:10]}"


def _mix(value: float, facts: Facts) -> str:
    used, in_use = facts.features_used_28d or 0, facts.features_in_use_28d or 0
    if used < in_use:
        return f"{used} of {in_use} features used in 28 days"
    return f"all {in_use} features used in 28 days, but little of each"


MESSAGES: dict[str, Callable[[float, Facts], str]] = {
    "recency_days": _recency,
    "usage_trend": _trend,
    "stickiness": lambda v, f: f"stickiness {_pct(v)} (average DAU / MAU)",
    "seat_utilisation": lambda v, f: f"only {f.mau} of {f.seats} seats active in 30 days",
    "feature_breadth": lambda v, f: (
        f"uses {f.feature_breadth} feature{'' if f.feature_breadth == 1 else 's'} in 30 days"
    ),
    "open_high_priority": _open_high,
    "oldest_open_hours": _oldest,
    "resolution_hours": lambda v, f: f"average resolution time {v:.0f} h over 90 days",
    "first_contact_rate": lambda v, f: f"first-contact resolution {_pct(v)} over 90 days",
    "ticket_volume_ratio": lambda v, f: (
        f"{_count(f.tickets_opened_30d, 'ticket', 'in 30 days')} "
        f"vs {float(f.tickets_baseline_30d or 0):.1f} usually"
    ),
    "nps": lambda v, f: f"NPS {v:.0f} from {_count(f.nps_respondents, 'respondent')}",
    "csat_pct": lambda v, f: f"CSAT {v:.0f}% satisfied",
    "ces": lambda v, f: f"customer effort score {v:.1f} of 7",
    "mrr_trend": lambda v, f: f"MRR {'down' if v < 0 else 'up'} {_pct(v)} in 90 days",
    "payment_failures": lambda v, f: f"{v:.0f} failed payment{'s' if v != 1 else ''} in 30 days",
    "scheduled_cancellation": _cancellation,
    "days_to_renewal": _renewal,
    "events_28d": lambda v, f: _count(f.events_28d, "product event", "in 28 days"),
    "active_days_28d": lambda v, f: f"active on {days(float(f.active_days_28d or 0))} of the last 28",
    "user_days_28d": lambda v, f: _count(f.user_days_28d, "active user-day", "in 28 days"),
    "events_per_seat_28d": lambda v, f: f"{v:.1f} product events per seat in 28 days",
    "events_per_user_day_28d": lambda v, f: f"{v:.1f} product events per active user-day in 28 days",
    "feature_mix_28d": _mix,
    "usage_28d": lambda v, f: (
        f"overall use low: {f.events_28d} product events on {days(float(f.active_days_28d or 0))} in 28 days"
    ),
    "events_trend_28d": lambda v, f: (
        f"product events {'down' if v < 0 else 'up'} {_pct(v)} vs the 28 days before "
        f"({f.events_28d} vs {f.events_prev_28d})"
    ),
}

BASELINES: dict[str, Callable[[Facts], float | int | None]] = {
    "usage_trend": lambda f: f.weekly_baseline,
    "ticket_volume_ratio": lambda f: f.tickets_baseline_30d,
    "seat_utilisation": lambda f: f.seats,
    "events_trend_28d": lambda f: f.events_prev_28d,
}


def peer_position(percentile: float, group: str | None) -> str:
    """Where an account stands among its peers, in words: "bottom 10% of starter accounts"."""
    peers = "all paying accounts" if group in (None, "*") else f"paying {group} accounts"
    if percentile <= 50:
        return f"bottom {max(1, math.ceil(percentile))}% of {peers}"
    return f"top {max(1, math.ceil(100 - percentile))}% of {peers}"


def reason(signal: str, value: Raw, evaluation: Evaluation) -> Reason:
    facts = evaluation.facts
    baseline_of = BASELINES.get(signal)
    baseline = baseline_of(facts) if baseline_of is not None else None
    message = MESSAGES[signal](value, facts)
    percentile = facts.percentiles.get(signal)
    if percentile is not None:
        message += f", {peer_position(percentile, evaluation.peer_group)}"
    return {
        "signal": signal,
        "value": rounded(value, 3) if isinstance(value, float) else value,  # a count as it is
        "baseline": None if baseline is None else rounded(float(baseline), 3),
        "message": message,
        "percentile": percentile,
    }


def explain(evaluation: Evaluation, limit: int = MAX_REASONS) -> list[Reason]:
    """The signals that cost the most score, worst first, in plain words."""
    weights = evaluation.weights
    ranked = evaluation.facts.percentiles
    costs = [
        ((100.0 - sub) * weights[SIGNAL_COMPONENT[signal]], signal, value)
        for signal, (value, sub) in evaluation.signals.items()
        if sub < (PEER_REASON_BELOW if signal in ranked else REASON_BELOW) and signal not in evaluation.inert
    ]
    costs.sort(key=lambda item: (-item[0], item[1]))
    reasons = [reason(signal, value, evaluation) for _, signal, value in costs[:limit]]
    if evaluation.override is not None:  # a person's word comes first, beside the model's reasons
        reasons.insert(0, override_reason(evaluation.override))
    return reasons
