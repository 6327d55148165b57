"""The raw figures one evaluation found (`Facts`), which reasons, alerts and snapshots quote.

`evaluate` fills a `FactsDraft` (a dict whose keys and value types mypy checks) as it computes
the signals, then `freeze` makes it and the survey figures one `Facts`. A fact is None when the
account has no data for it (never used the product, no survey answers, no subscription...).
`Facts.to_json` is the one place that turns them into the snapshot's published `metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from streamer.core.clock import iso
from streamer.core.sentiment import Figures


@dataclass(frozen=True, slots=True, init=False)
class Facts:
    """The raw figures behind one evaluation of one account (None: no data for it)."""

    # adoption: who used the product, how much and how recently (30-day windows unless named)
    dau: int | None = None
    """Distinct users active on the last day."""
    wau: int | None = None
    """Distinct users active over the last 7 days."""
    mau: int | None = None
    """Distinct users active over the last 30 days."""
    stickiness: float | None = None
    """Average daily active users over 30 days / MAU (0-1)."""
    seats: int | None = None
    """Seats of the account's subscriptions at evaluation time (None: no seat count)."""
    seat_utilisation: float | None = None
    """MAU / seats (only when the account has seats)."""
    feature_breadth: int | None = None
    """Distinct features used over 30 days."""
    activity_7d: int | None = None
    """Usage events over the last 7 days."""
    weekly_baseline: float | None = None
    """Usage events per week over the 28 days before the last 7."""
    usage_trend: float | None = None
    """activity_7d / weekly_baseline - 1 (only with a non-zero baseline)."""
    days_since_last_use: float | None = None
    """Days since the last usage event (None also when the account never used the product)."""
    time_to_value_days: float | None = None
    """Days from the first subscription start to the first (key-feature) use."""

    # volume of use over 28 days
    events_28d: int | None = None
    """Usage events (sum of `count`) over the last 28 days."""
    events_prev_28d: int | None = None
    """Usage events over the 28 days before those."""
    events_trend_28d: float | None = None
    """events_28d / events_prev_28d - 1 (only when events_prev_28d > 0)."""
    active_days_28d: int | None = None
    """Days with at least one usage event over the last 28."""
    active_users_28d: int | None = None
    """Distinct users active over the last 28 days."""
    user_days_28d: int | None = None
    """Sum over the last 28 days of the distinct users active that day."""
    features_used_28d: int | None = None
    """Of the features the peers used over 28 days, how many the account used."""
    features_in_use_28d: int | None = None
    """Features the account's peers used over 28 days (the mix of use is ranked over these)."""
    peer_group_size: int | None = None
    """Paying accounts in the peer group the percentiles were taken in."""
    percentiles: Mapping[str, float] = field(default_factory=dict)
    """Peer signal (or the composite) -> the account's percentile among its peers (0-100)."""

    # support
    open_tickets: int | None = None
    """Tickets open now."""
    open_low: int | None = None
    """Low-priority tickets open now."""
    open_normal: int | None = None
    """Normal-priority tickets open now."""
    open_high: int | None = None
    """High-priority tickets open now."""
    open_urgent: int | None = None
    """Urgent tickets open now."""
    urgent_overdue: int | None = None
    """Urgent tickets open longer than the support_urgent_open_hours alert threshold."""
    oldest_open_ticket_hours: float | None = None
    """Hours the oldest open ticket has been waiting (None: nothing open)."""
    tickets_resolved_90d: int | None = None
    """Tickets resolved over 90 days."""
    resolution_ms_90d: int | None = None
    """Total open-to-resolved time of those tickets, in milliseconds."""
    first_contact_90d: int | None = None
    """Tickets of those resolved at the first contact."""
    art_hours_90d: float | None = None
    """Average resolution time over 90 days, in hours."""
    fcr_90d: float | None = None
    """First-contact resolution rate over 90 days (0-1)."""
    reopens_90d: int | None = None
    """Tickets reopened over 90 days."""
    tickets_opened_30d: int | None = None
    """Tickets opened over the last 30 days."""
    tickets_baseline_30d: float | None = None
    """Tickets opened per 30 days over the 90 days before those."""

    # sentiment (survey answers within the survey window)
    nps: float | None = None
    """NPS = % promoters - % detractors, latest answer per respondent."""
    nps_respondents: int | None = None
    """Respondents counted in the NPS."""
    nps_promoters: int | None = None
    """Respondents answering 9-10."""
    nps_detractors: int | None = None
    """Respondents answering 0-6."""
    csat: float | None = None
    """% of CSAT answers satisfied (4-5)."""
    csat_satisfied: int | None = None
    """CSAT answers of 4-5."""
    csat_answers: int | None = None
    """CSAT answers."""
    ces: float | None = None
    """Average customer effort score (1-7)."""
    ces_sum: int | None = None
    """Sum of the CES answers."""
    ces_answers: int | None = None
    """CES answers."""

    # financial
    mrr_trend_90d: float | None = None
    """MRR now / MRR 90 days ago - 1 (only when it was paying then)."""
    payment_failures_30d: int | None = None
    """Failed payments over the last 30 days."""
    scheduled_cancellation_at: int | None = None
    """When a scheduled cancellation takes effect (epoch ms)."""
    renewal_at: int | None = None
    """The next renewal (epoch ms)."""
    days_to_renewal: float | None = None
    """Days until renewal_at."""
    renewal_term_days: float | None = None
    """Length of the term that ends at renewal_at (not published; None: its start unknown)."""
    term_ended_at: int | None = None
    """With no renewal ahead, when the paying term ended that was not renewed yet (not published)."""

    def __init__(
        self,
        *,
        dau: int | None = None,
        wau: int | None = None,
        mau: int | None = None,
        stickiness: float | None = None,
        seats: int | None = None,
        seat_utilisation: float | None = None,
        feature_breadth: int | None = None,
        activity_7d: int | None = None,
        weekly_baseline: float | None = None,
        usage_trend: float | None = None,
        days_since_last_use: float | None = None,
        time_to_value_days: float | None = None,
        events_28d: int | None = None,
        events_prev_28d: int | None = None,
        events_trend_28d: float | None = None,
        active_days_28d: int | None = None,
        active_users_28d: int | None = None,
        user_days_28d: int | None = None,
        features_used_28d: int | None = None,
        features_in_use_28d: int | None = None,
        peer_group_size: int | None = None,
        percentiles: Mapping[str, float] | None = None,
        open_tickets: int | None = None,
        open_low: int | None = None,
        open_normal: int | None = None,
        open_high: int | None = None,
        open_urgent: int | None = None,
        urgent_overdue: int | None = None,
        oldest_open_ticket_hours: float | None = None,
        tickets_resolved_90d: int | None = None,
        resolution_ms_90d: int | None = None,
        first_contact_90d: int | None = None,
        art_hours_90d: float | None = None,
        fcr_90d: float | None = None,
        reopens_90d: int | None = None,
        tickets_opened_30d: int | None = None,
        tickets_baseline_30d: float | None = None,
        nps: float | None = None,
        nps_respondents: int | None = None,
        nps_promoters: int | None = None,
        nps_detractors: int | None = None,
        csat: float | None = None,
        csat_satisfied: int | None = None,
        csat_answers: int | None = None,
        ces: float | None = None,
        ces_sum: int | None = None,
        ces_answers: int | None = None,
        mrr_trend_90d: float | None = None,
        payment_failures_30d: int | None = None,
        scheduled_cancellation_at: int | None = None,
        renewal_at: int | None = None,
        days_to_renewal: float | None = None,
        renewal_term_days: float | None = None,
        term_ended_at: int | None = None,
    ) -> None:
        # Written out rather than generated by @dataclass: mypyc compiles a method written in the
        # source, not the `__init__` that `dataclass` generates at import (interpreted, 52
        # `object.__setattr__` calls). In compiled code each line below is one slot store; in
        # pure Python it is how a frozen dataclass sets its fields. tests/core/test_facts.py
        # checks it sets every field and keeps the declared defaults.
        object.__setattr__(self, "dau", dau)
        object.__setattr__(self, "wau", wau)
        object.__setattr__(self, "mau", mau)
        object.__setattr__(self, "stickiness", stickiness)
        object.__setattr__(self, "seats", seats)
        object.__setattr__(self, "seat_utilisation", seat_utilisation)
        object.__setattr__(self, "feature_breadth", feature_breadth)
        object.__setattr__(self, "activity_7d", activity_7d)
        object.__setattr__(self, "weekly_baseline", weekly_baseline)
        object.__setattr__(self, "usage_trend", usage_trend)
        object.__setattr__(self, "days_since_last_use", days_since_last_use)
        object.__setattr__(self, "time_to_value_days", time_to_value_days)
        object.__setattr__(self, "events_28d", events_28d)
        object.__setattr__(self, "events_prev_28d", events_prev_28d)
        object.__setattr__(self, "events_trend_28d", events_trend_28d)
        object.__setattr__(self, "active_days_28d", active_days_28d)
        object.__setattr__(self, "active_users_28d", active_users_28d)
        object.__setattr__(self, "user_days_28d", user_days_28d)
        object.__setattr__(self, "features_used_28d", features_used_28d)
        object.__setattr__(self, "features_in_use_28d", features_in_use_28d)
        object.__setattr__(self, "peer_group_size", peer_group_size)
        object.__setattr__(self, "percentiles", {} if percentiles is None else percentiles)
        object.__setattr__(self, "open_tickets", open_tickets)
        object.__setattr__(self, "open_low", open_low)
        object.__setattr__(self, "open_normal", open_normal)
        object.__setattr__(self, "open_high", open_high)
        object.__setattr__(self, "open_urgent", open_urgent)
        object.__setattr__(self, "urgent_overdue", urgent_overdue)
        object.__setattr__(self, "oldest_open_ticket_hours", oldest_open_ticket_hours)
        object.__setattr__(self, "tickets_resolved_90d", tickets_resolved_90d)
        object.__setattr__(self, "resolution_ms_90d", resolution_ms_90d)
        object.__setattr__(self, "first_contact_90d", first_contact_90d)
        object.__setattr__(self, "art_hours_90d", art_hours_90d)
        object.__setattr__(self, "fcr_90d", fcr_90d)
        object.__setattr__(self, "reopens_90d", reopens_90d)
        object.__setattr__(self, "tickets_opened_30d", tickets_opened_30d)
        object.__setattr__(self, "tickets_baseline_30d", tickets_baseline_30d)
        object.__setattr__(self, "nps", nps)
        object.__setattr__(self, "nps_respondents", nps_respondents)
        object.__setattr__(self, "nps_promoters", nps_promoters)
        object.__setattr__(self, "nps_detractors", nps_detractors)
        object.__setattr__(self, "csat", csat)
        object.__setattr__(self, "csat_satisfied", csat_satisfied)
        object.__setattr__(self, "csat_answers", csat_answers)
        object.__setattr__(self, "ces", ces)
        object.__setattr__(self, "ces_sum", ces_sum)
        object.__setattr__(self, "ces_answers", ces_answers)
        object.__setattr__(self, "mrr_trend_90d", mrr_trend_90d)
        object.__setattr__(self, "payment_failures_30d", payment_failures_30d)
        object.__setattr__(self, "scheduled_cancellation_at", scheduled_cancellation_at)
        object.__setattr__(self, "renewal_at", renewal_at)
        object.__setattr__(self, "days_to_renewal", days_to_renewal)
        object.__setattr__(self, "renewal_term_days", renewal_term_days)
        object.__setattr__(self, "term_ended_at", term_ended_at)

    def to_json(self) -> dict[str, Any]:
        """The snapshot's `metrics` object: the published facts (floats to 4 places), the open
        tickets by priority and the two instants as RFC 3339 (see schemas/health_snapshot)."""
        return {
            "dau": _rounded(self.dau),
            "wau": _rounded(self.wau),
            "mau": _rounded(self.mau),
            "stickiness": _rounded(self.stickiness),
            "seats": _rounded(self.seats),
            "seat_utilisation": _rounded(self.seat_utilisation),
            "feature_breadth": _rounded(self.feature_breadth),
            "usage_trend": _rounded(self.usage_trend),
            "days_since_last_use": _rounded(self.days_since_last_use),
            "time_to_value_days": _rounded(self.time_to_value_days),
            "open_tickets": _rounded(self.open_tickets),
            "oldest_open_ticket_hours": _rounded(self.oldest_open_ticket_hours),
            "art_hours_90d": _rounded(self.art_hours_90d),
            "fcr_90d": _rounded(self.fcr_90d),
            "tickets_opened_30d": _rounded(self.tickets_opened_30d),
            "tickets_baseline_30d": _rounded(self.tickets_baseline_30d),
            "reopens_90d": _rounded(self.reopens_90d),
            "nps": _rounded(self.nps),
            "nps_respondents": _rounded(self.nps_respondents),
            "csat": _rounded(self.csat),
            "ces": _rounded(self.ces),
            "payment_failures_30d": _rounded(self.payment_failures_30d),
            "mrr_trend_90d": _rounded(self.mrr_trend_90d),
            "days_to_renewal": _rounded(self.days_to_renewal),
            "events_28d": _rounded(self.events_28d),
            "events_prev_28d": _rounded(self.events_prev_28d),
            "events_trend_28d": _rounded(self.events_trend_28d),
            "active_days_28d": _rounded(self.active_days_28d),
            "active_users_28d": _rounded(self.active_users_28d),
            "user_days_28d": _rounded(self.user_days_28d),
            "features_used_28d": _rounded(self.features_used_28d),
            "features_in_use_28d": _rounded(self.features_in_use_28d),
            "open_tickets_by_priority": {
                "low": self.open_low or 0,
                "normal": self.open_normal or 0,
                "high": self.open_high or 0,
                "urgent": self.open_urgent or 0,
            },
            "scheduled_cancellation_at": _instant(self.scheduled_cancellation_at),
            "renewal_at": _instant(self.renewal_at),
        }


