"""Volume signals over 28 days and peer-relative sub-scores (hand-computed expectations)."""

from __future__ import annotations

import copy

import pytest

from streamer.core.clock import DAY
from streamer.core.config import Bands, Peers, PeerSignal, ScoreConfig, SignalWeights
from streamer.core.engine import PartitionEngine
from streamer.core.identity import Profile
from streamer.core.peers import (
    ALL,
    COMPOSITE,
    FEATURE,
    MAX_FEATURES,
    MIX,
    PeerHistory,
    PeerReference,
    build_reference,
    feature_mix,
    membership_instant,
    peer_values,
    percentile,
    reference_end,
    summarise,
)
from streamer.core.reasons import explain
from streamer.core.revenue import Revenue
from streamer.core.usage import Usage

from .events import at, canceled, ms, profile, started, usage
from .harness import Feed

LATENESS = 7 * DAY


def daily(config: ScoreConfig) -> ScoreConfig:
    """The configuration with a reference at every midnight (`peers.refresh_days = 1`).

    The hand-computed percentiles below are those of the reference of day 40's own midnight
    (daily is the default; pinned so that a change of default cannot change what they check);
    the weekly grid is tested on its own (`test_the_reference_moves_only_on_its_grid`).
    """
    return config.model_copy(update={"peers": config.peers.model_copy(update={"refresh_days": 1})})


def used(*days_counts_users: tuple[int, int, str]) -> Usage:
    found = Usage()
    for day, count, user in days_counts_users:
        found.record(
            day * DAY + 10 * 3_600_000,
            user,
            "reports",
            count,
            key_feature=False,
            max_users=10,
            max_features=10,
        )
    return found


def test_volume_sums_events_active_days_and_user_days_of_the_window() -> None:
    usage_ = used((10, 3, "a"), (10, 2, "b"), (20, 5, "a"), (37, 1, "c"), (38, 4, "a"), (38, 1, "b"))
    # window of 28 days ending with day 38: days 11..38 -> day 10 is out
    volume = usage_.volume(38, 28)
    assert (volume.events, volume.active_days, volume.user_days) == (5 + 1 + 4 + 1, 3, 1 + 1 + 2)
    # the 28 days before: days -17..10 -> only day 10 (two users, 5 events)
    before = usage_.volume(10, 28)
    assert (before.events, before.active_days, before.user_days) == (5, 1, 2)


def test_a_past_window_is_exact_although_its_users_were_active_since() -> None:
    usage_ = used((10, 1, "a"), (11, 1, "b"))
    assert usage_.volume(10, 28).user_days == 1
    usage_.record(30 * DAY, "a", "reports", 1, key_feature=False, max_users=10, max_features=10)
    assert usage_.volume(10, 28).user_days == 1  # user a moved on; day 10 still counts them


def test_peer_values_per_seat_and_per_user_day() -> None:
    usage_ = used((30, 6, "a"), (31, 6, "b"))
    values = peer_values(usage_, 4, 31)
    assert values == {
        "events_28d": 12,
        "active_days_28d": 2,
        "user_days_28d": 2,
        "events_per_seat_28d": 3.0,
        "events_per_user_day_28d": 6.0,
    }
    assert "events_per_seat_28d" not in peer_values(usage_, None, 31)
    assert peer_values(Usage(), None, 31) == {"events_28d": 0, "active_days_28d": 0, "user_days_28d": 0}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0.0), (1, 12.5), (2, 37.5), (2.5, 50.0), (4, 87.5), (9, 100.0)],
)
def test_percentile_is_the_mid_rank_among_peers(value: float, expected: float) -> None:
    assert percentile(value, (1, 2, 3, 4)) == expected


def test_percentile_counts_ties_half() -> None:
    assert percentile(5, (5, 5, 5, 5)) == 50.0
    assert percentile(5, (1, 5, 5, 9)) == 50.0


def test_summarise_keeps_101_evenly_spaced_order_statistics() -> None:
    assert summarise([3.0, 1.0, 2.0]) == (1.0, 2.0, 3.0)
    summary = summarise([float(v) for v in reversed(range(201))])
    assert len(summary) == 101
    assert summary[:3] == (0.0, 2.0, 4.0)
    assert summary[-1] == 200.0


def test_reference_reads_windows_that_end_lateness_plus_one_day_before_the_tick() -> None:
    tick = 100 * DAY
    assert reference_end(tick, LATENESS) == 91  # bucket (day 91, day 92]: events up to the instant day 92
    # An event at day 92 00:00 exactly closes bucket 91, but is already too late after the tick.


