"""The health score: signals -> documented curves -> components -> weighted 0-100 score and band.

Missing data is neutral: a signal without data is left out and the weights of the rest are
renormalised; a component without any signal is left out the same way and listed as missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.contract.vocabulary import Band, LifecycleStage
from streamer.core.clock import DAY, HOUR, bucket_of
from streamer.core.config import COMPONENTS, ScoreConfig
from streamer.core.curves import sub_score
from streamer.core.facts import Facts, FactsDraft, freeze
from streamer.core.identity import Applied, Profile
from streamer.core.peers import (
    ALL,
    COMPOSITE,
    MIX,
    WINDOW_DAYS,
    PeerReference,
    composite,
    feature_mix,
    peer_group_at,
    peer_values,
    percentile,
)
from streamer.core.revenue import Revenue, renews_beyond
from streamer.core.sentiment import Figures, Sentiment
from streamer.core.support import Support
from streamer.core.usage import Usage

NEVER_USED_GRACE = 3 * DAY  # a paying account that never used the product counts as silent after this

# A signal's raw value as computed: a count stays an int (3 failed payments are published as 3).
# `float | int`, not `float`: compiled code (mypyc) stores a `float` as a C double, which would
# turn that 3 into 3.0.
Raw = float | int

# Which component each signal belongs to (signals are named like their curve).
SIGNAL_COMPONENT: dict[str, str] = {
    "stickiness": "adoption",
    "seat_utilisation": "adoption",
    "feature_breadth": "adoption",
    "usage_trend": "adoption",
    "recency_days": "adoption",
    "open_high_priority": "support",
    "oldest_open_hours": "support",
    "resolution_hours": "support",
    "first_contact_rate": "support",
    "ticket_volume_ratio": "support",
    "nps": "sentiment",
    "csat_pct": "sentiment",
    "ces": "sentiment",
    "mrr_trend": "financial",
    "payment_failures": "financial",
    "scheduled_cancellation": "financial",
    "days_to_renewal": "financial",
    "events_28d": "adoption",
    "active_days_28d": "adoption",
    "user_days_28d": "adoption",
    "events_per_seat_28d": "adoption",
    "events_per_user_day_28d": "adoption",
    "events_trend_28d": "adoption",
    MIX: "adoption",
    COMPOSITE: "adoption",
}


@dataclass(slots=True, init=False)
class Inputs:
    """What the score reads from an account (its four areas plus lifecycle facts)."""

    revenue: Revenue
    usage: Usage
    support: Support
    sentiment: Sentiment
    first_seen: int
    usage_since: int | None  # the partition's first usage event: before it, usage was not tracked
    profile: Profile | None  # who the account is (its segment may set its peers)

    # Written out: mypyc compiles this one, not the interpreted one @dataclass would generate.
    def __init__(
        self,
        revenue: Revenue,
        usage: Usage,
        support: Support,
        sentiment: Sentiment,
        first_seen: int,
        usage_since: int | None,
        profile: Profile | None = None,
    ) -> None:
        self.revenue = revenue
        self.usage = usage
        self.support = support
        self.sentiment = sentiment
        self.first_seen = first_seen
        self.usage_since = usage_since
        self.profile = profile

    def silent_since(self) -> int | None:
        """Since when an account that never used the product counts as silent: its first
        subscription start, or the first usage its partition saw if that is later (billing
        history from before usage was tracked is not silence); None while no usage is tracked."""
        first_start, tracked = self.revenue.first_start, self.usage_since
        if first_start is None or tracked is None:
            return None
        return max(first_start, tracked)

    def silence_start(self) -> int | None:
        """Since when the account's silence is observed: its last use (never used: `silent_since`),
        but not before its first event; None while no usage is tracked. The silence rule counts
        from it (`alerts.Observed`) and the engine's alert lines too."""
        last_use, tracked = self.usage.last_use, self.usage_since
        start = self.silent_since() if last_use is None else last_use
        if start is None or tracked is None:
            return None
        return max(start, self.first_seen, tracked)


