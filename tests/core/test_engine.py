"""The partition engine: duplicates, allowed lateness, out-of-order events, idle re-scoring, bounds."""

from __future__ import annotations

import random

from streamer.core.account import INDEXED_FROM, SeenIds
from streamer.core.config import Limits, ScoreConfig
from streamer.core.engine import ACCEPTED, DUPLICATE, REJECTED
from streamer.core.score import evaluate
from streamer.core.snapshot import build_snapshot
from streamer.core.support import HORIZON_DAYS as SUPPORT_DAYS
from streamer.core.usage import HORIZON_DAYS as USAGE_DAYS

from .events import (
    DAY_MS,
    at,
    canceled,
    changed,
    decode,
    ms,
    nps,
    opened,
    raw,
    resolved,
    stamp,
    started,
    usage,
)
from .harness import Feed


def test_duplicate_event_id_changes_nothing() -> None:
    feed = Feed()
    first = started("acme", at(1), "100", event_id="evt-1")
    feed(first, usage("acme", at(2), "u1"))
    before = feed.snapshot("acme")
    timeline = list(feed.account("acme").revenue.timeline)
    [outcome] = feed(first)
    assert outcome.status == DUPLICATE
    assert outcome.alerts == []
    assert feed.snapshot("acme") == before
    assert feed.account("acme").revenue.timeline == timeline


def test_duplicate_id_with_other_content_is_still_a_duplicate() -> None:
    feed = Feed()
    feed(started("acme", at(1), "100", event_id="evt-1"))
    [outcome] = feed(started("acme", at(1, 1), "999", sub="s2", event_id="evt-1"))
    assert outcome.status == DUPLICATE
    assert feed.snapshot("acme")["mrr"] == "100.00"


def test_same_event_id_for_another_account_is_not_a_duplicate() -> None:
    feed = Feed()
    feed(started("acme", at(1), "100", event_id="evt-1"))
    [outcome] = feed(started("globex", at(1), "100", event_id="evt-1"))
    assert outcome.status == ACCEPTED


def test_dedupe_lookup_answers_alike_with_few_and_with_many_keys() -> None:
    """A busy account's keys are also kept in a set (`INDEXED_FROM` on): membership must agree
    with a scan of the buffer through adds, forgets and the crossing back below the threshold."""
    rng = random.Random(7)
    seen = SeenIds()
    added: list[bytes] = []
    gone: list[bytes] = []
    at = 0
    modes: set[bool] = set()  # whether the set answered, over the steps
    for step in range(6_000):
        if step % 400 == 399:  # forget an older prefix: to below the threshold, or not
            seen.forget_before(at - rng.choice((150, 700)))
            kept = len(seen)
            gone, added = added[: len(added) - kept], added[len(added) - kept :]
        key = rng.randbytes(8)
        if key not in seen:
            at += 1
            seen.add(key, at)
            added.append(key)
        probes = [rng.choice(added), rng.randbytes(8), key[4:] + added[0][:4], *gone[-3:]]
        for probe in probes:
            assert (probe in seen) == (seen.index(probe) >= 0) == (probe in added), (step, len(seen))
        modes.add(seen._index is not None)
        assert (seen._index is not None) == (len(seen) >= INDEXED_FROM)
    assert modes == {True, False}


def test_dedupe_keys_match_only_on_their_own_8_byte_boundary() -> None:
    seen = SeenIds()
    seen.add(b"AAAAbbbb", 1)
    seen.add(b"ccccDDDD", 2)
    straddling = b"bbbbcccc"  # in the buffer, but across two keys
    assert seen.index(straddling) == -1
    seen.add(straddling, 3)
    assert (seen.index(straddling), seen.index(b"ccccDDDD"), len(seen)) == (2, 1, 3)
    seen.forget_before(2)  # drops the oldest up to the first recent one
    assert (seen.at_list(), seen.index(b"AAAAbbbb"), seen.index(straddling)) == ([2, 3], -1, 1)
    seen.add(b"eeeeeeee", 0)
    seen.forget_before(3)  # stops at the first recent one: 0 is behind it
    assert seen.at_list() == [3, 0] and len(seen.keys) == 16
    seen.forget_before(5)
    assert len(seen) == 0 and seen.keys == bytearray()


def test_event_exactly_at_the_allowed_lateness_is_accepted() -> None:
    feed = Feed()
    feed(usage("globex", at(10), "u1"))
    [outcome] = feed(started("acme", at(3), "100"))  # exactly 7 days behind stream time
    assert outcome.status == ACCEPTED


def test_event_later_than_the_allowed_lateness_is_rejected_with_a_reason() -> None:
    feed = Feed()
    feed(started("acme", at(1), "100"), usage("globex", at(10), "u1"))  # another account moves time
    [outcome] = feed(changed("acme", "2024-01-03T23:59:59.999Z", "500"))
    assert outcome.status == REJECTED
    assert outcome.reason == (
        "occurred_at 2024-01-03T23:59:59.999Z is more than 7 days behind the partition's stream time "
        "2024-01-11T00:00:00Z: too late to fold in (allowed lateness is time.allowed_lateness_days); "
        "backfill history with `streamer offline` instead"
    )
    assert feed.snapshot("acme")["mrr"] == "100.00"
    assert feed.mrr_at("acme", at(5)) == 100_000_000


def test_configured_lateness() -> None:
    config = ScoreConfig.model_validate({"time": {"allowed_lateness_days": 1}})
    feed = Feed(config)
    feed(usage("acme", at(10)))
    assert [o.status for o in feed(usage("acme", at(9)), usage("acme", at(8, 23)))] == [ACCEPTED, REJECTED]