def test_reference_groups_paying_accounts_by_plan_and_all() -> None:
    feed = Feed()
    feed(
        started("a", at(0), plan="starter"),
        started("b", at(0), plan="starter"),
        started("c", at(0), plan="pro"),
        usage("a", at(5, 10), "u", "x", 4),
        usage("b", at(6, 10), "u", "x", 2),
        usage("c", at(6, 10), "u", "x", 9),
        usage("trial", at(6, 10), "u", "x", 50),  # never paid: not a peer
    )
    accounts = members(feed)
    reference = build_reference(accounts, ms(at(15)), LATENESS, "plan")
    assert reference.window_end == ms(at(6)) // DAY  # the bucket ending at day 7 00:00
    assert reference.sizes == {ALL: 3, "pro": 1, "starter": 2}
    assert reference.groups[("starter", "events_28d")] == (2, 4)
    assert reference.groups[(ALL, "events_28d")] == (2, 4, 9)
    assert reference.lookup("starter", "events_28d", min_peers=2) == ("starter", (2, 4))
    assert reference.lookup("pro", "events_28d", min_peers=2) == (ALL, (2, 4, 9))  # too few pro peers
    assert reference.lookup("pro", "events_28d", min_peers=4) is None  # too few at all
    # A day later, usage of day 7 (a late event still admissible at tick 15) is not read.
    feed(usage("a", at(7, 10), "u", "x", 100))
    assert build_reference(members(feed), ms(at(15)), LATENESS, "plan") == reference


def test_reference_reads_who_was_paying_as_known_when_its_windows_end() -> None:
    """A cancellation recorded after the tick may take effect up to `input.max_backdate_days`
    before it was recorded. Read as known later, who was paying at the end of the windows
    changed once the reference was built, with the order events arrived in (hypothesis found
    it). One recorded before the windows end counts: an account gone by then is no peer (read a
    week earlier instead, such accounts were peers, and red churned less often against green)."""
    tick = ms(at(30))
    assert membership_instant(tick, LATENESS) == ms(at(22))  # the windows end at day 22
    feed = Feed()
    feed(
        started("a", at(0), plan="starter"),
        started("b", at(0), plan="pro"),
        started("c", at(0), plan="pro"),
        canceled("c", at(18)),  # gone before the windows end: not a peer
        usage("a", at(20, 10), "u", "x", 4),
        usage("b", at(20, 10), "u", "x", 9),
        usage("a", at(30, 1), "u", "x", 1),  # the stream passes the tick
    )
    reference = build_reference(members(feed), tick, LATENESS, "plan")
    assert reference.sizes == {ALL: 2, "pro": 1, "starter": 1}
    # Still admissible (day 23 01:00 is the allowed lateness before the stream time), dated
    # back the longest allowed: onto the windows' last week.
    [outcome] = feed(canceled("b", at(23, 1), effective_at=at(16, 1)))
    assert outcome.status == "accepted", outcome.reason
    assert build_reference(members(feed), tick, LATENESS, "plan") == reference


def members(feed: Feed) -> list[tuple[Usage, Revenue, Profile | None]]:
    """The accounts of `feed` as a reference reads them."""
    return [(feed.store[a].usage, feed.store[a].revenue, feed.store[a].profile) for a in sorted(feed.store)]


def paying_portfolio(config: ScoreConfig) -> Feed:
    """Four starter accounts on day 0 with 1, 2, 3 and 4 events a day on days 1..40."""
    feed = Feed(daily(config))
    feed(*(started(f"a{n}", at(0), plan="starter") for n in range(1, 5)))
    for day in range(1, 41):
        feed(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 5)))
    return feed


def test_the_engine_scores_events_as_a_percentile_among_peers() -> None:
    config = ScoreConfig(peers=Peers(min_peers=4, group_by="plan"))
    feed = paying_portfolio(config)
    # At day 40 12:00 the reference is the one refreshed at day 40 00:00: its windows end with
    # the day-31 bucket (days 4..31): events 28, 56, 84, 112.
    reference = feed.engine.peers.at(ms(at(40, 12)))
    assert reference is not None and reference.tick == ms(at(40))
    assert reference.groups[("starter", "events_28d")] == (28, 56, 84, 112)
    evaluation = feed.evaluate("a2", at(40, 12))
    # a2 has 2 x 28 = 56 events in days 13..40: one peer below, one equal -> (1 + 0.5) / 4
    assert evaluation.facts.events_28d == 56
    assert evaluation.signals["events_28d"] == (56, 37.5)
    assert evaluation.facts.percentiles["events_28d"] == 37.5
    assert evaluation.peer_group == "starter"
    low = feed.evaluate("a1", at(40, 12))
    assert low.signals["events_28d"] == (28, 12.5)  # none below, one equal