@dataclass(slots=True, init=False)
class Evaluation:
    """One scoring of one account at event time `now`."""

    now: int
    score: float
    band: Band
    stage: LifecycleStage
    plan: str | None
    mrr: int
    components: dict[str, float | None]
    weights: dict[str, float]  # effective component weights (0 for missing components)
    signals: dict[str, tuple[Raw, float]]  # signal -> (raw value, 0-100 sub-score)
    facts: Facts  # raw figures the reasons, alerts and snapshot quote
    peer_group: str | None = None  # the plan or segment the peer signals were compared within ("*": all)
    inert: frozenset[str] = frozenset()  # the signals of weight 0 (features only, never reasons)
    override: Applied | None = None  # a person's override in force (score and band are then its)
    held_back: bool = False  # yellow only because of the green budget (Bands.held_back)

    # Written out: mypyc compiles this one, not the interpreted one @dataclass would generate.
    def __init__(
        self,
        now: int,
        score: float,
        band: Band,
        stage: LifecycleStage,
        plan: str | None,
        mrr: int,
        components: dict[str, float | None],
        weights: dict[str, float],
        signals: dict[str, tuple[Raw, float]],
        facts: Facts,
        peer_group: str | None = None,
        inert: frozenset[str] = frozenset(),
        override: Applied | None = None,
        held_back: bool = False,
    ) -> None:
        self.now = now
        self.score = score
        self.band = band
        self.stage = stage
        self.plan = plan
        self.mrr = mrr
        self.components = components
        self.weights = weights
        self.signals = signals
        self.facts = facts
        self.peer_group = peer_group
        self.inert = inert
        self.override = override
        self.held_back = held_back


def lifecycle_stage(inputs: Inputs, now: int, mrr: int, config: ScoreConfig) -> LifecycleStage:
    """churned > renewal > onboarding > adopted (see the README for each)."""
    revenue = inputs.revenue
    if mrr == 0 and revenue.ever_paid_by(now):
        return LifecycleStage.churned
    renewal = revenue.next_renewal(now)
    if renewal is not None and renewal - now <= config.lifecycle.renewal_window_days * DAY:
        return LifecycleStage.renewal
    started = revenue.first_start if revenue.first_start is not None else inputs.first_seen
    if now - started < config.lifecycle.onboarding_days * DAY:
        return LifecycleStage.onboarding
    return LifecycleStage.adopted


def committed(renewal_at: float | int | None, now: int, config: ScoreConfig) -> bool:
    """Whether the account's term runs beyond the renewal window (`lifecycle.renewal_window_days`).

    Such an account cannot leave before its renewal: on the portfolios measured none of them
    churned within 60 days. It is never red (red means likely to churn soon) and the usage band
    rule (bottom of peers: red or yellow) skips it; its score still shows the low use.
    """
    return renews_beyond(renewal_at, now, config.lifecycle.renewal_window_days * DAY)


def leaving(facts: FactsDraft, now: int, mrr: int, config: ScoreConfig) -> bool:
    """Whether a paying account's cancellation is scheduled to take effect within the renewal
    window (`lifecycle.renewal_window_days`): it has said it is leaving, soon (red, see Bands)."""
    cancel_at = facts.get("scheduled_cancellation_at")
    return mrr > 0 and cancel_at is not None and cancel_at - now <= config.lifecycle.renewal_window_days * DAY


