"""Who the account is (account.updated) and a person's override of its health, with expiry."""

from __future__ import annotations

import random

from streamer.core.identity import Profile, with_version

from .events import at, opened, override, override_cleared, profile, started, usage
from .harness import Feed


def healthy(feed: Feed) -> None:
    """acme: paying and using the product daily for two weeks (green)."""
    feed(started("acme", at(0), "500", seats=5))
    for day in range(14):
        feed(usage("acme", at(day, 9), "u1", "reports"), usage("acme", at(day, 10), "u2", "api"))


def test_profile_is_the_latest_by_event_time_whatever_the_arrival_order() -> None:
    newer = profile("acme", at(2), "Acme Corp", "ana@example.com", "enterprise", "gold", {"region": "emea"})
    older = profile("acme", at(1), "Acme", "bo@example.com", "smb")
    for order in ((older, newer), (newer, older)):
        feed = Feed()
        feed(started("acme", at(0), "100"), *order)
        assert feed.snapshot("acme")["profile"] == {
            "name": "Acme Corp",
            "owner": "ana@example.com",
            "segment": "enterprise",
            "tier": "gold",
            "attributes": {"region": "emea"},
        }


def test_a_profile_is_whole_a_field_left_out_is_cleared() -> None:
    feed = Feed()
    feed(profile("acme", at(1), "Acme", "ana@example.com", "smb"), profile("acme", at(2), "Acme"))
    assert feed.snapshot("acme")["profile"]["owner"] is None


def test_alerts_carry_the_profile() -> None:
    feed = Feed()
    feed(
        profile("acme", at(0), "Acme Corp", "ana@example.com", "enterprise"), started("acme", at(0, 1), "100")
    )
    feed(opened("acme", at(1), "t1", "urgent"), opened("acme", at(1, 1), "t2", "urgent"))
    feed(opened("acme", at(1, 2), "t3", "high"))
    assert feed.alerts
    assert {alert["profile"]["owner"] for alert in feed.alerts} == {"ana@example.com"}


def test_a_band_override_shows_its_band_reason_and_author_beside_the_model() -> None:
    feed = Feed()
    healthy(feed)
    model = feed.snapshot("acme")
    assert model["band"] == "green" and model["override"] is None
    feed(override("acme", at(14, 12), at(40), band="red", reason="exec sponsor left"))
    snapshot = feed.snapshot("acme")
    assert snapshot["band"] == "red"
    assert snapshot["score"] == 39.9  # the model's score moved to the top of the red range
    computed = snapshot["override"]["computed_score"]
    assert computed >= 70  # what the model says now (12 hours after `model`)
    assert snapshot["override"] == {
        "band": "red",
        "score": None,
        "reason": "exec sponsor left",
        "author": "ana@example.com",
        "set_at": "2024-01-15T12:00:00Z",
        "expires_at": "2024-02-10T00:00:00Z",
        "computed_score": computed,
        "computed_band": "green",
    }
    first = snapshot["reasons"][0]
    assert first["signal"] == "override"
    assert first["message"] == (
        f"overridden to red by ana@example.com: 'exec sponsor left', until 2024-02-10 "
        f"(the model says {computed:g}, green)"
    )
    alert = feed.raised("band_worsened")[-1]
    assert (alert["raised_at"], alert["band"], alert["severity"]) == (
        "2024-01-15T12:00:00Z",
        "red",
        "critical",
    )
    assert alert["previous_band"] == "green"
    assert alert["reasons"][1]["message"] == first["message"]  # after the rule's own reason


def test_a_score_override_takes_the_band_of_its_score() -> None:
    feed = Feed()
    healthy(feed)
    feed(override("acme", at(14, 12), at(40), score=55.0))
    snapshot = feed.snapshot("acme")
    assert (snapshot["score"], snapshot["band"]) == (55.0, "yellow")
    assert snapshot["override"]["score"] == 55.0 and snapshot["override"]["band"] is None


def test_an_override_expires_in_event_time_at_the_next_tick_without_any_event() -> None:
    feed = Feed()
    healthy(feed)
    feed(override("acme", at(14, 12), at(16, 6), band="red"))
    feed(started("other", at(16, 5), "100"))  # stream time before the expiry: still red
    assert feed.snapshot("acme")["band"] == "red"
    feed(started("other2", at(17, 3), "100"))  # passes midnight after the expiry: acme re-scored
    snapshot = feed.snapshot("acme")
    assert snapshot["override"] is None
    assert snapshot["as_of"] == "2024-01-18T00:00:00Z"
    assert snapshot["band"] == "green"
    assert all(reason["signal"] != "override" for reason in snapshot["reasons"])


def test_a_later_clearing_removes_the_override_and_an_older_override_does_not_come_back() -> None:
    feed = Feed()
    healthy(feed)
    feed(override("acme", at(14, 12), at(40), band="red"), override_cleared("acme", at(14, 14)))
    assert feed.snapshot("acme")["override"] is None and feed.snapshot("acme")["band"] == "green"
    feed(override("acme", at(14, 13), at(40), band="red"))  # set before the clearing, arriving after
    assert feed.snapshot("acme")["override"] is None and feed.snapshot("acme")["band"] == "green"