def test_by_default_peers_are_all_paying_accounts_of_the_partition() -> None:
    feed = Feed(daily(ScoreConfig(peers=Peers(min_peers=4))))
    plans = ("starter", "starter", "pro", "pro")
    feed(*(started(f"a{n}", at(0), plan=plan) for n, plan in zip(range(1, 5), plans, strict=True)))
    for day in range(1, 41):
        feed(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 5)))
    reference = feed.engine.peers.at(ms(at(40, 12)))
    assert reference is not None
    assert ("starter", "events_28d") not in reference.groups  # no per-plan references
    assert reference.groups[("*", "events_28d")] == (28, 56, 84, 112)
    evaluation = feed.evaluate("a2", at(40, 12))  # a starter account ranked among all four
    assert evaluation.peer_group == "*"
    assert evaluation.signals["events_28d"] == (56, 37.5)
    reasons = {r["signal"]: r["message"] for r in explain(feed.evaluate("a1", at(40, 12)))}
    assert reasons[COMPOSITE].endswith("bottom 13% of all paying accounts")


def test_peers_grouped_by_segment_place_an_account_in_the_segment_it_had_at_the_references_instant() -> None:
    """Segments from account.updated; a1 moves from smb to enterprise on day 36, after the
    instant the day-40 reference reads (the end of day 31) and before the evaluation: the
    reference still counts it in smb, its evaluation compares it within enterprise."""
    feed = Feed(daily(ScoreConfig(peers=Peers(min_peers=2, group_by="segment"))))
    segments = ("smb", "smb", "enterprise", "enterprise")
    feed(*(started(f"a{n}", at(0), plan="starter") for n in range(1, 5)))
    feed(*(profile(f"a{n}", at(0, 1), segment=s) for n, s in zip(range(1, 5), segments, strict=True)))
    for day in range(1, 41):
        if day == 36:
            feed(profile("a1", at(36, 1), segment="enterprise"))
        feed(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 5)))
    reference = feed.engine.peers.at(ms(at(40, 12)))
    assert reference is not None
    assert reference.sizes == {ALL: 4, "smb": 2, "enterprise": 2}
    assert reference.groups[("smb", "events_28d")] == (28, 56)
    assert reference.groups[("enterprise", "events_28d")] == (84, 112)
    evaluation = feed.evaluate("a1", at(40, 12))
    assert evaluation.peer_group == "enterprise"
    assert evaluation.signals["events_28d"] == (28, 0.0)  # below both enterprise accounts
    reasons = {r["signal"]: r["message"] for r in explain(evaluation)}
    assert reasons[COMPOSITE].endswith("of paying enterprise accounts")
    # Without a profile an account is compared with all paying accounts.
    feed(started("a5", at(40, 13), plan="starter"), usage("a5", at(40, 14), "u", "reports", 3))
    assert feed.evaluate("a5", at(40, 15)).peer_group == "*"


def test_a_segment_change_arriving_after_a_midnight_it_is_dated_before_builds_the_same_reference() -> None:
    """a1 moves to enterprise at day 35 23:00. In time order that is before the day-36 tick; late,
    it arrives after it (a2's event of day 36 ran the tick). The day-36 reference reads the end of
    day 28 (lateness and a day back), when a1 was in smb: the same reference either way."""
    config = daily(ScoreConfig(peers=Peers(min_peers=1, group_by="segment")))
    references = []
    for late in (False, True):
        feed = Feed(config)
        feed(*(started(f"a{n}", at(0), plan="starter") for n in range(1, 3)))
        feed(profile("a1", at(0, 1), segment="smb"), profile("a2", at(0, 1), segment="enterprise"))
        for day in range(1, 36):
            feed(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 3)))
        moved, next_day = (
            profile("a1", at(35, 23), segment="enterprise"),
            usage("a2", at(36, 1), "u", "reports"),
        )
        feed(*((next_day, moved) if late else (moved, next_day)))
        reference = feed.engine.peers.at(ms(at(36, 12)))
        assert reference is not None and reference.tick == ms(at(36))
        references.append(reference)
    assert references[0].sizes == references[1].sizes == {ALL: 2, "smb": 1, "enterprise": 1}
    assert references[0].groups == references[1].groups


def test_references_rebuilt_on_recovery_read_the_segments_they_read_live() -> None:
    """A recovered worker rebuilds the references of the last grid points a late event can reach
    (the oldest about the allowed lateness behind the stream, reading a lateness further back)
    from its accounts: a1's segments of days 1 and 9 must still be there after its day-20 change."""
    config = daily(ScoreConfig(peers=Peers(min_peers=1, group_by="segment")))
    feed = Feed(config)
    feed(*(started(f"a{n}", at(0), plan="starter") for n in range(1, 3)))
    feed(profile("a1", at(1), segment="smb"), profile("a2", at(1), segment="smb"))
    for day in range(1, 21):
        if day == 9:
            feed(profile("a1", at(9), segment="enterprise"))
        feed(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 3)))
    feed(profile("a1", at(20, 11), segment="mid-market"))
    recovered = PartitionEngine(config, copy.deepcopy(feed.store), copy.deepcopy(feed.engine.clock))
    live = [(r.tick, r.sizes) for r in feed.engine.peers.references]
    assert [(r.tick, r.sizes) for r in recovered.peers.references] == live
    assert any(sizes.get("smb") == 2 for _, sizes in live)  # a1 still in smb at the oldest one