class FactsDraft(TypedDict, total=False):
    """The facts as `evaluate` finds them, before `freeze(draft, figures, percentiles)` freezes them
    (the survey figures come apart, as `streamer.core.sentiment.Figures`)."""

    dau: int
    wau: int
    mau: int
    stickiness: float
    seats: int | None
    seat_utilisation: float
    feature_breadth: int
    activity_7d: int
    weekly_baseline: float
    usage_trend: float
    days_since_last_use: float | None
    time_to_value_days: float
    events_28d: int
    events_prev_28d: int
    events_trend_28d: float
    active_days_28d: int
    active_users_28d: int
    user_days_28d: int
    features_used_28d: int
    features_in_use_28d: int
    peer_group_size: int
    open_tickets: int
    open_low: int
    open_normal: int
    open_high: int
    open_urgent: int
    urgent_overdue: int
    oldest_open_ticket_hours: float | None
    tickets_resolved_90d: int
    resolution_ms_90d: int
    first_contact_90d: int
    art_hours_90d: float
    fcr_90d: float
    reopens_90d: int
    tickets_opened_30d: int
    tickets_baseline_30d: float
    mrr_trend_90d: float
    payment_failures_30d: int
    scheduled_cancellation_at: int | None
    renewal_at: int | None
    days_to_renewal: float
    renewal_term_days: float
    term_ended_at: int


