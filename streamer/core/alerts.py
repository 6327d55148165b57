"""Alert rules: which conditions raise an alert, how severe, and when a repeat is held back.

Each rule yields a `Candidate` with a level (higher is worse) and a key naming the triggering
state: an event id, a band transition at an instant, or the start of an episode during which a
condition held. The alert id hashes account, rule and key, so a replay raises the same ids.
A rule does not repeat inside its cooldown, nor for the same key, unless the level rises.

No rule speaks about time that was not observed: silence is counted from the account's first
event and from the first usage event its partition saw (billing history imported from before
usage was tracked is not silence), usage drops wait until the account's usage spans the whole
trend window, and a band change alerts only once the score itself moved (a 0.1-point wobble
across a threshold, or a threshold that changed with the lifecycle stage, is not news).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import blake2b

from streamer.contract.vocabulary import BAND_RANK, SEVERITY_BY_LEVEL, Band, LifecycleStage, Severity
from streamer.core.clock import DAY, bucket_of, iso
from streamer.core.config import Rule, Rules
from streamer.core.facts import rounded
from streamer.core.reasons import Reason, days, explain
from streamer.core.score import Evaluation

USAGE_TREND_DAYS = 35  # the usage trend compares the last 7 day buckets with the 28 before

Previous = tuple[float, str] | None  # (score, band) of the account's previous evaluation


@dataclass(slots=True)
class Candidate:
    rule: str
    severity: Severity
    level: int
    key: str
    reason: Reason
    previous: Previous = None  # what the alert reports as the previous score and band, when not
    # the previous evaluation (a band change reports the band and score it moved away from)


@dataclass(slots=True)
class AlertMemory:
    """What the rules remember per account (kept in the account's state)."""

    raised: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # rule -> (at, level, key)
    episodes: dict[str, tuple[int, int]] = field(default_factory=dict)  # rule -> (start, max level)
    daily_max: dict[int, float] = field(default_factory=dict)  # day -> highest score that day
    scored_on: tuple[str, ...] = ()  # components with data when daily_max was kept
    band: tuple[str, float] | None = None  # (band, score) of the last band change acknowledged
    # a band change not yet acknowledged: (direction, since) with direction 1 worse, -1 better
    pending: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True, init=False)
class Observed:
    """What the state rules need of the account beyond its evaluation (event time)."""

    first_use: int | None = None  # the account's first usage event
    # Since when its silence is observed (`Inputs.silence_start`): the instant the silence rule
    # counts from and the engine's alert lines too (`PartitionEngine._alert_line_passed`).
    silence_start: int | None = None
    first_seen: int | None = None  # the account's first event of any kind

    # Written out: mypyc compiles this one, not the interpreted one @dataclass would generate.
    def __init__(
        self, first_use: int | None = None, silence_start: int | None = None, first_seen: int | None = None
    ) -> None:
        object.__setattr__(self, "first_use", first_use)
        object.__setattr__(self, "silence_start", silence_start)
        object.__setattr__(self, "first_seen", first_seen)


@dataclass(slots=True, init=False)
class Trigger:
    """The event being applied, as far as event-driven rules care."""

    event_id: str
    event_type: str
    at: int
    mrr_before: int = 0
    mrr_after: int = 0
    scheduled_for: int | None = None  # a cancellation effective in the future
    attempt: int = 0
    survey: str | None = None
    survey_score: int = 0

    # Written out: mypyc compiles this one, not the interpreted one @dataclass would generate.
    def __init__(
        self,
        event_id: str,
        event_type: str,
        at: int,
        mrr_before: int = 0,
        mrr_after: int = 0,
        scheduled_for: int | None = None,
        attempt: int = 0,
        survey: str | None = None,
        survey_score: int = 0,
    ) -> None:
        self.event_id = event_id
        self.event_type = event_type
        self.at = at
        self.mrr_before = mrr_before
        self.mrr_after = mrr_after
        self.scheduled_for = scheduled_for
        self.attempt = attempt
        self.survey = survey
        self.survey_score = survey_score


def alert_id(account_id: str, rule: str, key: str) -> str:
    """Deterministic id: the same account, rule and triggering state give the same id."""
    return blake2b(f"{account_id}\x1f{rule}\x1f{key}".encode(), digest_size=10).hexdigest()


def _r(signal: str, value: float | str | None, baseline: float | str | None, message: str) -> Reason:
    return {"signal": signal, "value": value, "baseline": baseline, "message": message}


