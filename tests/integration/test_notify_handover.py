"""Two notifiers in one `--group` (a rolling deploy that overlaps them) hand partitions over
without delivering an alert twice.

Found by an audit: a second instance that joined and later left cleanly made each destination
receive alerts twice, although no process crashed. On revocation the worker still held (and
later delivered) the alerts read from the partitions it lost, which the new owner read again;
and the new owner's dedupe log, loaded at its start, never learnt what the other had delivered
since. Now a lane withdraws the queued alerts of revoked partitions and waits for the batch
being sent, and a lane waits, on assignment, until the dedupe log has read what the previous
owner recorded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from streamer.local.stack import StackInfo
from tests.fixtures import free_port
from tests.integration.test_notify import (
    Notifier,
    Receiver,
    alert,
    committed,
    crm_config,
    new_alerts_topic,
    notifier_env,
    publish_alerts,
    wait_for,
)

pytestmark = pytest.mark.integration

ALERTS = 200


class SlowReceiver(Receiver):
    """Answers after a short delay, so that the notifiers' queues are not empty at a handover."""

    DELAY_S = 0.05

    async def _handle(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.DELAY_S)
        return await super()._handle(request)


def config_text(port: int) -> str:
    """crm (one alert a message) and a Slack digest, both on the slow receiver (a digest of at
    most 20 alerts: a larger one lists only its first alerts)."""
    return crm_config(port) + (
        f'[[destinations]]\nname = "slack"\nurl = "http://127.0.0.1:{port}/slack"\n'
        'format = "slack"\ndigest_seconds = 0.3\nmax_digest_alerts = 20\nrate_per_minute = 6000\n'
    )


def publish_slowly(bootstrap: str, topic: str, total: int, seconds: float) -> threading.Thread:
    """Publish alerts 0..total-1 in chunks of ten over about `seconds`, in a thread."""

    def run() -> None:
        for start in range(0, total, 10):
            asyncio.run(publish_alerts(bootstrap, topic, range(start, min(start + 10, total))))
            time.sleep(seconds / (total / 10))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def repeats(receiver: Receiver) -> dict[str, dict[str, int]]:
    return {
        path: {key: count for key, count in receiver.acknowledged(path).items() if count > 1}
        for path in ("/json", "/slack")
    }


def handover(stack: StackInfo, tmp_path: Path, kill: bool) -> tuple[Receiver, Counter[str]]:
    """A runs; B joins in the same group while alerts are published; B leaves (SIGTERM, or SIGKILL
    when `kill`); A alone finishes. Returns the receiver and what crm had acknowledged at B's end."""
    prefix, app_id, topic = new_alerts_topic(stack.bootstrap)
    receiver = SlowReceiver(free_port())
    receiver.start()
    config = tmp_path / "notify.toml"
    config.write_text(config_text(receiver.port))
    env = notifier_env(stack.bootstrap, prefix, app_id)
    args = ["--config", str(config), "--start-from", "earliest"]
    a = Notifier(args, env, tmp_path / "notify-a.log")
    b: Notifier | None = None
    try:
        wait_for("A started", lambda: "notifier started" in a.log.read_text(), a)
        publisher = publish_slowly(stack.bootstrap, topic, ALERTS, 10.0)
        wait_for("A's first deliveries", lambda: len(receiver.acknowledged("/json")) >= 20, a)
        b = Notifier(args, env, tmp_path / "notify-b.log")
        wait_for(
            "B assigned partitions for both destinations",
            lambda: b is not None and b.log.read_text().count("partitions assigned") >= 2,
            b,
        )
        # B delivers for a while, then leaves while the publishing goes on
        seen = len(receiver.log)
        wait_for("deliveries with B in the group", lambda: len(receiver.log) >= seen + 40, b)
        if kill:
            b.kill()
        else:
            b.stop()
            assert b.proc.returncode == 0, b.tail()
        at_end = Counter(receiver.acknowledged("/json"))
        publisher.join(60)
        ids = {alert(n)["alert_id"] for n in range(ALERTS)}
        accounts = {f"acct-{n}" for n in range(ALERTS)}
        try:
            wait_for(
                f"all {ALERTS} alerts at both destinations",
                lambda: (
                    set(receiver.acknowledged("/json")) == ids
                    and set(receiver.acknowledged("/slack")) == accounts
                ),
                a,
            )
        except pytest.fail.Exception:
            missing = (
                ids - set(receiver.acknowledged("/json")),
                accounts - set(receiver.acknowledged("/slack")),
            )
            print(f"missing: {missing}\n{b.tail()}")
            raise
        for name in ("crm", "slack"):
            wait_for(
                f"{name}'s offsets committed",
                lambda name=name: (
                    asyncio.run(committed(stack.bootstrap, f"{app_id}-notify.{name}", topic)) == ALERTS
                ),
                a,
            )
        return receiver, at_end
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_a_second_notifier_joining_and_leaving_cleanly_delivers_nothing_twice(
    stack: StackInfo, tmp_path: Path
) -> None:
    receiver, _ = handover(stack, tmp_path, kill=False)
    try:
        found = repeats(receiver)
        print(f"repeated: /json {len(found['/json'])}, /slack {len(found['/slack'])}")
        assert found == {"/json": {}, "/slack": {}}, f"acknowledged more than once: {found}"
    finally:
        receiver.close()


def test_a_second_notifier_killed_repeats_only_what_it_had_in_flight(
    stack: StackInfo, tmp_path: Path
) -> None:
    """SIGKILL gives the leaving instance no revocation: what it had sent but not yet recorded
    may be sent again by A, and only that: an alert is repeated at most once, and only one that
    had reached the receiver by the kill (crm sends one alert a message: at most one)."""
    receiver, at_end = handover(stack, tmp_path, kill=True)
    try:
        found = repeats(receiver)
        print(f"repeated after SIGKILL: /json {len(found['/json'])}, /slack {len(found['/slack'])}")
        assert all(count == 2 for count in found["/json"].values()), found
        assert set(found["/json"]) <= set(at_end), (
            f"repeated alerts that had not reached the receiver by the kill: {found['/json']}"
        )
        assert len(found["/json"]) <= 1, f"more repeats than the one message in flight: {found}"
    finally:
        receiver.close()