def evaluate(inputs: Inputs, now: int, config: ScoreConfig, peers: PeerReference | None = None) -> Evaluation:
    """Score an account at event time `now` (pure: same inputs, same result).

    `peers` is the partition's latest reference (see `streamer.core.peers`); without one, the
    signals in peer mode go through their fixed curves instead, as when the partition has fewer
    than `peers.min_peers` paying accounts.
    """
    end = bucket_of(now)  # windows are whole day buckets up to and including `now`
    mrr = inputs.revenue.mrr_at(now)
    seats = inputs.revenue.seats(now)
    facts: FactsDraft = {}
    percentiles: dict[str, float] = {}  # peer signal -> percentile, when compared with peers
    raw: dict[str, Raw] = {}
    _adoption(inputs, now, end, mrr, seats, config, raw, facts)
    plan = inputs.revenue.primary_plan(now)
    scored: dict[str, float] = {}
    peer_group = _volume(inputs, now, end, mrr, seats, config, peers, raw, scored, facts, percentiles)
    _support(inputs.support, now, end, config, raw, facts)
    figures = _sentiment(inputs.sentiment, end, raw)
    stage = lifecycle_stage(inputs, now, mrr, config)
    _financial(inputs.revenue, now, end, mrr, stage, config, raw, facts)

    table = config.signal_table
    signals: dict[str, tuple[Raw, float]] = {}
    weighted = dict.fromkeys(COMPONENTS, 0.0)
    weights_in = dict.fromkeys(COMPONENTS, 0.0)
    for name, value in raw.items():
        curve, weight = table[name]
        sub = scored[name] if name in scored else sub_score(curve, value)
        signals[name] = (value, sub)
        component = SIGNAL_COMPONENT[name]
        weighted[component] += weight * sub
        weights_in[component] += weight
    components = {
        name: (weighted[name] / total_weight if total_weight > 0 else None)
        for name, total_weight in weights_in.items()
    }

    base, bands = config.segment_memo.get((stage, plan)) or config.segment(stage, plan)
    present = {name: base[name] for name, value in components.items() if value is not None}
    total = sum(present.values())
    if total > 0:
        score = sum(w * (components[name] or 0.0) for name, w in present.items()) / total
        weights = {name: present.get(name, 0.0) / total for name in COMPONENTS}
    else:
        score = config.empty_score
        weights = dict.fromkeys(COMPONENTS, 0.0)
    score = round(score, 1)
    position = percentiles.get(COMPOSITE)  # usage among peers (none: no peers yet)
    # a committed account cannot leave before its renewal: at worst yellow, by its score alone;
    # one that can leave soon is green only at the top of its peers' use, within what the
    # partition's committed accounts leave of the green budget (Bands.band)
    share = peers.committed_share(ALL) if peers is not None else 0.0
    bound = committed(facts.get("renewal_at"), now, config)
    standing = _standing(percentiles, config.peers.compared)
    rule = bands.rule
    band = rule.band(score, position, bound, share, standing, leaving(facts, now, mrr, config))
    held_back = band == Band.yellow and rule.held_back(score, position, bound, share, standing)
    found = freeze(facts, figures, percentiles)  # frozen once, read by attribute
    return Evaluation(
        now,
        score,
        band,
        stage,
        plan,
        mrr,
        components,
        weights,
        signals,
        found,
        peer_group,
        config.inert_signals,
        held_back=held_back,
    )


def _standing(percentiles: dict[str, float], compared: dict[str, bool]) -> dict[str, float]:
    """Per peer signal compared, the account's percentile among its peers, healthier higher
    (the bands read the amount and the mix of use on their own: `Bands.band`)."""
    return {
        name: position if compared.get(name, True) else 100.0 - position
        for name, position in percentiles.items()
        if name in compared
    }


def _volume(
    inputs: Inputs,
    now: int,
    end: int,
    mrr: int,
    seats: int | None,
    config: ScoreConfig,
    peers: PeerReference | None,
    raw: dict[str, Raw],
    scored: dict[str, float],
    facts: FactsDraft,
    percentiles: dict[str, float],
) -> str | None:
    """Volume of use over 28 days, each figure placed among the account's peers when in peer
    mode; returns the peer group used (None when no signal was compared).

    Accounts that never used the product get them (all 0) once paying past the grace period,
    as recency does.
    """
    usage = inputs.usage
    if usage.last_use is None:  # like recency: silent only once paying past the grace period
        silent = inputs.silent_since()
        if mrr <= 0 or silent is None or now - silent < NEVER_USED_GRACE:
            return None
    volume = usage.volume(end, WINDOW_DAYS)
    facts["events_28d"] = volume.events
    facts["active_days_28d"] = volume.active_days
    facts["user_days_28d"] = volume.user_days
    values = peer_values(usage, seats, end, volume)
    facts["active_users_28d"] = usage.active_users(end, 28) if usage.last_use is not None else 0
    before = usage.activity(end - WINDOW_DAYS, WINDOW_DAYS)  # the events of the 28 days before
    facts["events_prev_28d"] = before
    if before > 0:
        facts["events_trend_28d"] = raw["events_trend_28d"] = values["events_28d"] / before - 1
    compared = config.peers.compared
    min_peers = config.peers.min_peers
    group = peer_group_at(config.peers.group_by, inputs.revenue, inputs.profile, now)
    used: str | None = None
    for name, value in values.items():
        higher_is_healthier = compared.get(name)
        if higher_is_healthier is None:  # curve mode
            raw[name] = value
            continue
        found = peers.resolve(group, name, min_peers) if peers is not None else None
        if found is None:  # too few peers (yet): the signal's fixed curve
            raw[name] = value
            continue
        used = found.group
        position = found.position(value)
        percentiles[name] = found.show(position)
        raw[name] = value
        scored[name] = position if higher_is_healthier else 100.0 - position
    if peers is not None and MIX in compared:
        used = (
            _mix(usage, end, group, min_peers, compared[MIX], peers, values, raw, scored, facts, percentiles)
            or used
        )
    weights = config.peers.composite_weights
    found = peers.resolve(group, COMPOSITE, min_peers) if peers is not None and weights else None
    if found is not None and peers is not None:
        used = found.group
        mean = composite(values, peers.groups, used, weights, compared, peers.ranks)
        if mean is not None:
            position = percentile(mean, found.reference)
            percentiles[COMPOSITE] = found.show(position)
            raw[COMPOSITE] = round(mean, 3)
            scored[COMPOSITE] = position
    elif weights:  # too few peers (yet): the weighted mean of the signals' fixed curves
        table = config.signal_table
        present = [
            (weight, sub_score(table[name][0], values[name]))
            for name, weight in weights.items()
            if name in values
        ]
        total = sum(weight for weight, _ in present)
        if total > 0:
            raw[COMPOSITE] = scored[COMPOSITE] = round(sum(w * sub for w, sub in present) / total, 3)
    if used is not None:
        facts["peer_group_size"] = peers.sizes.get(used, 0) if peers is not None else 0
    return used