def test_a_segment_named_like_the_group_of_all_counts_an_account_once() -> None:
    """ "*" is the group of all paying accounts: an account whose segment is "*" is in it once.
    (Day 19: a reference reads who was paying the allowed lateness, a day and the longest
    backdating of a cancellation before its midnight.)"""
    feed = Feed(daily(ScoreConfig(peers=Peers(min_peers=1, group_by="segment"))))
    feed(*(started(f"a{n}", at(0), plan="starter") for n in range(1, 3)))
    feed(profile("a1", at(0, 1), segment="*"))
    for day in range(1, 20):
        feed(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 3)))
    reference = feed.engine.peers.at(ms(at(19, 12)))
    assert reference is not None and reference.sizes == {ALL: 2}
    # grouped by plan, an account on a plan named "*" alike
    feed = Feed(daily(ScoreConfig(peers=Peers(min_peers=1, group_by="plan"))))
    feed(started("a1", at(0), plan="*"), started("a2", at(0), plan="starter"))
    for day in range(1, 20):
        feed(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 3)))
    reference = feed.engine.peers.at(ms(at(19, 12)))
    assert reference is not None and reference.sizes == {ALL: 2, "starter": 1}


def test_a_riskier_when_higher_signal_is_scored_from_the_other_end() -> None:
    peers = Peers(min_peers=4, signals={"events_28d": PeerSignal(higher_is_healthier=False)})
    feed = paying_portfolio(ScoreConfig(peers=peers))
    assert feed.evaluate("a1", at(40, 12)).signals["events_28d"] == (28, 87.5)


def test_curve_mode_and_too_few_peers_use_the_fixed_curve() -> None:
    curve_mode = Peers(min_peers=4, signals={"events_28d": PeerSignal(mode="curve")})
    feed = paying_portfolio(ScoreConfig(peers=curve_mode))
    # events_28d curve: (10, 20) -> (100, 50): 28 -> 20 + 18 / 90 x 30 = 26
    assert feed.evaluate("a1", at(40, 12)).signals["events_28d"] == (28, 26.0)
    few = paying_portfolio(ScoreConfig(peers=Peers(min_peers=5)))
    evaluation = few.evaluate("a1", at(40, 12))
    assert evaluation.signals["events_28d"] == (28, 26.0)
    assert evaluation.peer_group is None


def test_a_reason_says_where_the_account_stands_among_its_peers() -> None:
    # events_28d counts only through usage_28d by default (weight 0: no reason of its own)
    weighted = SignalWeights(events_28d=2.0)
    feed = paying_portfolio(ScoreConfig(peers=Peers(min_peers=4, group_by="plan"), signal_weights=weighted))
    reasons = {r["signal"]: r for r in explain(feed.evaluate("a1", at(40, 12)))}
    assert (
        reasons["events_28d"]["message"]
        == "28 product events in 28 days, bottom 13% of paying starter accounts"
    )
    assert reasons["events_28d"]["percentile"] == 12.5


def test_a_signal_ranked_in_the_healthier_half_of_its_peers_is_no_reason() -> None:
    """a3 stands at 62.5 among its peers: under the 70 that makes a fixed-curve signal a reason,
    but "84 product events ..., top 38%" is no reason to worry; a2 at 37.5 is one."""
    weighted = SignalWeights(events_28d=2.0)
    feed = paying_portfolio(ScoreConfig(peers=Peers(min_peers=4, group_by="plan"), signal_weights=weighted))
    healthier = feed.evaluate("a3", at(40, 12))
    assert healthier.signals["events_28d"] == (84, 62.5)
    assert "events_28d" not in {r["signal"] for r in explain(healthier)}
    assert "events_28d" in {r["signal"] for r in explain(feed.evaluate("a2", at(40, 12)))}


def test_the_snapshot_carries_the_peer_standing() -> None:
    feed = paying_portfolio(ScoreConfig(peers=Peers(min_peers=4, group_by="plan")))
    snapshot = feed.snapshot("a4")
    assert snapshot["peers"]["group"] == "starter"
    assert snapshot["peers"]["size"] == 4
    assert snapshot["metrics"]["events_28d"] == 4 * 28
    assert snapshot["metrics"]["active_days_28d"] == 28