def freeze(draft: FactsDraft, figures: Figures, percentiles: dict[str, float]) -> Facts:
    """`Facts(**draft, **figures, percentiles=percentiles)`, without the merged keyword dict and
    its parsing: compiled, a call with the keywords spelled out goes straight to `Facts.__init__`
    (tests/core/test_facts.py checks both give the same facts)."""
    return Facts(
        dau=draft.get("dau"),
        wau=draft.get("wau"),
        mau=draft.get("mau"),
        stickiness=draft.get("stickiness"),
        seats=draft.get("seats"),
        seat_utilisation=draft.get("seat_utilisation"),
        feature_breadth=draft.get("feature_breadth"),
        activity_7d=draft.get("activity_7d"),
        weekly_baseline=draft.get("weekly_baseline"),
        usage_trend=draft.get("usage_trend"),
        days_since_last_use=draft.get("days_since_last_use"),
        time_to_value_days=draft.get("time_to_value_days"),
        events_28d=draft.get("events_28d"),
        events_prev_28d=draft.get("events_prev_28d"),
        events_trend_28d=draft.get("events_trend_28d"),
        active_days_28d=draft.get("active_days_28d"),
        active_users_28d=draft.get("active_users_28d"),
        user_days_28d=draft.get("user_days_28d"),
        features_used_28d=draft.get("features_used_28d"),
        features_in_use_28d=draft.get("features_in_use_28d"),
        peer_group_size=draft.get("peer_group_size"),
        percentiles=percentiles,
        open_tickets=draft.get("open_tickets"),
        open_low=draft.get("open_low"),
        open_normal=draft.get("open_normal"),
        open_high=draft.get("open_high"),
        open_urgent=draft.get("open_urgent"),
        urgent_overdue=draft.get("urgent_overdue"),
        oldest_open_ticket_hours=draft.get("oldest_open_ticket_hours"),
        tickets_resolved_90d=draft.get("tickets_resolved_90d"),
        resolution_ms_90d=draft.get("resolution_ms_90d"),
        first_contact_90d=draft.get("first_contact_90d"),
        art_hours_90d=draft.get("art_hours_90d"),
        fcr_90d=draft.get("fcr_90d"),
        reopens_90d=draft.get("reopens_90d"),
        tickets_opened_30d=draft.get("tickets_opened_30d"),
        tickets_baseline_30d=draft.get("tickets_baseline_30d"),
        nps=figures.get("nps"),
        nps_respondents=figures.get("nps_respondents"),
        nps_promoters=figures.get("nps_promoters"),
        nps_detractors=figures.get("nps_detractors"),
        csat=figures.get("csat"),
        csat_satisfied=figures.get("csat_satisfied"),
        csat_answers=figures.get("csat_answers"),
        ces=figures.get("ces"),
        ces_sum=figures.get("ces_sum"),
        ces_answers=figures.get("ces_answers"),
        mrr_trend_90d=draft.get("mrr_trend_90d"),
        payment_failures_30d=draft.get("payment_failures_30d"),
        scheduled_cancellation_at=draft.get("scheduled_cancellation_at"),
        renewal_at=draft.get("renewal_at"),
        days_to_renewal=draft.get("days_to_renewal"),
        renewal_term_days=draft.get("renewal_term_days"),
        term_ended_at=draft.get("term_ended_at"),
    )


def rounded(value: float, places: int) -> float:
    """`value` to `places` decimals as published: a tiny negative rounds to 0.0, not -0.0 (which
    JSON keeps as "-0.0" and a reader shows as "-0%")."""
    return round(value, places) + 0.0


def _rounded(value: object) -> object:  # ints pass through as they are
    # `object`, not `float | None`: an int is a float to the type checker, and compiled code
    # (mypyc) checks the narrowed `None` at run time.
    return rounded(value, 4) if isinstance(value, float) else value


def _instant(value: int | None) -> str | None:
    return iso(int(value)) if value is not None else None