def _mix(
    usage: Usage,
    end: int,
    group: str | None,
    min_peers: int,
    higher_is_healthier: bool,
    peers: PeerReference,
    values: dict[str, float],
    raw: dict[str, Raw],
    scored: dict[str, float],
    facts: FactsDraft,
    percentiles: dict[str, float],
) -> str | None:
    """The mix of use (`feature_mix_28d`, see `streamer.core.peers`) placed among the peers; adds
    it to `values` for the composite and returns the group used (None: no peers or no feature)."""
    found = peers.resolve(group, MIX, min_peers)
    if found is None:
        return None
    used, reference = found.group, found.reference
    names = peers.features.get(used, ())
    counts = usage.feature_volume(end, WINDOW_DAYS)
    mix = feature_mix(counts, peers.groups, used, names, peers.ranks)
    if mix is None:
        return None
    values[MIX] = mix
    facts["features_used_28d"] = sum(1 for name in names if counts.get(name))
    facts["features_in_use_28d"] = len(names)
    position = percentile(mix, reference)
    percentiles[MIX] = found.show(position)
    raw[MIX] = round(mix, 1)
    scored[MIX] = position if higher_is_healthier else 100.0 - position
    return used


def _adoption(
    inputs: Inputs,
    now: int,
    end: int,
    mrr: int,
    seats: int | None,
    config: ScoreConfig,
    raw: dict[str, Raw],
    facts: FactsDraft,
) -> None:
    usage = inputs.usage
    if usage.last_use is None:
        # Paying but never used: only recency speaks, counted from the first subscription start
        # (or from when usage was first tracked, if later).
        silent = inputs.silent_since()
        if mrr > 0 and silent is not None and now - silent >= NEVER_USED_GRACE:
            raw["recency_days"] = (now - silent) / DAY
            facts["days_since_last_use"] = None
        return
    windows = usage.windows(end)
    mau = windows.mau
    facts["dau"], facts["wau"], facts["mau"] = windows.dau, windows.wau, mau
    stickiness = windows.average_daily_users_30 / mau if mau else 0.0
    facts["stickiness"] = raw["stickiness"] = stickiness
    facts["seats"] = seats
    if seats:
        facts["seat_utilisation"] = raw["seat_utilisation"] = mau / seats
    features = config.features
    breadth = usage.breadth(end)
    facts["feature_breadth"] = breadth
    denominator = len(features.catalogue) or features.default_breadth
    raw["feature_breadth"] = min(1.0, breadth / denominator)
    last7, prev28 = windows.activity_7, windows.activity_prev_28
    facts["activity_7d"], facts["weekly_baseline"] = last7, prev28 / 4
    if prev28 > 0:
        facts["usage_trend"] = raw["usage_trend"] = last7 / (prev28 / 4) - 1
    recency = max(0, now - usage.last_use) / DAY
    facts["days_since_last_use"] = raw["recency_days"] = recency
    start = inputs.revenue.first_start
    first_value = usage.first_key_use if features.key_features else usage.first_use
    if start is not None and first_value is not None:
        facts["time_to_value_days"] = max(0, first_value - start) / DAY