def test_recovery_re_derives_the_same_references() -> None:
    feed = paying_portfolio(ScoreConfig(peers=Peers(min_peers=4, group_by="plan")))
    engine = feed.engine
    recovered = PartitionEngine(engine.config, feed.store, engine.clock)
    assert recovered.peers.references == engine.peers.references
    assert len(recovered.peers.references) == recovered.peers.keep


def test_history_answers_the_latest_reference_at_or_before_an_instant() -> None:
    history = PeerHistory(keep=2)
    for day in (1, 2, 3):
        history.add(PeerReference(day * DAY, day - 9, {}, {}))
    assert [r.tick for r in history.references] == [2 * DAY, 3 * DAY]
    assert history.at(2 * DAY + 5) is not None and history.at(2 * DAY + 5).tick == 2 * DAY  # type: ignore[union-attr]
    assert history.at(DAY) is None


VOLUME_ONLY = {
    "events_28d": 1.0,
    "active_days_28d": 1.0,
    "user_days_28d": 1.0,
}  # the composite without the mix


def test_the_usage_composite_is_the_mean_percentile_ranked_again_among_peers() -> None:
    feed = paying_portfolio(ScoreConfig(peers=Peers(min_peers=4, group_by="plan", composite=VOLUME_ONLY)))
    reference = feed.engine.peers.at(ms(at(40, 12)))
    assert reference is not None
    composites = reference.groups[("starter", COMPOSITE)]
    assert len(composites) == 4 and list(composites) == sorted(set(composites))  # one per account
    # The mean percentile bunches (a1 and a4 are 12.5 and 87.5 on events but ~30 and ~70 as a
    # mean with the signals where all four tie); ranked again, the composite spreads to 0..100.
    low, high = feed.evaluate("a1", at(40, 12)), feed.evaluate("a4", at(40, 12))
    assert 25 < low.signals[COMPOSITE][0] < 50 < high.signals[COMPOSITE][0] < 75
    assert (low.signals[COMPOSITE][1], high.signals[COMPOSITE][1]) == (12.5, 87.5)
    assert low.facts.percentiles[COMPOSITE] == 12.5
    assert feed.snapshot("a1")["peers"]["percentiles"][COMPOSITE] == 12.5
    reasons = {r["signal"]: r["message"] for r in explain(low)}
    assert reasons[COMPOSITE] == (
        "overall use low: 28 product events on 28 days in 28 days, bottom 13% of paying starter accounts"
    )
    # Without composite weights there is no composite.
    plain = paying_portfolio(ScoreConfig(peers=Peers(min_peers=4, composite={})))
    assert COMPOSITE not in plain.evaluate("a1", at(40, 12)).signals


def test_low_use_does_not_make_a_committed_account_red() -> None:
    """An account whose term runs beyond the renewal window cannot leave before it: the usage
    band rule skips it (its score still carries the low use)."""
    bands = Bands(red_usage_below=15, yellow_usage_below=40)
    config = ScoreConfig(peers=Peers(min_peers=4), bands=bands)
    feed = Feed(daily(config))
    feed(started("a1", at(0), plan="starter", term_end=at(400)))  # lowest use, committed for a year
    feed(*(started(f"a{n}", at(0), plan="starter", term_end=at(60)) for n in range(2, 5)))
    for day in range(1, 41):
        feed(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 5)))
    committed = feed.evaluate("a1", at(40, 12))
    assert committed.facts.percentiles[COMPOSITE] == 12.5  # bottom of its peers ...
    assert committed.band == bands.rule.band(committed.score)  # ... but banded by its score alone
    assert committed.band != "red"
    # The same use on a term that ends within the window: red from the usage rule.
    monthly = Feed(daily(config))
    monthly(*(started(f"a{n}", at(0), plan="starter", term_end=at(60)) for n in range(1, 5)))
    for day in range(1, 41):
        monthly(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 5)))
    assert monthly.evaluate("a1", at(40, 12)).band == "red"


def test_committed_peers_fill_green_first() -> None:
    """The reference counts the committed peers; with a quarter of them committed, an account
    that can leave soon is not green even at the top of use, while the same use on a
    portfolio of month-to-month peers is."""
    config = ScoreConfig(peers=Peers(min_peers=4), empty_score=90)
    feed = Feed(config)
    feed(started("a1", at(0), plan="starter", term_end=at(400)))  # committed for a year
    feed(*(started(f"a{n}", at(0), plan="starter", term_end=at(60)) for n in range(2, 5)))
    for day in range(1, 41):
        feed(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 5)))
    reference = feed.engine.peers.at(ms(at(40, 12)))
    assert reference is not None and reference.committed == {"*": 1}
    top = feed.evaluate("a4", at(40, 12))
    assert top.facts.percentiles[COMPOSITE] == 87.5 and top.score >= config.bands.green
    assert top.band == "yellow"  # a quarter of the peers committed: nobody who can leave soon is green
    monthly = Feed(config)
    monthly(*(started(f"a{n}", at(0), plan="starter", term_end=at(60)) for n in range(1, 5)))
    for day in range(1, 41):
        monthly(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 5)))
    assert monthly.engine.peers.at(ms(at(40, 12))).committed == {}
    assert monthly.evaluate("a4", at(40, 12)).band == "green"  # the top fifth of use