def _transitions(
    current: Evaluation, memory: AlertMemory, rules: Rules, observed: Observed
) -> list[Candidate]:
    """A band change, once the score moved `band_min_change_points` away from its last score in
    the band the rules last acknowledged, and the change held `band_confirm_days` in event time.

    The band is a threshold on a score with one decimal: a score of 40.0 becoming 39.9 changes
    the band without anything having happened, and a stage whose thresholds differ changes it
    with no move at all. The rules remember the acknowledged band and the account's last score
    in it, and speak only when the score has really moved away from there. And the bands move
    with the peers' percentiles, which shift a little every day: a change that is undone within
    days is noise, so a change in one direction (worse, or better) is acknowledged only once the
    account's evaluations have stayed on that side for `band_confirm_days` (see
    `band_confirm_due` for the instant that falls due); a person's override is acknowledged at once.
    While the account's usage is settling (`_settling`) the band is acknowledged as it is, silently
    (an override still alerts).
    """
    if current.override is None and all(value is None for value in current.components.values()):
        # Nothing known of the account yet (its profile only): its band is `empty_score`'s, a
        # placeholder. Acknowledged, a CRM that knew the account before billing did had its first
        # paying day read as a recovery, "yellow -> green (score 50 -> 100)".
        return []
    settling = current.override is None and _settling(current, observed, rules)
    if memory.band is None or memory.band[0] == current.band or settling:  # first, same or settling
        memory.band = (current.band, current.score)
        memory.pending = None
        return []
    previous_band, previous_score = memory.band
    if abs(current.score - previous_score) < rules.band_min_change_points:
        return []  # a wobble across the threshold, or thresholds that moved: not acknowledged
    was, now = BAND_RANK[Band(previous_band)], BAND_RANK[current.band]
    direction = 1 if now > was else -1
    if memory.pending is None or memory.pending[0] != direction:
        memory.pending = (direction, current.now)  # the change starts here
    since = memory.pending[1]
    # a person's override is a decision, not noise: it is acknowledged at once
    confirm = 0.0 if current.override is not None else rules.band_confirm_days
    if current.now - since < confirm * DAY:
        return []  # not held long enough yet: it may be the peers' day-to-day noise
    memory.pending = None
    memory.band = (current.band, current.score)
    key = f"{previous_band}>{current.band}@{current.now}"
    message = (
        f"health band {previous_band} -> {current.band} (score {previous_score:.0f} -> {current.score:.0f})"
    )
    if since < current.now:
        message += f" since {iso(since)[:10]}"
    reason = _r("band", current.band, previous_band, message)
    before = (previous_score, previous_band)
    if now > was:
        return [Candidate("band_worsened", SEVERITY_BY_LEVEL[now], now, key, reason, before)]
    if now == 0:
        return [Candidate("band_recovered", Severity.info, 0, key, reason, before)]
    return []


def _settling(current: Evaluation, observed: Observed, rules: Rules) -> bool:
    """Within `band_settle_days` of the first product use of an account that was a customer for
    at least that long before it: its product analytics was connected late (for a whole
    portfolio at once), or it began to use the product late. Its score before was over the other
    components only (an account without use data scores 100 on a clean subscription), and its
    usage windows fill over the weeks after: a band change then is the data arriving, not the
    account's health moving. A new account's first weeks are not settling: how it starts to use
    the product predicts its churn (on ChurnSim's socialnet7-s7, without the band alerts of those
    weeks `band_worsened` caught 4 of 83 churns instead of 43)."""
    first, began = observed.first_use, observed.first_seen
    window = rules.band_settle_days * DAY
    return (
        first is not None and began is not None and first - began >= window and current.now - first < window
    )


HELD = "held_back"  # the episode (not a rule) of an account held in yellow by the green budget


def _held_declined(current: Evaluation, memory: AlertMemory) -> list[Candidate]:
    """`health_declined`: an account the green budget held in yellow (healthy by its score and
    use, but not at the top of its peers' use: `Bands.held_back`) is now yellow by its own
    health. Without it, the green -> yellow alert such an account raised before the budget
    existed is gone: it was yellow all along, and its decline before leaving said nothing.

    The held state is kept as an episode of its own in `memory.episodes` (start, -1), so no
    state format changes; the alert's key is that episode's start (a replay raises the same id).
    A fall into red is `band_worsened`'s, a person's override is a decision: neither alerts here.
    Its cooldown (30 days) keeps an account that sways around the line to one alert a month.
    """
    held = memory.episodes.pop(HELD, None)
    if current.held_back and current.override is None:
        memory.episodes[HELD] = held if held is not None else (current.now, -1)
        return []
    if held is None or current.band != Band.yellow or current.override is not None:
        return []
    since = iso(held[0])[:10]
    message = f"health fell below green (score {current.score:.0f}; held in yellow since {since})"
    reason = _r("band", current.band, Band.green.value, message)
    return [Candidate("health_declined", Severity.warning, 1, str(held[0]), reason)]