def _support(
    support: Support,
    now: int,
    end: int,
    config: ScoreConfig,
    raw: dict[str, Raw],
    facts: FactsDraft,
) -> None:
    if not support.ever:
        return
    by_priority = support.open_by_priority()
    facts["open_tickets"] = sum(by_priority.values())
    facts["open_urgent"], facts["open_high"] = by_priority["urgent"], by_priority["high"]
    facts["open_low"], facts["open_normal"] = by_priority["low"], by_priority["normal"]
    raw["open_high_priority"] = by_priority["high"] + by_priority["urgent"]
    overdue = support.urgent_open_over(now, config.alerts.support_urgent_open_hours)
    facts["urgent_overdue"] = len(overdue)
    oldest = support.oldest_open_hours(now)
    facts["oldest_open_ticket_hours"] = oldest
    raw["oldest_open_hours"] = oldest or 0.0
    window90 = support.window(end, 90)
    facts["tickets_resolved_90d"], facts["resolution_ms_90d"] = window90.resolved, window90.resolution_ms
    facts["first_contact_90d"] = window90.first_contact
    if window90.resolved:
        art = window90.resolution_ms / window90.resolved / HOUR
        facts["art_hours_90d"] = raw["resolution_hours"] = art
        facts["fcr_90d"] = raw["first_contact_rate"] = window90.first_contact / window90.resolved
    facts["reopens_90d"] = window90.reopened
    opened30 = support.window(end, 30).opened
    baseline = support.window(end - 30, 90).opened / 3
    facts["tickets_opened_30d"], facts["tickets_baseline_30d"] = opened30, baseline
    if baseline > 0:
        raw["ticket_volume_ratio"] = opened30 / baseline


def _sentiment(sentiment: Sentiment, end: int, raw: dict[str, Raw]) -> Figures:
    """The survey signals; returns the survey figures, which are facts too."""
    figures = sentiment.figures(end)
    for signal, value in (
        ("nps", figures.get("nps")),
        ("csat_pct", figures.get("csat")),
        ("ces", figures.get("ces")),
    ):
        if value is not None:
            raw[signal] = value
    return figures


def _financial(
    revenue: Revenue,
    now: int,
    end: int,
    mrr: int,
    stage: LifecycleStage,
    config: ScoreConfig,
    raw: dict[str, Raw],
    facts: FactsDraft,
) -> None:
    if not revenue.subscriptions:
        return
    before = revenue.mrr_at(now - 90 * DAY)
    if before > 0:
        facts["mrr_trend_90d"] = raw["mrr_trend"] = mrr / before - 1
    since = (end - 29) * DAY
    failures = sum(1 for at in revenue.payment_failures if since <= at <= now)
    facts["payment_failures_30d"] = raw["payment_failures"] = failures
    cancel_at = revenue.scheduled_cancellation(now)
    facts["scheduled_cancellation_at"] = cancel_at
    raw["scheduled_cancellation"] = 0.0 if cancel_at is not None or stage == LifecycleStage.churned else 100.0
    renewal = revenue.next_renewal(now)
    facts["renewal_at"] = renewal
    if stage == LifecycleStage.churned:
        return
    # How soon the contract lets the account leave: an account renewing in days can be gone
    # within the month, one committed for most of a year cannot (its curve is flat at 100 beyond
    # 90 days). Churn comes at a term's end, so this separates the accounts at risk soon from the
    # committed ones on any portfolio with multi-month terms. Paying on a term that has ended
    # and not (yet) renewed counts as at its renewal now: without that the signal vanished for
    # that instant (a tick at the term end, or a renewal that arrives later), the score jumped
    # up and fell back when the renewal came: a score_drop.
    term_end = renewal if renewal is not None else revenue.term_due(now)
    if term_end is None:
        return
    facts["days_to_renewal"] = raw["days_to_renewal"] = (renewal - now) / DAY if renewal is not None else 0.0
    if renewal is None:
        facts["term_ended_at"] = term_end
    term = revenue.term_before(term_end, now)
    if term is not None:
        facts["renewal_term_days"] = term / DAY