def test_usage_low_among_peers_makes_the_band_red_or_yellow_whatever_the_score() -> None:
    wide = ScoreConfig(
        peers=Peers(min_peers=4, group_by="plan"), bands=Bands(red_usage_below=15, yellow_usage_below=40)
    )
    feed = paying_portfolio(wide)
    assert feed.evaluate("a1", at(40, 12)).band == "red"  # usage 12.5th percentile < 15
    assert feed.evaluate("a2", at(40, 12)).band == "yellow"  # 37.5 < 40
    off = paying_portfolio(
        ScoreConfig(
            peers=Peers(min_peers=4, group_by="plan"), bands=Bands(red_usage_below=0, yellow_usage_below=0)
        )
    )
    found = off.evaluate("a1", at(40, 12))
    assert found.band == Bands().rule.band(found.score)


def test_usage_keeps_events_per_feature_over_the_horizon_only() -> None:
    usage_ = Usage()
    for day, feature, count in ((1, "post", 2), (20, "post", 3), (20, "like", 5), (30, "like", 1)):
        usage_.record(
            day * DAY + 36_000_000, "u", feature, count, key_feature=False, max_users=10, max_features=10
        )
    assert usage_.feature_volume(30, 28) == {"post": 3, "like": 6}  # day 1 is outside days 3..30
    assert usage_.feature_volume(10, 28) == {"post": 2}
    usage_.expire(70)  # horizon: days 7..70 -> day 1 dropped, "post" keeps day 20
    counts = {f: usage_.feature_counts(f) for f in usage_.feature_names}
    assert counts == {"post": {20: 3}, "like": {20: 5, 30: 1}}
    usage_.expire(90)  # horizon from day 27: post has no day left and goes
    assert {f: usage_.feature_counts(f) for f in usage_.feature_names} == {"like": {30: 1}}


def test_a_reference_keeps_the_features_most_members_used() -> None:
    """However many event names producers invent, a group's reference (stored, and read at every
    evaluation) keeps `MAX_FEATURES` of them: those the most members used, then by name."""
    feed = Feed()
    feed(*(started(a, at(0)) for a in ("a", "b", "c")))
    feed(*(usage(a, at(5, 10), "u", "shared", 1) for a in ("a", "b", "c")))
    feed(*(usage("a", at(5, 10), "u", f"only-{n:03d}", 1) for n in range(MAX_FEATURES + 16)))
    reference = build_reference(members(feed), ms(at(15)), LATENESS, "all", {MIX: 1.0})
    kept = tuple(sorted(["shared", *(f"only-{n:03d}" for n in range(MAX_FEATURES - 1))]))
    assert reference.features[ALL] == kept
    assert {signal for _, signal in reference.groups if signal.startswith(FEATURE)} == {
        FEATURE + n for n in kept
    }
    assert (ALL, MIX) in reference.groups  # the mix is still placed, over the kept features


def test_the_feature_mix_is_the_geometric_mean_of_the_per_feature_percentiles() -> None:
    groups = {("*", FEATURE + "post"): (0.0, 0.0, 5.0, 10.0), ("*", FEATURE + "like"): (1.0, 2.0, 3.0, 4.0)}
    # post 10 -> 87.5, like 1 -> 12.5: geometric mean of 0.885 and 0.135 (less 0.01), not 50
    found = feature_mix({"post": 10, "like": 1}, groups, "*", ("like", "post"))
    assert found == pytest.approx(100 * ((0.885 * 0.135) ** 0.5 - 0.01))
    assert found is not None and found < 50
    # a feature not used counts as 0 events (the mid-rank of the two peers at 0: 25)
    assert feature_mix({"like": 4}, groups, "*", ("like", "post")) == pytest.approx(
        100 * ((0.885 * 0.26) ** 0.5 - 0.01)
    )
    assert feature_mix({"post": 1}, groups, "*", ()) is None


def mixed_portfolio(config: ScoreConfig) -> Feed:
    """Four accounts with 4 events a day; a1 uses one feature, a2..a4 spread over two
    ("a4" only on "reports" 3 a day and "export" 1); nobody uses "admin"."""
    feed = Feed(daily(config))
    feed(*(started(f"a{n}", at(0), plan="starter") for n in range(1, 5)))
    for day in range(1, 41):
        feed(usage("a1", at(day, 10), "u", "reports", 4))
        for n in (2, 3):
            feed(
                usage(f"a{n}", at(day, 10), "u", "reports", 2), usage(f"a{n}", at(day, 11), "u", "export", 2)
            )
        feed(usage("a4", at(day, 10), "u", "reports", 3), usage("a4", at(day, 11), "u", "export", 1))
    return feed


