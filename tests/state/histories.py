"""Account histories for the state codec tests: random ones (hypothesis) and a fixed one (golden).

Ids mostly start with the account id, as real producers' often do (the codec stores those as
suffixes), some do not; small caps make the eviction paths run too.
"""

from __future__ import annotations

from datetime import timedelta

from core.events import (
    T0,
    canceled,
    changed,
    opened,
    override,
    override_cleared,
    payment_failed,
    profile,
    renewed,
    reopened,
    resolved,
    started,
    survey,
    usage,
)
from hypothesis import strategies as st

from streamer.contract.events import Event
from streamer.core.config import ScoreConfig

# Small caps so that evictions and trims happen within a few dozen events. The scoring settings
# are the ones the golden state files were written under (the defaults before issue 9's third
# round): the alert memory in those files holds scores and bands, so a change of the default
# score must not read as a codec change.
CONFIG = ScoreConfig.model_validate(
    {
        "weights": {"adoption": 0.35, "support": 0.20, "sentiment": 0.20, "financial": 0.25},
        "signal_weights": {"days_to_renewal": 0.5},
        "curves": {"days_to_renewal": [[0, 40], [30, 60], [90, 100]]},
        "peers": {
            "group_by": "plan",
            "composite": {
                "events_28d": 2.0,
                "active_days_28d": 2.0,
                "user_days_28d": 1.0,
                "events_per_seat_28d": 1.0,
                "events_per_user_day_28d": 1.0,
            },
        },
        "limits": {
            "max_users": 4,
            "max_features": 3,
            "max_tickets": 3,
            "max_respondents": 3,
            "max_survey_answers": 3,
            "max_comments": 2,
            "max_subscription_points": 4,
        },
    }
)
ACCOUNTS = ("acct-1", "acct-2")
KINDS = (
    "started",
    "changed",
    "renewed",
    "canceled",
    "payment_failed",
    "usage",
    "usage",
    "usage",
    "opened",
    "resolved",
    "reopened",
    "nps",
    "csat",
    "ces",
)

IDENTITY_KINDS = ("profile", "override", "cleared")  # not in KINDS: fixed_history's first SPLIT stay v1's


def make(kind: str, account: str, minute: int, pick: int, event_id: str) -> Event:
    """One event of `kind`; `pick` chooses users, tickets, plans and scores."""
    when = T0 + timedelta(minutes=minute)
    later = when + timedelta(days=30 + pick % 40)
    sub = f"{account}-sub{pick % 2}"
    user = f"{account}-u{pick % 6}" if pick % 5 else f"external-{pick % 3}"
    ticket = f"{account}-t{pick % 5}"
    comment = "slow exports" if pick % 3 == 0 else None
    if kind == "started":
        return started(
            account, when, str(50 + pick), sub=sub, seats=pick % 20 or None, term_end=later, event_id=event_id
        )
    if kind == "changed":
        plan = ("basic", "pro", "enterprise")[pick % 3]
        return changed(account, when, str(20 + 7 * pick), sub=sub, plan=plan, event_id=event_id)
    if kind == "renewed":
        return renewed(account, when, later, sub=sub, event_id=event_id)
    if kind == "canceled":
        effective = when + timedelta(days=pick % 10) if pick % 2 else None
        return canceled(account, when, sub=sub, effective_at=effective, event_id=event_id)
    if kind == "payment_failed":
        return payment_failed(account, when, 1 + pick % 4, sub=sub, event_id=event_id)
    if kind == "usage":
        feature = ("reports", "export", "api", "alerts", "dashboards")[pick % 5]
        return usage(account, when, user, feature, 1 + pick % 4, event_id=event_id)
    if kind == "opened":
        priority = ("low", "normal", "high", "urgent")[pick % 4]
        return opened(account, when, ticket, priority, event_id=event_id)
    if kind == "resolved":
        return resolved(account, when, ticket, 1 + pick % 3, event_id=event_id)
    if kind == "reopened":
        return reopened(account, when, ticket, event_id=event_id)
    if kind == "profile":
        owner = ("ana@example.com", "bo@example.com", None)[pick % 3]
        attributes = {"region": ("emea", "amer")[pick % 2]} if pick % 4 else {}
        return profile(
            account,
            when,
            f"Customer {pick}",
            owner,
            ("smb", "enterprise")[pick % 2],
            "gold",
            attributes,
            event_id=event_id,
        )
    if kind == "override":
        until = when + timedelta(days=1 + pick % 12)
        if pick % 2:
            return override(
                account, when, until, band=("green", "yellow", "red")[pick % 3], event_id=event_id
            )
        return override(account, when, until, score=float(pick % 101), event_id=event_id)
    if kind == "cleared":
        return override_cleared(account, when, event_id=event_id)
    score = pick % 11 if kind == "nps" else 1 + pick % (5 if kind == "csat" else 7)
    return survey(account, when, kind, score, f"{account}-r{pick % 5}", comment, event_id=event_id)


@st.composite
def histories(draw: st.DrawFn, max_size: int = 60) -> list[Event]:
    """Events over about 80 days, roughly in time order with some late (within the lateness),
    an occasional duplicate, and ids both with and without the account prefix."""
    size = draw(st.integers(1, max_size))
    events: list[Event] = []
    minute = 0
    for n in range(size):
        minute += draw(st.integers(0, 3 * 24 * 60))
        late = draw(st.sampled_from((0, 0, 0, 60, 3 * 24 * 60)))
        account = draw(st.sampled_from(ACCOUNTS))
        kind = draw(st.sampled_from(KINDS + IDENTITY_KINDS))
        pick = draw(st.integers(0, 1000))
        event_id = f"{account}-e{n:04d}" if n % 4 else f"raw-{n}"
        events.append(make(kind, account, max(0, minute - late), pick, event_id))
        if draw(st.integers(0, 15)) == 0:
            events.append(events[-1])
    return events


def fixed_history() -> list[Event]:
    """A deterministic history touching every structure (the golden files' source)."""
    events: list[Event] = []
    for n in range(160):
        account = ACCOUNTS[n % 2]
        kind = KINDS[(n * 5) % len(KINDS)]
        event_id = f"{account}-e{n:04d}" if n % 4 else f"raw-{n}"
        events.append(make(kind, account, n * 9 * 60 + (n % 5) * 37, n * 13 + 5, event_id))
        if n >= 120 and n % 7 == 0:  # after the golden split (120), so version 1's prefix stays
            identity = IDENTITY_KINDS[(n // 7) % len(IDENTITY_KINDS)]
            events.append(make(identity, account, n * 9 * 60 + 50, n * 17 + 3, f"{account}-i{n:04d}"))
    return events