def test_a_later_override_replaces_the_earlier_one() -> None:
    feed = Feed()
    healthy(feed)
    feed(override("acme", at(14, 12), at(40), band="red"))
    feed(override("acme", at(14, 13), at(40), band="yellow", author="bo@example.com"))
    snapshot = feed.snapshot("acme")
    assert snapshot["band"] == "yellow" and snapshot["override"]["author"] == "bo@example.com"
    assert snapshot["score"] == 69.9


def test_a_model_of_the_score_reads_the_models_own_score_not_the_override() -> None:
    """`--tune` calibrates the score as the [model] on computed scores; a person's override
    changes the published score and band, not the churn risk (signal models ignore it too)."""
    import math

    from streamer.core.config import ScoreConfig

    config = ScoreConfig.model_validate(
        {"model": {"version": "score", "intercept": 0.5, "coefficients": {}, "means": {}, "score": -5.0}}
    )
    feed = Feed(config)
    healthy(feed)
    feed(override("acme", at(14, 12), at(40), band="red", reason="exec sponsor left"))
    snapshot = feed.snapshot("acme")
    computed = snapshot["override"]["computed_score"]
    assert snapshot["score"] == 39.9 and computed >= 70
    assert snapshot["churn_risk_60d"] == round(1 / (1 + math.exp(-(0.5 - 5.0 * computed / 100))), 4)


# -- the segment a peer reference reads ---------------------------------------------------------

DAY_MS = 86_400_000


def version(day: float, segment: str | None, event_id: str) -> Profile:
    return Profile(int(day * DAY_MS), event_id, segment=segment)


def test_the_segment_at_any_instant_a_reference_asks_does_not_depend_on_the_arrival_order() -> None:
    """Every version within the allowed lateness of the latest one (so every order is one a
    partition admits), several a day; the segment at each midnight from the horizon on is the
    one of the latest version dated at or before it, and the versions kept are the same, in
    every arrival order."""
    rng = random.Random(7)
    span = int(4 * DAY_MS)  # a reference never asks before the latest version less this
    for trial in range(200):
        versions = [
            version(rng.uniform(20, 27), rng.choice(["smb", "mid", "ent", None]), f"e{trial}-{n}")
            for n in range(rng.randint(1, 12))
        ]
        latest = max(versions, key=lambda v: (v.at, v.event_id))
        truth = {}
        for midnight in range(19, 29):
            if midnight * DAY_MS < latest.at - span:
                continue
            dated = [v for v in versions if v.at <= midnight * DAY_MS]
            truth[midnight] = max(dated, key=lambda v: (v.at, v.event_id)).segment if dated else None
        kept: set[tuple[tuple[int, str, str | None], ...]] = set()
        for _ in range(5):
            profile_now: Profile | None = None
            for item in rng.sample(versions, len(versions)):
                profile_now = with_version(profile_now, item, span)
            assert profile_now is not None
            assert (profile_now.at, profile_now.event_id) == (latest.at, latest.event_id)
            assert {m: profile_now.segment_at(m * DAY_MS) for m in truth} == truth
            assert len(profile_now.earlier) <= 5  # one per day bucket within the span, plus one
            kept.add(tuple(profile_now.earlier))
        assert len(kept) == 1, "the versions kept depend on the arrival order"


def test_versions_before_the_horizon_keep_only_the_latest_of_them() -> None:
    profile_now = None
    for day, segment in enumerate(["a", "b", "c", "d", "e", "f"]):
        profile_now = with_version(profile_now, version(day + 0.5, segment, f"e{day}"), int(2.5 * DAY_MS))
    assert profile_now is not None
    # the horizon is day 3 (5.5 - 2.5): of the versions at or before it only "c" (day 2.5) is kept
    assert [segment for _, _, segment in profile_now.earlier] == ["c", "d", "e"]
    assert profile_now.segment == "f"
    assert profile_now.segment_at(3 * DAY_MS) == "c" and profile_now.segment_at(5 * DAY_MS) == "e"


def test_a_reused_event_id_with_another_segment_keeps_the_first_and_does_not_fail() -> None:
    """The same (event time, event id) again, its segment None where the first had one (an id the
    account no longer remembers, reused): the segments are not compared, the first stays."""
    first = with_version(None, version(3, "smb", "e1"), int(20 * DAY_MS))
    again = with_version(first, version(3, None, "e1"), int(20 * DAY_MS))
    assert (again.segment, again.earlier) == ("smb", [])
    other_day = with_version(version(5, None, "e2"), version(3, "smb", "e1"), int(20 * DAY_MS))
    assert with_version(other_day, version(3, None, "e1"), int(20 * DAY_MS)).earlier == [
        (3 * DAY_MS, "e1", "smb")
    ]