def band_confirm_due(memory: AlertMemory, rules: Rules) -> int | None:
    """The event-time instant at which a pending band change has held `band_confirm_days`
    (a re-scoring at or after it acknowledges the change if it still holds), or None."""
    if memory.pending is None:
        return None
    return memory.pending[1] + round(rules.band_confirm_days * DAY)


def _score_drop(
    current: Evaluation, memory: AlertMemory, rules: Rules, observed: Observed
) -> Candidate | None:
    """The score fell `score_drop_points` below its highest of the window (critical at twice that)."""
    # daily_max holds the days of the window only (see _forget_old_scores)
    peak = max(memory.daily_max.values(), default=None)
    if peak is None or peak - current.score < rules.score_drop_points:
        return None
    drop = peak - current.score
    level = 2 if drop >= 2 * rules.score_drop_points else 1
    window = days(rules.score_drop_window_days)
    message = f"score fell {drop:.0f} points in {window} ({peak:.0f} -> {current.score:.0f})"
    return Candidate(
        "score_drop", SEVERITY_BY_LEVEL[level], level, "", _r("score", current.score, peak, message)
    )


def _usage_drop(
    current: Evaluation, memory: AlertMemory, rules: Rules, observed: Observed
) -> Candidate | None:
    """Usage down to `usage_drop_trend` of its 4-week baseline, once usage spans the whole window."""
    facts = current.facts
    trend, baseline = facts.usage_trend, facts.weekly_baseline or 0
    if (
        trend is None
        or trend > rules.usage_drop_trend
        or baseline < rules.usage_drop_min_weekly_baseline
        or observed.first_use is None
        or bucket_of(current.now) - bucket_of(observed.first_use) < USAGE_TREND_DAYS - 1  # window not used
    ):
        return None
    level = 2 if trend <= rules.usage_drop_critical_trend else 1
    message = f"usage down {abs(trend) * 100:.0f}% vs the 4-week baseline"
    return Candidate(
        "usage_drop",
        SEVERITY_BY_LEVEL[level],
        level,
        "",
        _r("usage_trend", round(trend, 3), round(float(baseline), 3), message),
    )


def _silence(current: Evaluation, memory: AlertMemory, rules: Rules, observed: Observed) -> Candidate | None:
    """No observed usage for `silence_days` while paying (critical at twice that)."""
    silent = _observed_silence(current, observed)
    if current.mrr <= 0 or silent is None or silent < rules.silence_days:
        return None
    level = 2 if silent >= 2 * rules.silence_days else 1
    message = f"no product usage for {days(silent)} while paying"
    return Candidate(
        "silence",
        SEVERITY_BY_LEVEL[level],
        level,
        "",
        _r("recency_days", round(silent, 3), rules.silence_days, message),
    )


def _renewal_at_risk(
    current: Evaluation, memory: AlertMemory, rules: Rules, observed: Observed
) -> Candidate | None:
    """A renewal within `renewal_at_risk_days` while not green (as severe as the band), of a term
    longer than those days: an account renewing monthly is always within them, so the alert
    would come at every month's renewal of every account not green and say nothing new."""
    facts = current.facts
    days_to_renewal = facts.days_to_renewal
    if days_to_renewal is None or days_to_renewal > rules.renewal_at_risk_days or current.band == Band.green:
        return None
    term = facts.renewal_term_days
    if term is not None and term <= rules.renewal_at_risk_days:
        return None
    level = BAND_RANK[current.band]
    ended = facts.term_ended_at
    due = f"term ended on {iso(ended)[:10]}, not renewed yet," if ended is not None else None
    message = f"{due or f'renewal in {days(days_to_renewal)}'} while {current.band}"
    return Candidate(
        "renewal_at_risk",
        SEVERITY_BY_LEVEL[level],
        level,
        "",
        _r("days_to_renewal", round(float(days_to_renewal), 3), rules.renewal_at_risk_days, message),
    )


