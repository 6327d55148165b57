"""The worker's scorer (fake consumer, no broker) and `streamer offline --sort` give the same
answers for a history with profiles, overrides that expire or are cleared, and late ones."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

from streamer.core.config import ScoreConfig
from streamer.offline.runner import OfflineRun, merge_order_key
from streamer.sim.config import SimulationConfig
from streamer.sim.generate import generate_events
from tests.fixtures import FakeEvent
from tests.stream.world import SETTINGS, TOPICS, World, input_messages

SIMULATION = SimulationConfig(accounts=16, months=2, seed=5, usage_density=0.2)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def with_overrides(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per account, one override, the n-th 2n days and n hours after usage starts (alternately
    a band and a score, expiring after 9 days, or 90 for every fifth), every third one cleared
    two days later, and every fourth arriving 3 days late."""
    usage = next(
        datetime.fromisoformat(e["occurred_at"]) for e in events if e["event_type"] == "usage.recorded"
    )
    extra: list[tuple[int, dict[str, Any]]] = []  # (position after which it arrives, event)
    for n, account in enumerate(sorted({event["account_id"] for event in events})):
        when = usage + timedelta(days=2 * n, hours=n)
        override: dict[str, Any] = {
            "event_id": f"{account}-override",
            "event_type": "health.override",
            "account_id": account,
            "occurred_at": stamp(when),
            "reason": "exec sponsor left",
            "author": "ana@example.com",
            "expires_at": stamp(when + timedelta(days=90 if n % 5 == 1 else 9)),
        }
        override |= {"band": "red"} if n % 2 else {"score": 55.5}
        arrives = when + timedelta(days=3 if n % 4 == 0 else 0)
        extra.append((_position(events, arrives), override))
        if n % 3 == 0:
            clear_at = when + timedelta(days=2)
            cleared = {
                "event_id": f"{account}-cleared",
                "event_type": "health.override_cleared",
                "account_id": account,
                "occurred_at": stamp(clear_at),
                "author": "bo@example.com",
            }
            extra.append((_position(events, clear_at), cleared))
    merged = list(events)
    for position, event in sorted(extra, key=lambda item: -item[0]):
        merged.insert(position, event)
    return merged


def _position(events: list[dict[str, Any]], moment: datetime) -> int:
    return next(
        (i for i, e in enumerate(events) if datetime.fromisoformat(e["occurred_at"]) > moment), len(events)
    )


async def through_the_scorer(lines: list[bytes]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Final snapshot per account and the alerts by id, from the worker's scorer fed in batches
    that interleave the topics in file order (as fetches do), restarted part-way over its
    tables (so the rest runs on decoded state, profiles and overrides included)."""
    world = World()
    world.offsets.owned = {(topic, p) for topic in TOPICS.values() for p in range(SETTINGS.partitions)}
    made, ends = input_messages(lines)
    messages = [FakeEvent(message, world.acks, world.journal) for message in made]
    world.offsets.ends = {tp: ends.get(tp, 0) for tp in world.offsets.owned}
    # Restarted once a long override (on time, never cleared, still active at the end) is
    # applied and acknowledged: the rest runs on a decoded account with an active override.
    values = [orjson.loads(line) for line in lines]
    cleared = {value["account_id"] for value in values if value["event_type"] == "health.override_cleared"}
    position = min(
        i
        for i, value in enumerate(values)
        if value["event_type"] == "health.override" and value["account_id"] not in cleared
        if value["expires_at"] > values[-1]["occurred_at"]
        if all(other["occurred_at"] <= value["occurred_at"] for other in values[:i])  # not late
    )
    snapshots: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    done, restarted_once = 0, False
    while done < len(messages):
        batch = [message for message in messages[:done] if not message.acked] if restarted_once else []
        batch += messages[done : done + 700]
        done += 700
        await world.scorer.process(batch)
        await world.scorer.release_idle()  # the worker's timer: topics at their end hold nothing
        if not restarted_once and messages[position].acked:
            snapshots += world.sink.snapshots
            alerts += world.sink.alerts
            assert not world.sink.dead_letters, world.sink.dead_letters[:1]
            # A restart: what was not acknowledged (held by the merge) is read again.
            restarted = World(restarted_from=world)
            restarted.offsets.owned, restarted.offsets.ends = world.offsets.owned, world.offsets.ends
            committed = dict(world.offsets.ends)  # per partition, the first offset not acknowledged
            for message in reversed(messages[:done]):
                if not message.acked:
                    committed[(message.message.topic, message.message.partition)] = message.message.offset
            restarted.offsets.restarts = committed
            world, restarted_once = restarted, True
    snapshots += world.sink.snapshots
    alerts += world.sink.alerts
    assert not world.sink.dead_letters, world.sink.dead_letters[:1]
    assert restarted_once
    assert all(message.acked == 1 for message in messages), "every message applied and acknowledged"
    final = {snapshot["account_id"]: snapshot for snapshot in snapshots}
    return final, {alert["alert_id"]: alert for alert in alerts}


def offline_sort(lines: list[bytes]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """What `streamer offline --sort` answers (last snapshot per account, alerts by id)."""
    snapshots: dict[str, dict[str, Any]] = {}
    alerts: dict[str, Any] = {}
    run = OfflineRun(ScoreConfig(), SETTINGS.partitions)
    ordered = [line for _, line in sorted(enumerate(lines), key=merge_order_key)]
    run.feed(
        iter(ordered),
        on_snapshot=lambda snapshot: snapshots.__setitem__(snapshot["account_id"], snapshot),
        on_alert=lambda alert: alerts.__setitem__(alert["alert_id"], alert),
        on_dead_letter=lambda letter: None,
    )
    return snapshots, alerts


async def test_profiles_and_overrides_give_the_same_answers_in_the_worker_and_offline() -> None:
    events = with_overrides(list(generate_events(SIMULATION)))
    lines = [orjson.dumps(event) for event in events]
    stream_snapshots, stream_alerts = await through_the_scorer(lines)
    offline_snapshots, offline_alerts = offline_sort(lines)
    assert stream_snapshots == offline_snapshots
    assert stream_alerts == offline_alerts
    # The history exercises what it claims: profiles everywhere, overrides that were active
    # (alerts quoting them), none shown past its expiry, and some that expired with no event.
    assert all(snapshot["profile"] is not None for snapshot in stream_snapshots.values())
    assert any(
        reason["signal"] == "override" for alert in stream_alerts.values() for reason in alert["reasons"]
    )
    shown = [snapshot for snapshot in stream_snapshots.values() if snapshot["override"]]
    assert all(snapshot["as_of"] < snapshot["override"]["expires_at"] for snapshot in shown)
    expires = {e["account_id"]: e["expires_at"] for e in events if e["event_type"] == "health.override"}
    cleared = {e["account_id"] for e in events if e["event_type"] == "health.override_cleared"}
    expired = [
        snapshot
        for account, snapshot in stream_snapshots.items()
        if account not in cleared and expires[account] <= snapshot["as_of"]
    ]
    assert expired and all(snapshot["override"] is None for snapshot in expired)