def test_the_mix_ranks_an_account_that_uses_one_feature_below_all_round_peers() -> None:
    feed = mixed_portfolio(ScoreConfig(peers=Peers(min_peers=4)))
    reference = feed.engine.peers.at(ms(at(40, 12)))
    assert reference is not None
    assert reference.features == {ALL: ("export", "reports")}  # only features someone used
    assert reference.groups[(ALL, FEATURE + "export")] == (0, 28, 56, 56)
    one = feed.evaluate("a1", at(40, 12))
    assert one.facts.events_28d == 4 * 28  # the same volume as everyone
    assert (one.facts.features_used_28d, one.facts.features_in_use_28d) == (1, 2)
    assert one.facts.percentiles[MIX] == 12.5  # the lowest mix of the four
    assert one.signals[MIX][1] == 12.5
    assert one.facts.percentiles[COMPOSITE] == 12.5  # volume ties, the mix decides
    reasons = {r["signal"]: r["message"] for r in explain(one)}
    assert reasons[COMPOSITE].startswith("overall use low")
    assert MIX not in reasons  # a feature (weight 0 by default): counted in the composite only
    even = feed.evaluate("a2", at(40, 12))
    assert even.facts.percentiles[MIX] > one.facts.percentiles[MIX]
    # a peer reference round-trips through its record with the features derived again
    from streamer.state.codec import decode_peers, encode_peers

    assert decode_peers(encode_peers([reference]))[0].features == reference.features


def test_the_mix_reason_names_the_features_used() -> None:
    weights = SignalWeights(feature_mix_28d=1.0)
    feed = mixed_portfolio(ScoreConfig(peers=Peers(min_peers=4), signal_weights=weights))
    reasons = {r["signal"]: r["message"] for r in explain(feed.evaluate("a1", at(40, 12)), limit=10)}
    assert reasons[MIX] == "1 of 2 features used in 28 days, bottom 13% of all paying accounts"


def test_the_reference_moves_only_on_its_grid() -> None:
    config = ScoreConfig(peers=Peers(min_peers=4, refresh_days=7))
    weekly = Feed(config)
    weekly(*(started(f"a{n}", at(0), plan="starter") for n in range(1, 5)))
    for day in range(1, 41):
        weekly(*(usage(f"a{n}", at(day, 10), "u", "reports", n) for n in range(1, 5)))
    ticks = [reference.tick for reference in weekly.engine.peers.references]
    # the first midnight of each ISO week (2024-01-22, 01-29, 02-05: Mondays), as many as the lateness needs
    assert ticks == [ms(at(21)), ms(at(28)), ms(at(35))]
    assert weekly.engine.peers.keep == 3
    # every instant of the week reads the same reference: an idle account's standing stands still
    monday = weekly.engine.peers.at(ms(at(35)))
    assert all(weekly.engine.peers.at(ms(at(day, 12))) is monday for day in range(35, 41))
    assert weekly.engine.peers.at(ms(at(34, 23))) is not monday
    recovered = PartitionEngine(weekly.engine.config, weekly.store, weekly.engine.clock)
    assert recovered.peers.references == weekly.engine.peers.references
    every_day = paying_portfolio(ScoreConfig(peers=Peers(min_peers=4)))  # daily(): every midnight
    assert [r.tick for r in every_day.engine.peers.references][-2:] == [ms(at(39)), ms(at(40))]


def test_the_green_budget_is_the_partitions_not_the_plans() -> None:
    """Half the partition's paying accounts are committed (on an annual plan): nobody who can
    leave soon is green, even at the top of a monthly plan none of whose members is committed
    (counted per plan, the monthly plan got a quarter of its accounts green on top)."""
    config = ScoreConfig(peers=Peers(min_peers=4, group_by="plan"), empty_score=90)
    feed = Feed(daily(config))
    feed(*(started(f"y{n}", at(0), plan="annual", term_end=at(400)) for n in range(1, 5)))
    feed(*(started(f"m{n}", at(0), plan="monthly", term_end=at(60)) for n in range(1, 5)))
    for day in range(1, 41):
        feed(*(usage(f"{p}{n}", at(day, 10), "u", "reports", n) for p in "ym" for n in range(1, 5)))
    reference = feed.engine.peers.at(ms(at(40, 12)))
    assert reference is not None
    assert reference.committed_share(ALL) == 50.0 and reference.committed_share("monthly") == 0.0
    top = feed.evaluate("m4", at(40, 12))
    assert top.peer_group == "monthly" and top.facts.percentiles[COMPOSITE] == 87.5
    assert top.score >= config.bands.green
    assert top.band == "yellow" and top.held_back  # yellow by the budget alone
    assert feed.evaluate("y4", at(40, 12)).band == "green"  # the committed come first