def _support_backlog(
    current: Evaluation, memory: AlertMemory, rules: Rules, observed: Observed
) -> Candidate | None:
    """Urgent tickets open too long (critical), or `support_high_open_count` high/urgent ones open."""
    facts = current.facts
    overdue = facts.urgent_overdue or 0
    high_open = (facts.open_high or 0) + (facts.open_urgent or 0)
    if not overdue and high_open < rules.support_high_open_count:
        return None
    level = 2 if overdue else 1
    if overdue:
        hours = rules.support_urgent_open_hours
        waited = days(hours / 24) if hours >= 48 else f"{hours:.0f} h"
        message = f"{overdue} urgent ticket{'s' if overdue > 1 else ''} open for over {waited}"
    else:
        message = f"{high_open} high/urgent tickets open"
    return Candidate(
        "support_backlog",
        SEVERITY_BY_LEVEL[level],
        level,
        "",
        _r("open_high_priority", high_open, rules.support_high_open_count, message),
    )


StateRule = Callable[[Evaluation, AlertMemory, Rules, Observed], Candidate | None]

# Rules on the account's state, by name; their key is the episode start (see `_episodes`).
STATE_RULES: dict[str, StateRule] = {
    "score_drop": _score_drop,
    "usage_drop": _usage_drop,
    "silence": _silence,
    "renewal_at_risk": _renewal_at_risk,
    "support_backlog": _support_backlog,
}


def _conditions(
    current: Evaluation, memory: AlertMemory, rules: Rules, observed: Observed
) -> dict[str, Candidate]:
    """The state rules that hold now, by name; their key is filled in by `_episodes`."""
    found = {}
    for name, rule in STATE_RULES.items():
        candidate = rule(current, memory, rules, observed)
        if candidate is not None:
            found[name] = candidate
    return found


def _observed_silence(current: Evaluation, observed: Observed) -> float | None:
    """Days without usage that were observed, from `observed.silence_start`; None while usage is
    not tracked or the recency signal is absent (an account that never used the product, inside
    its grace period)."""
    since = observed.silence_start
    if since is None or "recency_days" not in current.signals:
        return None
    return max(0.0, (current.now - since) / DAY)


def _episodes(found: dict[str, Candidate], memory: AlertMemory, now: int) -> list[Candidate]:
    """Key each holding condition by the start of its episode; end those that stopped holding."""
    for rule in [rule for rule in memory.episodes if rule not in found and rule != HELD]:
        del memory.episodes[rule]
    result = []
    for rule, candidate in sorted(found.items()):
        start, raised_level = memory.episodes.setdefault(rule, (now, -1))
        if candidate.level > raised_level:  # each episode alerts once per level it reaches
            candidate.key = f"{start}:{candidate.level}"
            result.append(candidate)
    return result


def _scheduled_cancellation(trigger: Trigger, rules: Rules) -> Candidate | None:
    """A paying subscription's cancellation scheduled for a later date (critical)."""
    if (
        trigger.event_type != "subscription.canceled"
        or trigger.scheduled_for is None
        or trigger.mrr_before <= 0
    ):
        return None
    message = f"cancellation scheduled for {iso(trigger.scheduled_for)[:10]}"
    return Candidate(
        "scheduled_cancellation",
        Severity.critical,
        2,
        trigger.event_id,
        _r("scheduled_cancellation", iso(trigger.scheduled_for), None, message),
    )


def _payment_failed(trigger: Trigger, rules: Rules) -> Candidate | None:
    """A failed payment (critical from the third attempt)."""
    if trigger.event_type != "subscription.payment_failed":
        return None
    level = 2 if trigger.attempt >= 3 else 1
    message = f"payment failed (attempt {trigger.attempt})"
    return Candidate(
        "payment_failed",
        SEVERITY_BY_LEVEL[level],
        trigger.attempt,
        trigger.event_id,
        _r("payment_failed", trigger.attempt, None, message),
    )


def _mrr_contraction(trigger: Trigger, rules: Rules) -> Candidate | None:
    """MRR went down without reaching 0."""
    if not 0 < trigger.mrr_after < trigger.mrr_before:
        return None
    drop = 1 - trigger.mrr_after / trigger.mrr_before
    message = f"MRR contraction of {drop * 100:.0f}%"
    return Candidate(
        "mrr_contraction",
        Severity.warning,
        1,
        trigger.event_id,
        _r("mrr_change", rounded(-drop, 4), None, message),
    )


def _nps_detractor(trigger: Trigger, rules: Rules) -> Candidate | None:
    """An NPS answer of `nps_detractor_max` or less."""
    if trigger.survey != "nps" or trigger.survey_score > rules.nps_detractor_max:
        return None
    return Candidate(
        "nps_detractor",
        Severity.warning,
        1,
        trigger.event_id,
        _r("nps_answer", trigger.survey_score, None, f"NPS detractor: {trigger.survey_score}"),
    )


