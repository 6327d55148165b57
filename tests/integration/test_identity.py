"""Who the account is and CSM overrides, through the real broker, worker, Redis and view: a
person POSTs a profile and an override to the view, the view publishes them to Kafka, the
worker applies them, the API shows them; the override expires in event time (at the midnight
tick after its expiry, with no event of the account), and a DELETE removes the next one."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.local.stack import StackInfo
from streamer.partitioning import partition_of
from streamer.stream.topics import INPUT
from tests.fixtures import free_port
from tests.integration.test_notify import Notifier, Receiver
from tests.integration.test_view import PARTITIONS, STREAMER, Deployment, Proc, set_topic_configs, wait_until

pytestmark = pytest.mark.integration

TOKEN = "csm-s3cret"
ACCOUNT = "who-acme"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def neighbour(account: str) -> str:
    """Another account on the same partition (its events move that partition's stream time)."""
    home = partition_of(account, PARTITIONS)
    return next(f"who-other-{n}" for n in range(1000) if partition_of(f"who-other-{n}", PARTITIONS) == home)


def call(
    deployment: Deployment, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        deployment.url + path,
        data=None if body is None else orjson.dumps(body),
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def account(deployment: Deployment) -> dict[str, Any] | None:
    status, body = call(deployment, "GET", f"/api/accounts/{ACCOUNT}")
    return body if status == 200 else None


def publish(deployment: Deployment, folder: Path, name: str, events: list[dict[str, Any]]) -> None:
    path = folder / f"{name}.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    deployment.replay(path)


def started(account_id: str, when: datetime, event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "subscription.started",
        "account_id": account_id,
        "occurred_at": stamp(when),
        "subscription_id": f"{account_id}-s1",
        "plan": "pro",
        "amount": "900.00",
        "currency": "USD",
        "interval": "month",
        "seats": 5,
    }


def three_days_of_use(prefix: str) -> list[dict[str, Any]]:
    """ACCOUNT and its partition neighbour started three days ago; ACCOUNT used reports on each day since."""
    now = datetime.now(UTC)
    history = [
        started(ACCOUNT, now - timedelta(days=3), f"{prefix}-1"),
        started(neighbour(ACCOUNT), now - timedelta(days=3), f"{prefix}-2"),
    ]
    history += [
        {
            "event_id": f"{prefix}-u{day}",
            "event_type": "usage.recorded",
            "account_id": ACCOUNT,
            "occurred_at": stamp(now - timedelta(days=day, hours=1)),
            "user_id": f"u{day}",
            "feature": "reports",
        }
        for day in (2, 1, 0)
    ]
    return history


def test_a_csm_override_posted_to_the_view_is_applied_shown_and_expires_in_event_time(
    stack: StackInfo, tmp_path: Path
) -> None:
    deployment = Deployment(stack.bootstrap, stack.redis_url, tmp_path)
    receiver = Receiver(free_port())
    receiver.start()
    notifier: Notifier | None = None
    try:
        deployment.create_topics()
        # The CSM's channel: `streamer notify` routes the alerts of ana's accounts to a webhook.
        routes = tmp_path / "notify.toml"
        routes.write_text(
            f"""
[retry]
initial_seconds = 0.2
max_seconds = 1
[[destinations]]
name = "ana"
url = "http://127.0.0.1:{receiver.port}/json"
owners = ["ana@example.com"]
"""
        )
        notifier = Notifier(
            ["--config", str(routes), "--start-from", "earliest", "--metrics-port", str(free_port())],
            deployment.env(),
            tmp_path / "notify.log",
        )
        # A worker whose input bounds admit event times up to 3 days ahead: the expiry's midnight
        # tick is reached by an event dated after it, whatever the time of day the test runs.
        config = tmp_path / "score.toml"
        config.write_text("[input]\nmax_skew_hours = 72\n")
        env = {**deployment.env(), "HEALTHSTREAM_SCORE_CONFIG": str(config)}
        deployment.procs.append(Proc([STREAMER, "worker"], env, tmp_path / "worker.log"))
        deployment.start_view(HEALTHSTREAM_VIEW_TOKEN=TOKEN)

        now = datetime.now(UTC)
        history = three_days_of_use("who")
        publish(deployment, tmp_path, "history", history)
        wait_until("the account in the view", lambda: account(deployment) is not None)

        profile = {"name": "Acme Corp", "owner": "ana@example.com", "segment": "enterprise", "tier": "gold"}
        status, answer = call(deployment, "POST", f"/api/accounts/{ACCOUNT}/profile", profile)
        assert status == 202 and answer["event_type"] == "account.updated", answer
        expires = datetime.now(UTC) + timedelta(minutes=5)
        override = {"band": "red", "reason": "exec sponsor left", "author": "ana@example.com"}
        status, answer = call(
            deployment, "POST", f"/api/accounts/{ACCOUNT}/override", override | {"expires_at": stamp(expires)}
        )
        assert status == 202 and answer["event_id"].startswith("view-"), answer

        def overridden() -> bool:
            state = account(deployment)
            return bool(state and state["override"] and state["profile"])

        wait_until("the override and the profile in the view", overridden)
        state = account(deployment)
        assert state is not None
        assert state["band"] == "red" and state["override"]["band"] == "red"
        assert state["override"]["author"] == "ana@example.com"
        assert state["override"]["expires_at"] == stamp(expires)
        assert state["profile"] == profile | {"attributes": {}}
        # A profile POST without a body is refused: taken as {}, it cleared the profile (the
        # assertion on the owner after the expiry below reads the same profile still).
        status, answer = call(deployment, "POST", f"/api/accounts/{ACCOUNT}/profile")
        assert status == 400 and "the body is empty" in answer["error"], answer
        assert state["reasons"][0]["signal"] == "override"
        assert "overridden to red by ana@example.com: 'exec sponsor left'" in state["reasons"][0]["message"]
        # The override is news: an alert naming who owns the account, delivered to ana's webhook.
        assert state["override"]["computed_band"] != "red", "the premise: the model does not say red"
        alerts = [a for a in state["recent_alerts"] if a["rule"] == "band_worsened" and a["band"] == "red"]
        assert alerts and alerts[0]["profile"]["owner"] == "ana@example.com"
        wait_until(
            "the override's alert at ana's webhook",
            lambda: alerts[0]["alert_id"] in receiver.acknowledged("/json"),
        )

        # Expiry in event time: an event of another account on the partition, dated just after
        # the midnight that follows the expiry, moves stream time past it; the worker re-scores
        # the account at that midnight tick although the account itself has no new event.
        midnight = datetime.combine(expires.date() + timedelta(days=1), datetime.min.time(), UTC)
        later = started(neighbour(ACCOUNT), midnight + timedelta(minutes=1), "who-3")
        publish(deployment, tmp_path, "later", [later | {"subscription_id": "who-s2", "amount": "1.00"}])

        def expired() -> bool:
            state = account(deployment)
            return bool(state and state["override"] is None and state["as_of"] >= stamp(midnight))

        wait_until("the override to expire at the midnight tick", expired)
        state = account(deployment)
        assert state is not None and state["as_of"] == stamp(midnight)
        assert state["profile"]["owner"] == "ana@example.com"
        assert all(reason["signal"] != "override" for reason in state["reasons"])

        # Another override, removed by DELETE (a later event wins over the earlier one).
        status, _ = call(
            deployment,
            "POST",
            f"/api/accounts/{ACCOUNT}/override",
            {
                "score": 12.5,
                "reason": "champion left",
                "author": "bo@example.com",
                "expires_at": stamp(now + timedelta(days=30)),
            },
        )
        assert status == 202
        wait_until(
            "the score override",
            lambda: ((account(deployment) or {}).get("override") or {}).get("score") == 12.5,
        )
        assert (account(deployment) or {})["score"] == 12.5
        status, answer = call(
            deployment, "DELETE", f"/api/accounts/{ACCOUNT}/override", {"author": "bo@example.com"}
        )
        assert status == 202 and answer["event_type"] == "health.override_cleared", answer
        wait_until(
            "the override to be removed", lambda: (account(deployment) or {"override": 1})["override"] is None
        )
        for proc in deployment.procs:
            assert proc.alive, proc.tail()
        assert notifier.proc.poll() is None, notifier.tail()
        assert max(receiver.acknowledged("/json").values()) == 1  # nothing sent twice
    finally:
        if notifier is not None:
            notifier.stop()
        receiver.close()
        deployment.close()


def test_after_a_write_the_broker_refused_the_views_next_write_is_published(
    stack: StackInfo, tmp_path: Path
) -> None:
    """A write the broker refuses (an operator set the input topic's record limit too low) is a
    503 saying nothing was published; once the topic takes records again, the next write is
    published and applied. The refused batch had taken its partition's sequence numbers in the
    view's idempotent producer, and every later write to that partition was refused as out of
    order until the view restarted."""
    deployment = Deployment(stack.bootstrap, stack.redis_url, tmp_path)
    try:
        deployment.create_topics()
        deployment.start_worker()
        deployment.start_view(HEALTHSTREAM_VIEW_TOKEN=TOKEN)
        publish(deployment, tmp_path, "history", three_days_of_use("refused"))
        wait_until("the account in the view", lambda: account(deployment) is not None)
        profile = {"name": "Acme Corp", "owner": "ana@example.com", "segment": "enterprise", "tier": "gold"}
        status, answer = call(deployment, "POST", f"/api/accounts/{ACCOUNT}/profile", profile)
        assert status == 202 and answer["topic"] == deployment.topic("subscriptions"), answer

        topic = deployment.topic("subscriptions")
        asyncio.run(set_topic_configs(stack.bootstrap, topic, {**INPUT, "max.message.bytes": "128"}))
        override = {"band": "red", "reason": "exec sponsor left", "author": "ana@example.com"}
        override["expires_at"] = stamp(datetime.now(UTC) + timedelta(days=2))
        status, answer = call(deployment, "POST", f"/api/accounts/{ACCOUNT}/override", override)
        assert status == 503 and "nothing was published" in answer["error"], answer

        asyncio.run(set_topic_configs(stack.bootstrap, topic, INPUT))
        status, answer = call(deployment, "POST", f"/api/accounts/{ACCOUNT}/override", override)
        assert status == 202, answer
        wait_until("the override in the view", lambda: bool((account(deployment) or {}).get("override")))
        for proc in deployment.procs:
            assert proc.alive, proc.tail()
    finally:
        deployment.close()


def test_on_a_replayed_history_a_write_dated_now_is_refused_and_one_dated_in_it_is_applied(
    stack: StackInfo, tmp_path: Path
) -> None:
    """An override posted from the account page on a history replayed from the past (the README's
    first session) was dated now: it moved its partition to today, re-scored every account there
    as of today with a burst of silence alerts, and nothing could undo it."""
    deployment = Deployment(stack.bootstrap, stack.redis_url, tmp_path)
    try:
        deployment.create_topics()
        deployment.start_worker()
        deployment.start_view(HEALTHSTREAM_VIEW_TOKEN=TOKEN)
        ended = datetime(2024, 8, 31, 23, tzinfo=UTC)
        history = [
            started(ACCOUNT, ended - timedelta(days=20), "old-1"),
            started(neighbour(ACCOUNT), ended - timedelta(days=20), "old-2"),
        ]
        publish(deployment, tmp_path, "history", history)
        wait_until("the account in the view", lambda: account(deployment) is not None)
        wait_until(
            "its partition's stream time in the view",
            lambda: bool(call(deployment, "GET", "/healthz")[1].get("as_of")),
        )
        override = {"band": "red", "reason": "exec sponsor left", "author": "ana@example.com"}
        override["expires_at"] = stamp(ended + timedelta(days=30))

        status, answer = call(deployment, "POST", f"/api/accounts/{ACCOUNT}/override", override)
        assert status == 409, answer
        assert "the portfolio's events end at 2024-08-11T23:00:00Z" in answer["error"], answer

        dated = {**override, "occurred_at": stamp(ended - timedelta(days=19))}
        status, answer = call(deployment, "POST", f"/api/accounts/{ACCOUNT}/override", dated)
        assert status == 202, answer

        def overridden() -> dict[str, Any] | None:
            shown = account(deployment)
            return shown if shown and shown["override"] else None

        wait_until("the override applied", lambda: overridden() is not None)
        shown = overridden()
        assert shown is not None and shown["band"] == "red" and shown["as_of"].startswith("2024-08-12"), shown
        neighbour_now = call(deployment, "GET", f"/api/accounts/{neighbour(ACCOUNT)}")[1]
        assert neighbour_now["as_of"] < "2024-09", neighbour_now  # its partition was not moved to today
    finally:
        deployment.close()