def test_a_decline_from_held_in_yellow_raises_health_declined_once() -> None:
    """m3 is healthy by score and use (the 50th percentile) but y5, committed, took the green
    budget (a fifth of the peers): m3 is held in yellow. When its use falls to the bottom of its
    peers it becomes yellow by its own health: `health_declined`, the green -> yellow alert the
    committed-first rule took away. Without a committed peer nothing is held."""
    config = ScoreConfig(peers=Peers(min_peers=4), bands=Bands(green=50, yellow=20))

    def run(committed: bool = True) -> Feed:
        feed = Feed(daily(config))
        feed(*(started(f"m{n}", at(0), plan="starter", term_end=at(60)) for n in range(1, 5)))
        feed(started("y5", at(0), plan="starter", term_end=at(400 if committed else 60)))
        for day in range(1, 41):
            feed(
                *(usage(f"{'y' if n == 5 else 'm'}{n}", at(day, 10), "u", "reports", n) for n in range(1, 6))
            )
        if not committed:
            assert not feed.evaluate("m3", at(40, 12)).held_back
            return feed
        held = feed.evaluate("m3", at(40, 12))
        assert held.band == "yellow" and held.held_back and held.score >= config.bands.green
        assert feed.raised("health_declined", account="m3") == []
        for day in range(41, 60):  # m3 stops using the product, the others go on
            feed(
                *(usage(f"{'y' if n == 5 else 'm'}{n}", at(day, 10), "u", "reports", n) for n in (1, 2, 4, 5))
            )
        return feed

    feed = run()
    assert not feed.evaluate("m3", at(59, 12)).held_back
    [alert] = feed.raised("health_declined", account="m3")
    assert (alert["account_id"], alert["severity"], alert["band"]) == ("m3", "warning", "yellow")
    assert "health fell below green" in alert["reasons"][0]["message"]
    again = run().raised("health_declined", account="m3")
    assert [a["alert_id"] for a in again] == [alert["alert_id"]]  # a replay raises the same id
    run(committed=False)


def test_ranks_remember_the_percentile_of_each_value_and_stop_at_the_cap() -> None:
    """`Ranks.of` answers what `percentile` does, for a value first seen, seen again, given as
    an int or its float, and beyond `RANKS_KEPT` values (then placed without being kept)."""
    from streamer.core.peers import RANKS_KEPT, Ranks

    reference = tuple(float(v) for v in (0, 0, 1, 2, 2, 2, 5, 9, 14, 30))
    other = (1.0, 2.0, 3.0)
    ranks = Ranks()
    values = [0, 0.0, 1, 2, 2.0, 3, 4.5, 9, 31, -1, *range(40, 40 + RANKS_KEPT + 10)]
    for _ in range(2):
        for value in values:
            assert ranks.of(("*", "events_28d"), value, reference) == percentile(value, reference)
            assert ranks.of(("pro", "events_28d"), value, other) == percentile(value, other)
    assert len(ranks.found["*", "events_28d"]) == RANKS_KEPT


def test_the_mix_and_the_lookups_remembered_per_reference_answer_as_computed_afresh() -> None:
    """`feature_mix` with `Ranks` (its terms remembered per feature) gives the float it gives
    without, and `resolve` finds what `lookup` does, for a group of its own and for `ALL`."""
    from streamer.core.peers import FEATURE, PeerReference, Ranks, feature_mix

    groups = {
        ("pro", FEATURE + "api"): (0.0, 0.0, 3.0, 8.0),
        ("pro", FEATURE + "export"): (0.0, 1.0, 1.0, 2.0),
        ("*", "events_28d"): (1.0, 4.0, 9.0),
        ("pro", "events_28d"): (2.0, 5.0),
    }
    ranks = Ranks()
    for counts in ({"api": 3}, {"api": 8, "export": 1}, {}, {"export": 2}, {"api": 3}):
        fresh = feature_mix(counts, groups, "pro", ("api", "export"))
        assert feature_mix(counts, groups, "pro", ("api", "export"), ranks) == fresh
    reference = PeerReference(0, 0, groups, {"*": 3, "pro": 2}, ranks=ranks)
    for group, min_peers in (("pro", 2), ("pro", 3), ("basic", 2), (None, 4)):
        found = reference.lookup(group, "events_28d", min_peers)
        resolved = reference.resolve(group, "events_28d", min_peers)
        again = reference.resolve(group, "events_28d", min_peers)
        if found is None:
            assert resolved is None
        else:
            assert resolved is not None and (resolved.group, resolved.reference) == found
        assert again is resolved