def _csat_low(trigger: Trigger, rules: Rules) -> Candidate | None:
    """A CSAT answer of `csat_low_max` or less."""
    if trigger.survey != "csat" or trigger.survey_score > rules.csat_low_max:
        return None
    return Candidate(
        "csat_low",
        Severity.warning,
        1,
        trigger.event_id,
        _r("csat_answer", trigger.survey_score, None, f"CSAT answer {trigger.survey_score} of 5"),
    )


EventRule = Callable[[Trigger, Rules], Candidate | None]

# Rules on the event being applied, by name, in order: the first that fires speaks for the event.
EVENT_RULES: dict[str, EventRule] = {
    "scheduled_cancellation": _scheduled_cancellation,
    "payment_failed": _payment_failed,
    "mrr_contraction": _mrr_contraction,
    "nps_detractor": _nps_detractor,
    "csat_low": _csat_low,
}

# The band rules come from `_transitions` and `_held_declined`; every name here has its settings in `Rules`.
RULES = ("band_worsened", "band_recovered", "health_declined", *STATE_RULES, *EVENT_RULES)


def _events(trigger: Trigger | None, rules: Rules) -> list[Candidate]:
    if trigger is None:
        return []
    for rule in EVENT_RULES.values():
        candidate = rule(trigger, rules)
        if candidate is not None:
            return [candidate]
    return []


def check(
    account_id: str,
    previous: Previous,
    current: Evaluation,
    trigger: Trigger | None,
    memory: AlertMemory,
    rules: Rules,
    mrr_text: str,
    observed: Observed,
) -> list[dict[str, object]]:
    """Alerts raised by this evaluation; updates `memory` (cooldowns, episodes, score history)."""
    now = current.now
    present = tuple(name for name, value in current.components.items() if value is not None)
    if present != memory.scored_on:  # scores over other components are not comparable: restart
        memory.scored_on = present
        memory.daily_max.clear()
    _forget_old_scores(memory, now // DAY, rules)
    if current.stage == LifecycleStage.churned:
        memory.episodes.clear()
        candidates = []
    else:
        candidates = _transitions(current, memory, rules, observed)
        candidates += _held_declined(current, memory)
        candidates += _episodes(_conditions(current, memory, rules, observed), memory, now)
    candidates += _events(trigger, rules)
    _remember_score(memory, current)

    alerts: list[dict[str, object]] = []
    explanation: list[Reason] | None = None
    for candidate in candidates:
        rule = rules.rule(candidate.rule)
        if not rule.enabled or _cooling_down(memory, candidate, rule, now):
            continue
        memory.raised[candidate.rule] = (now, candidate.level, candidate.key)
        episode = memory.episodes.get(candidate.rule)
        if episode is not None:
            memory.episodes[candidate.rule] = (episode[0], candidate.level)
        if explanation is None:
            explanation = explain(current)
        event_driven = trigger is not None and candidate.key == trigger.event_id
        before = candidate.previous or previous
        alerts.append(
            {
                "alert_id": alert_id(account_id, candidate.rule, candidate.key),
                "account_id": account_id,
                "rule": candidate.rule,
                "severity": candidate.severity,
                "raised_at": iso(trigger.at if event_driven and trigger else now),
                "score": current.score,
                "band": current.band,
                "previous_score": before[0] if before else None,
                "previous_band": before[1] if before else None,
                "mrr": mrr_text,
                "reasons": [candidate.reason]
                + [r for r in explanation if r["signal"] != candidate.reason["signal"]],
            }
        )
    return alerts


def _cooling_down(memory: AlertMemory, candidate: Candidate, rule: Rule, now: int) -> bool:
    """No repeat of a rule inside its cooldown unless the state got worse."""
    last = memory.raised.get(candidate.rule)
    if last is None:
        return False
    at, level, _ = last
    return candidate.level <= level and now - at < rule.cooldown_days * DAY


def _remember_score(memory: AlertMemory, current: Evaluation) -> None:
    """Keep each day's highest score for the score-drop rule."""
    day = current.now // DAY
    if current.score > memory.daily_max.get(day, -1.0):
        memory.daily_max[day] = current.score


def _forget_old_scores(memory: AlertMemory, day: int, rules: Rules) -> None:
    """Keep only the days of the score-drop window ending with `day`."""
    oldest = day - rules.score_drop_window_days
    for old in [d for d in memory.daily_max if d < oldest]:
        del memory.daily_max[old]