def test_rejected_late_event_does_not_count_as_seen() -> None:
    feed = Feed()
    feed(usage("acme", at(10)))
    late = usage("acme", at(1), event_id="late-1")
    assert [o.status for o in feed(late, late)] == [REJECTED, REJECTED]


def test_out_of_order_events_within_lateness_are_folded_in() -> None:
    in_order, shuffled = Feed(), Feed()
    events = [
        started("acme", at(2), "100", seats=5),
        opened("acme", at(2, 12), "t1", "high"),
        usage("acme", at(3), "u1"),
        resolved("acme", at(4), "t1", 1),
        changed("acme", at(5), "150", seats=5),
        usage("acme", at(6), "u2"),
        nps("acme", at(7), 9),
        canceled("acme", at(8), effective_at=at(40)),
        usage("acme", at(8, 12), "u3"),
    ]
    in_order(*events)
    shuffled(*events[::-1])  # newest first: all within 7 days of the first to arrive
    assert all(o.status == ACCEPTED for o in shuffled.outcomes)
    assert shuffled.snapshot("acme") == in_order.snapshot("acme")
    assert shuffled.account("acme").revenue.movements() == in_order.account("acme").revenue.movements()


def test_stream_time_rescoring_updates_idle_accounts() -> None:
    feed = Feed()
    feed(started("acme", at(0, 9), "100"), usage("acme", at(0, 10)))
    assert feed.snapshot("acme")["as_of"] == stamp(at(0, 10))
    feed(usage("globex", at(5, 12)))
    snap = feed.snapshot("acme")
    assert snap["as_of"] == stamp(at(5))  # the last daily tick passed
    assert snap["metrics"]["days_since_last_use"] == round(4 + 14 / 24, 4)


def test_dirty_accounts_are_reported_once() -> None:
    feed = Feed()
    feed(started("acme", at(0), "100"), started("globex", at(0), "100"))
    assert feed.engine.take_dirty() == ["acme", "globex"]
    assert feed.engine.take_dirty() == []


def test_account_state_stays_bounded_over_two_years() -> None:
    config = ScoreConfig(
        limits=Limits(max_users=200, max_tickets=50, max_respondents=20, max_survey_answers=20)
    )
    feed = Feed(config)
    feed(started("acme", at(0), "100", seats=50))
    n = 0
    for d in range(730):
        for k in range(6):
            n += 1
            feed(usage("acme", at(d, 2 + 3 * k), f"user-{n % 1000}", f"feature-{n % 40}"))
        if d % 3 == 0:
            feed(opened("acme", at(d, 20), f"t{d}", "normal"), resolved("acme", at(d, 22), f"t{d}", 1))
        if d % 5 == 0:
            feed(nps("acme", at(d, 21), d % 11, f"r{d}"))
    account = feed.account("acme")
    assert account.usage.user_count() <= 200
    assert len(account.usage.bucket_days) <= USAGE_DAYS  # events and distinct users per day
    assert account.support.ticket_count() <= 50
    assert account.support.day_count() <= SUPPORT_DAYS
    assert account.sentiment.nps_count <= 20
    assert len(account.seen) <= 10 * 12  # ids of the last lateness window (+ a day) only
    assert len(account.alerts.daily_max) <= config.alerts.score_drop_window_days + 1
    assert account.seen and min(account.seen.at_list()) >= ms(at(729)) - 9 * DAY_MS


def test_event_built_from_raw_dict() -> None:
    event = decode(raw("usage.recorded", "acme", at(1), user_id="u", feature="f"))
    assert Feed()(event)[0].status == ACCEPTED


def test_a_taken_snapshot_is_kept_compact_and_given_again_as_published() -> None:
    """Once an account's snapshot is taken its evaluation is let go (it is about five times the
    size of the kept snapshot), and asking again gives exactly what was published, also after
    usage was applied without a re-scoring (within `usage_rescore_minutes`), where evaluating
    again at the account's last scoring instant gives another record: the projection's
    re-staging publishes this answer again."""
    feed = Feed()
    feed(started("acme", at(1), "100"), usage("acme", at(2), "u1"))
    engine = feed.engine
    assert engine.take_dirty() == ["acme"]
    published = engine.snapshot("acme")
    assert "acme" not in engine.evaluations
    assert len(engine.published) == 1

    feed(usage("acme", at(2, minute=5), "u2", count=40))  # within the hour: not re-scored
    assert engine.take_dirty() == []
    account = feed.account("acme")
    evaluation = evaluate(
        account.inputs(engine.tracked(account, account.now)),
        account.now,
        feed.config,
        engine.peers.at(account.now),
    )
    evaluated_again = build_snapshot(account, evaluation, "USD")
    assert evaluated_again != published  # what re-staging published before the snapshot was kept
    assert engine.snapshot("acme") == published
    engine.snapshot("acme")["score"] = -1  # each answer is the caller's own
    assert engine.snapshot("acme") == published


def test_a_snapshot_asked_for_before_it_is_published_is_the_one_published() -> None:
    """Re-staging may take a scored account's snapshot before the batch publishes it: both get
    the same record, built once from the evaluation."""
    feed = Feed()
    feed(started("acme", at(1), "100"), usage("acme", at(2), "u1"))
    staged = feed.engine.snapshot("acme")
    [dirty] = feed.engine.take_dirty()
    assert feed.engine.snapshot(dirty) == staged
