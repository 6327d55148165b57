"""`streamer notify` against the real broker and a local HTTP receiver on 127.0.0.1.

Alerts published to the alerts topic reach the receiver (generic JSON and Slack digests); while
the receiver answers 503 or refuses connections nothing is lost and, once it is back, nothing is
sent twice; a notifier killed with SIGKILL and restarted sends nothing twice, and one reading
the whole topic again under a new consumer group sends nothing at all (the dedupe log). A dead
destination holds back only its own alerts (each reads in a group of its own), and an upgrade
from the one shared group loses and repeats nothing.
We wait on conditions against generous deadlines, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import OffsetAndMetadata

from streamer.local.stack import StackInfo
from streamer.notify.sentlog import KafkaSentLog
from streamer.settings import Settings
from streamer.stream.access import KafkaAccess
from tests.fixtures import free_port, stop_process, until_topic_configs
from tests.integration.test_view import set_topic_configs

pytestmark = pytest.mark.integration

STREAMER = str(Path(sys.executable).parent / "streamer")
DEADLINE_S = 90.0


def slack_accepts(payload: dict[str, Any]) -> bool:
    """Slack's limits on a message's blocks: a section's text at most 3,000 characters, a
    header's 150; and (our own rule) a notification line without mrkdwn control sequences,
    which would ping (`<!channel>`) or plant a link."""
    limits = {"section": 3000, "header": 150}
    if "<" in payload["text"] or ">" in payload["text"]:
        return False
    return all(
        len(block["text"]["text"]) <= limits.get(block["type"], 3000)
        for block in payload["blocks"]
        if "text" in block
    )


class Receiver:
    """An aiohttp webhook receiver in a thread: `ok`, `unavailable` (503) or stopped (refuses)."""

    def __init__(self, port: int) -> None:
        self.port, self.mode = port, "ok"
        self.log: list[tuple[str, int, list[str]]] = []  # (path, status answered, alert keys)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        if request.path == "/json":
            keys = [alert["alert_id"] for alert in payload["alerts"]]
        else:  # Slack: the account ids in bold in each section
            keys = [
                match
                for block in payload["blocks"]
                if block["type"] == "section"
                for match in re.findall(r"\*(acct-\d+)\*", block["text"]["text"])
            ]
        status = 200 if self.mode == "ok" else 503
        if request.path == "/slack" and not slack_accepts(payload):
            status = 400  # as Slack answers a block over its limits: the whole message is lost
        self.log.append((request.path, status, keys))
        return web.Response(status=status, text={200: "ok", 400: "invalid_blocks"}.get(status, "unavailable"))

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/json", self._handle)
        app.router.add_post("/slack", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def acknowledged(self, path: str) -> Counter[str]:
        """How many times each alert was answered 200 on `path`."""
        answered = [keys for p, status, keys in list(self.log) if p == path and status == 200]
        return Counter(key for keys in answered for key in keys)

    def failed_requests(self) -> int:
        return sum(1 for _, status, _ in list(self.log) if status != 200)


class Notifier:
    """A `streamer notify` subprocess with its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as handle:
            self.proc = subprocess.Popen(
                [STREAMER, "notify", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
            )

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.proc, 20)


def alert(n: int) -> dict[str, Any]:
    return {
        "alert_id": f"id-{n:04d}",
        "account_id": f"acct-{n}",
        "rule": "silence" if n % 2 else "payment_failed",
        "severity": "critical" if n % 3 == 0 else "warning",
        "raised_at": "2024-03-01T00:00:00Z",
        "score": 35.0,
        "band": "red",
        "previous_score": 45.0,
        "previous_band": "yellow",
        "mrr": "99.00",
        # one with an override's reason of 1,000 '&' (within the contract): 5,000 characters escaped
        "reasons": [
            {
                "signal": "recency_days",
                "value": 20,
                "baseline": 14,
                "message": "no usage" if n != 7 else "&" * 1000,
            }
        ]
        * (1 if n != 7 else 3),
        # one named to ping a whole Slack channel and plant a link (the contract allows < > |)
        **(
            {
                "profile": {  # as the workers write it: every field (the notifier checks the shape)
                    "name": "<!channel> <https://evil.example|Reset your password>",
                    "owner": None,
                    "segment": None,
                    "tier": None,
                    "attributes": {},
                }
            }
            if n == 1000
            else {}
        ),
    }


async def create_alerts_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        await admin.close()


def new_alerts_topic(bootstrap: str) -> tuple[str, str, str]:
    """A test's own topic prefix, app id and alerts topic (created, 4 partitions)."""
    tag = uuid.uuid4().hex[:12]
    prefix, app_id = f"t{tag}.", f"hs-{tag}"
    asyncio.run(create_alerts_topic(bootstrap, f"{prefix}alerts"))
    return prefix, app_id, f"{prefix}alerts"


async def publish_alerts(bootstrap: str, topic: str, numbers: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in numbers:
            await producer.send_and_wait(topic, orjson.dumps(alert(n)), key=f"acct-{n}".encode())
    finally:
        await producer.stop()


async def group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Partition -> the offset `group` committed there, for `topic`'s partitions it has one for."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0
    }


async def committed_partitions(bootstrap: str, group: str, topic: str) -> int:
    """How many partitions of `topic` `group` holds an offset for."""
    return len(await group_offsets(bootstrap, group, topic))


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """The offsets `group` committed on `topic`, summed over its partitions."""
    return sum((await group_offsets(bootstrap, group, topic)).values())


def notifier_env(bootstrap: str, prefix: str, app_id: str) -> dict[str, str]:
    """A notifier's environment: none of the caller's HEALTHSTREAM_* settings, this test's topics."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEALTHSTREAM_")},
        "HEALTHSTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "HEALTHSTREAM_TOPIC_PREFIX": prefix,
        "HEALTHSTREAM_APP_ID": app_id,
    }


def crm_config(port: int) -> str:
    """Short retries and one JSON destination, "crm", on the receiver at `port` (its table open,
    so that a test may add settings to it)."""
    return f"""
[retry]
initial_seconds = 0.2
max_seconds = 1
[[destinations]]
name = "crm"
url = "http://127.0.0.1:{port}/json"
rate_per_minute = 6000
"""


def wait_for(what: str, check: Callable[[], bool], notifier: Notifier | None = None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if notifier is not None and notifier.proc.poll() is not None:
            pytest.fail(f"notify exited ({notifier.proc.returncode}) waiting for {what}:\n{notifier.tail()}")
        if time.monotonic() > deadline:
            tail = notifier.tail() if notifier else ""
            pytest.fail(f"no {what} within {DEADLINE_S:.0f} s\n{tail}")
        time.sleep(0.1)


def wait_started(notifier: Notifier, bootstrap: str, app_id: str, topic: str) -> None:
    """Until the notifier has started and its `crm` destination's group holds an offset for each
    of the topic's 4 partitions (its starting point committed)."""
    wait_for(
        "crm's start committed",
        lambda: (
            asyncio.run(committed_partitions(bootstrap, f"{app_id}-notify.crm", topic)) == 4
            and "notifier started" in notifier.log.read_text()
        ),
        notifier,
    )


def metric(port: int, name: str, destination: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return -1
    pattern = rf'^{name}\{{destination="{destination}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(free_port())
    server.start()
    yield server
    server.close()


def test_notify_delivers_through_outages_and_restarts_without_repeats(
    stack: StackInfo, receiver: Receiver, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:12]
    prefix, app_id = f"t{tag}.", f"hs-{tag}"
    topic = f"{prefix}alerts"

    async def create_topic() -> None:
        await create_alerts_topic(stack.bootstrap, topic)

    async def publish(numbers: range) -> None:
        await publish_alerts(stack.bootstrap, topic, numbers)

    async def committed_all() -> bool:  # by each destination's group
        groups = [f"{app_id}-notify.{name}" for name in ("crm", "slack")]
        return all([await committed(stack.bootstrap, group, topic) == published for group in groups])

    asyncio.run(create_topic())
    config = tmp_path / "notify.toml"
    config.write_text(
        crm_config(receiver.port)
        + f"""burst = 50
[[destinations]]
name = "slack"
url = "http://127.0.0.1:{receiver.port}/slack"
format = "slack"
digest_seconds = 0.5
rate_per_minute = 6000
"""
    )
    env = notifier_env(stack.bootstrap, prefix, app_id)
    port = free_port()
    args = ["--config", str(config), "--start-from", "earliest", "--metrics-port", str(port)]
    ids = lambda numbers: {alert(n)["alert_id"] for n in numbers}  # noqa: E731
    accounts = lambda numbers: {f"acct-{n}" for n in numbers}  # noqa: E731

    def everything(numbers: range) -> Callable[[], bool]:
        return lambda: (
            set(receiver.acknowledged("/json")) == ids(numbers)
            and set(receiver.acknowledged("/slack")) == accounts(numbers)
        )

    def no_repeats() -> None:
        for path in ("/json", "/slack"):
            repeated = {key: count for key, count in receiver.acknowledged(path).items() if count > 1}
            assert not repeated, f"acknowledged more than once on {path}: {repeated}"

    notifier = Notifier(args, env, tmp_path / "notify-1.log")
    try:
        # 1. published alerts reach both destinations
        published = 20
        asyncio.run(publish(range(20)))
        wait_for("the first 20 alerts at the receiver", everything(range(20)), notifier)
        no_repeats()

        # 2. the receiver answers 503, then refuses connections, then comes back
        receiver.mode = "unavailable"
        published = 40
        asyncio.run(publish(range(20, 40)))
        wait_for("503s answered", lambda: receiver.failed_requests() >= 4, notifier)
        receiver.stop()
        retried = metric(port, "healthstream_notify_retried_total", "crm")
        wait_for(
            "retries against a refused connection",
            lambda: metric(port, "healthstream_notify_retried_total", "crm") >= retried + 3,
            notifier,
        )
        receiver.mode = "ok"
        receiver.start()
        wait_for("all 40 alerts after the outage", everything(range(40)), notifier)
        no_repeats()
        assert metric(port, "healthstream_notify_sent_total", "crm") == 40

        # 3. SIGKILL once everything is acknowledged and committed; restart; nothing twice
        wait_for("offsets committed for all 40", lambda: asyncio.run(committed_all()), notifier)
        notifier.kill()
        published = 50
        asyncio.run(publish(range(40, 50)))
        notifier = Notifier(args, env, tmp_path / "notify-2.log")
        wait_for("all 50 alerts after the restart", everything(range(50)), notifier)
        no_repeats()
        # Killed only once its dedupe records are in Kafka (its commits follow them): killed as
        # soon as the receiver had all 50, the last few were lost on a busy machine, and step 4's
        # new group delivered those again (90 pairs loaded of 100; at least once, as designed).
        wait_for("offsets committed for all 50", lambda: asyncio.run(committed_all()), notifier)
        notifier.kill()

        # 4. a new group reads the topic from its start: the dedupe log holds every one back
        before = list(receiver.log)
        fresh = [*args, "--group", f"{app_id}-again"]
        notifier = Notifier(fresh, env, tmp_path / "notify-3.log")
        for name in ("crm", "slack"):
            wait_for(
                f"50 deduped for {name}",
                lambda name=name: metric(port, "healthstream_notify_deduped_total", name) == 50,
                notifier,
            )
        assert receiver.log == before, "a destination received an alert it already had"
    finally:
        notifier.stop()


class HostileReceiver(Receiver):
    """Answers each alert's first request 429 with `Retry-After: ²` (a digit to `str.isdigit()`,
    not to `float()`), its second 200 with a body announced as 8 GiB and streamed until the
    client hangs up."""

    BODY_LIMIT = 256 * 2**20  # streamed at most, should the client read on

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.answered: Counter[str] = Counter()
        self.streamed: list[int] = []  # bytes of each endless body written before the hang-up

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        [key] = [alert["alert_id"] for alert in (await request.json())["alerts"]]
        self.answered[key] += 1
        if self.answered[key] == 1:
            self.log.append((request.path, 429, [key]))
            return web.Response(status=429, headers={"Retry-After": "²"})
        self.log.append((request.path, 200, [key]))
        if self.answered[key] > 2:
            return web.Response(text="ok")
        reply = web.StreamResponse()
        reply.content_length = 8 * 2**30
        await reply.prepare(request)
        chunk, written = b"x" * 2**16, 0
        try:
            while written < self.BODY_LIMIT:
                await reply.write(chunk)
                written += len(chunk)
        except ConnectionError:
            pass
        self.streamed.append(written)
        return reply


def test_notify_outlives_an_unreadable_retry_after_and_an_endless_body(
    stack: StackInfo, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:12]
    prefix, app_id = f"t{tag}.", f"hs-{tag}"
    asyncio.run(create_alerts_topic(stack.bootstrap, f"{prefix}alerts"))
    receiver = HostileReceiver(free_port())
    receiver.start()
    config = tmp_path / "notify.toml"
    config.write_text(crm_config(receiver.port))
    env = notifier_env(stack.bootstrap, prefix, app_id)
    notifier = Notifier(["--config", str(config), "--start-from", "earliest"], env, tmp_path / "notify.log")
    try:
        asyncio.run(publish_alerts(stack.bootstrap, f"{prefix}alerts", range(3)))
        expected = {alert(n)["alert_id"] for n in range(3)}
        wait_for(
            "the 3 alerts acknowledged", lambda: set(receiver.acknowledged("/json")) == expected, notifier
        )
        wait_for("the 3 endless bodies hung up on", lambda: len(receiver.streamed) == 3, notifier)
        assert notifier.proc.poll() is None, notifier.tail()
        assert receiver.acknowledged("/json") == Counter(expected), "an acknowledged alert was sent again"
        assert all(written < receiver.BODY_LIMIT for written in receiver.streamed), receiver.streamed
    finally:
        notifier.stop()
        receiver.close()


def test_a_hostile_alert_is_skipped_and_the_alerts_around_it_are_delivered(
    stack: StackInfo, receiver: Receiver, tmp_path: Path
) -> None:
    """An alert_id of half a megabyte made the dedupe log's record larger than the broker takes
    (every destination retried it for ever, delivering nothing more); a field nested 300 deep
    could not be written again, and the JSON digest holding it was rejected with its valid
    alerts. Both are skipped now, in a digest and one by one."""
    tag = uuid.uuid4().hex[:12]
    prefix, app_id = f"t{tag}.", f"hs-{tag}"
    topic = f"{prefix}alerts"
    asyncio.run(create_alerts_topic(stack.bootstrap, topic))
    config = tmp_path / "notify.toml"
    config.write_text(
        crm_config(receiver.port)
        + f"""[[destinations]]
name = "digest"
url = "http://127.0.0.1:{receiver.port}/json"
digest_seconds = 0.5
rate_per_minute = 6000
"""
    )
    huge = orjson.dumps({**alert(1), "alert_id": "x" * 530_000})
    deep = orjson.dumps(alert(2))[:-1] + b', "x": ' + b"[" * 300 + b"1" + b"]" * 300 + b"}"

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", max_request_size=2**21)
        await producer.start()
        try:  # one key, one partition: the hostile records sit between the good ones
            for value in (orjson.dumps(alert(0)), huge, deep, orjson.dumps(alert(3))):
                await producer.send_and_wait(topic, value, key=b"acct")
        finally:
            await producer.stop()

    env = notifier_env(stack.bootstrap, prefix, app_id)
    notifier = Notifier(["--config", str(config), "--start-from", "earliest"], env, tmp_path / "notify.log")
    try:
        asyncio.run(publish())
        expected = Counter({alert(0)["alert_id"]: 2, alert(3)["alert_id"]: 2})  # crm and the digest
        wait_for(
            "both good alerts at both destinations",
            lambda: receiver.acknowledged("/json") == expected,
            notifier,
        )
        log = notifier.log.read_text(errors="replace")
        assert "alert_id of 530,000 characters: at most 128" in log, notifier.tail()
        assert "cannot be written as JSON again" in log, notifier.tail()
        assert receiver.failed_requests() == 0 and notifier.proc.poll() is None, notifier.tail()
    finally:
        notifier.stop()


def test_notify_escapes_a_hostile_name_in_slacks_notification_line(stack: StackInfo, tmp_path: Path) -> None:
    """The notification line (`text`) went out unescaped: a profile name `<!channel> ...`
    pinged the channel and showed a link, while the section below it was escaped."""
    tag = uuid.uuid4().hex[:12]
    prefix, app_id = f"t{tag}.", f"hs-{tag}"
    asyncio.run(create_alerts_topic(stack.bootstrap, f"{prefix}alerts"))
    receiver = Receiver(free_port())
    receiver.start()
    config = tmp_path / "notify.toml"
    config.write_text(
        f'[[destinations]]\nname = "slack"\nurl = "http://127.0.0.1:{receiver.port}/slack"\n'
        'format = "slack"\n'
    )
    env = notifier_env(stack.bootstrap, prefix, app_id)
    notifier = Notifier(["--config", str(config), "--start-from", "earliest"], env, tmp_path / "notify.log")
    try:
        asyncio.run(publish_alerts(stack.bootstrap, f"{prefix}alerts", range(1000, 1001)))
        wait_for("the alert answered", lambda: len(receiver.log) >= 1, notifier)
        assert [(path, status) for path, status, _ in receiver.log] == [("/slack", 200)], receiver.log
    finally:
        notifier.stop()
        receiver.close()


def test_a_dead_destination_holds_back_only_its_own_alerts(stack: StackInfo, tmp_path: Path) -> None:
    """A destination that never takes its alerts fills its `max_in_flight`. Under one shared
    consumer group, reading then paused for every destination, and the healthy one received
    nothing more. Each destination reads in its own group now: the healthy one gets every alert
    and commits them all, the dead one's reading pauses, and `/healthz` says `degraded`, naming it."""
    prefix, app_id, topic = new_alerts_topic(stack.bootstrap)
    receiver = Receiver(free_port())
    receiver.start()
    port = free_port()
    config = tmp_path / "notify.toml"
    config.write_text(
        "max_in_flight = 3\n"
        f'[[destinations]]\nname = "ok"\nurl = "http://127.0.0.1:{receiver.port}/json"\n'
        f'[[destinations]]\nname = "dead"\nurl = "http://127.0.0.1:{free_port()}/hook"\n'
    )
    env = notifier_env(stack.bootstrap, prefix, app_id)
    args = ["--config", str(config), "--start-from", "earliest", "--metrics-port", str(port)]
    notifier = Notifier(args, env, tmp_path / "notify.log")
    ids = lambda numbers: {alert(n)["alert_id"] for n in numbers}  # noqa: E731

    def health() -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                return dict(orjson.loads(response.read()))
        except OSError:
            return {}

    try:
        asyncio.run(publish_alerts(stack.bootstrap, topic, range(1, 9)))
        # the healthy lane too may pause for a moment (8 read at once), until its 8 are delivered
        wait_for(
            "/healthz to say degraded for the dead destination alone",
            lambda: set(health().get("paused_s") or ()) == {"dead"},
            notifier,
        )
        answer = health()
        # max_in_flight is a bound: one read took up to 500 alerts, past it
        assert answer["status"] == "degraded" and answer["pending"].get("dead", 0) == 3, answer
        assert "reading paused for one destination" in notifier.log.read_text()
        # published while the dead destination's reading is paused: the healthy one reads on
        asyncio.run(publish_alerts(stack.bootstrap, topic, range(9, 17)))
        wait_for(
            "all 16 alerts at the healthy destination",
            lambda: set(receiver.acknowledged("/json")) == ids(range(1, 17)),
            notifier,
        )
        wait_for(
            "the healthy destination's offsets committed",
            lambda: asyncio.run(committed(stack.bootstrap, f"{app_id}-notify.ok", topic)) == 16,
            notifier,
        )
        assert asyncio.run(committed(stack.bootstrap, f"{app_id}-notify.dead", topic)) == 0
        assert set(health()["paused_s"]) == {"dead"}
    finally:
        notifier.stop()
        receiver.close()


def test_an_upgraded_notifier_takes_on_the_offsets_its_destinations_shared(
    stack: StackInfo, receiver: Receiver, tmp_path: Path
) -> None:
    """A notifier from before the lanes committed under `--group` itself. Each destination's
    group starts from those offsets: neither the alerts published while it was upgraded are
    skipped (`--start-from latest` would skip them), nor the ones already delivered sent again."""
    prefix, app_id, topic = new_alerts_topic(stack.bootstrap)
    asyncio.run(publish_alerts(stack.bootstrap, topic, range(10)))

    async def commit_as_the_old_notifier() -> int:
        """Commit, under the shared group, every partition up to its first alert numbered 5 or more."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap, group_id=f"{app_id}-notify", enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(4)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            records = await consumer.getmany(timeout_ms=10_000)
            while sum(len(batch) for batch in records.values()) < 10:
                more = await consumer.getmany(timeout_ms=10_000)
                assert more, "the 10 alerts did not come back"
                for tp, batch in more.items():
                    records.setdefault(tp, []).extend(batch)
            offsets = {}
            for tp in partitions:
                batch = records.get(tp, [])
                later = [r.offset for r in batch if int(orjson.loads(r.value)["alert_id"][3:]) >= 5]
                offsets[tp] = OffsetAndMetadata(min(later) if later else len(batch), "")
            await consumer.commit(offsets)
            return sum(meta.offset for meta in offsets.values())
        finally:
            await consumer.stop()

    shared = asyncio.run(commit_as_the_old_notifier())
    config = tmp_path / "notify.toml"
    config.write_text(crm_config(receiver.port))
    env = notifier_env(stack.bootstrap, prefix, app_id)
    notifier = Notifier(["--config", str(config), "--start-from", "latest"], env, tmp_path / "notify.log")
    try:
        wait_for(
            "the crm group to take on the shared offsets",
            lambda: asyncio.run(committed(stack.bootstrap, f"{app_id}-notify.crm", topic)) >= shared,
            notifier,
        )
        expected = {alert(n)["alert_id"] for n in range(5, 10)}
        wait_for(
            "alerts 5-9 at the receiver", lambda: set(receiver.acknowledged("/json")) == expected, notifier
        )
        wait_for(
            "every offset committed",
            lambda: asyncio.run(committed(stack.bootstrap, f"{app_id}-notify.crm", topic)) == 10,
            notifier,
        )
        assert set(receiver.acknowledged("/json")) == expected, (
            "an alert the old notifier had finished was sent again"
        )
        notifier.stop()

        # a destination added later starts where crm is, not at the shared group's stale offsets
        late = Receiver(free_port())
        late.start()
        try:
            config.write_text(
                crm_config(receiver.port)
                + f'[[destinations]]\nname = "late"\nurl = "http://127.0.0.1:{late.port}/json"\n'
            )
            asyncio.run(publish_alerts(stack.bootstrap, topic, range(10, 15)))
            args = ["--config", str(config), "--start-from", "latest"]
            notifier = Notifier(args, env, tmp_path / "notify-2.log")
            newer = {alert(n)["alert_id"] for n in range(10, 15)}
            wait_for(
                "alerts 10-14 at the late destination",
                lambda: set(late.acknowledged("/json")) == newer,
                notifier,
            )
            wait_for(
                "alerts 5-14 at crm",
                lambda: set(receiver.acknowledged("/json")) == expected | newer,
                notifier,
            )
            wait_for(
                "the late destination's offsets committed",
                lambda: asyncio.run(committed(stack.bootstrap, f"{app_id}-notify.late", topic)) == 15,
                notifier,
            )
            assert set(late.acknowledged("/json")) == newer, "the late destination was sent old alerts"
        finally:
            late.close()
    finally:
        notifier.stop()


def test_an_alert_in_a_partition_that_never_had_one_is_not_skipped_after_a_restart(
    stack: StackInfo, receiver: Receiver, tmp_path: Path
) -> None:
    """With `--start-from latest`, the group held offsets only for partitions it had read an alert
    from: an alert published to another partition while the notifier was down was skipped after
    the restart (a group without an offset there starts at the end). Every assigned partition's
    position is committed now."""
    prefix, app_id, topic = new_alerts_topic(stack.bootstrap)
    config = tmp_path / "notify.toml"
    config.write_text(crm_config(receiver.port))
    env = notifier_env(stack.bootstrap, prefix, app_id)
    args = ["--config", str(config), "--start-from", "latest"]

    async def publish_to(partition: int, n: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                topic, orjson.dumps(alert(n)), key=f"acct-{n}".encode(), partition=partition
            )
        finally:
            await producer.stop()

    notifier = Notifier(args, env, tmp_path / "notify-1.log")
    try:
        wait_for(
            "every partition's position committed",
            lambda: asyncio.run(committed_partitions(stack.bootstrap, f"{app_id}-notify.crm", topic)) == 4,
            notifier,
        )
        asyncio.run(publish_to(0, 0))
        wait_for(
            "alert 0 delivered",
            lambda: set(receiver.acknowledged("/json")) == {alert(0)["alert_id"]},
            notifier,
        )
        wait_for(
            "alert 0 committed",
            lambda: asyncio.run(committed(stack.bootstrap, f"{app_id}-notify.crm", topic)) == 1,
            notifier,
        )
        notifier.stop()
        for partition in (1, 2, 3):
            asyncio.run(publish_to(partition, partition))
        notifier = Notifier(args, env, tmp_path / "notify-2.log")
        everything = {alert(n)["alert_id"] for n in range(4)}
        wait_for(
            "the alerts published while it was down",
            lambda: set(receiver.acknowledged("/json")) == everything,
            notifier,
        )
    finally:
        notifier.stop()


def test_the_sent_log_records_again_once_the_broker_takes_records_after_refusing_one(
    stack: StackInfo,
) -> None:
    """A record the broker refused (its topic's record limit set too low by an operator) took its
    partition's sequence numbers in the idempotent producer: every later record was refused as
    out of order, and the notifier retried for ever. The sent log starts a new producer after a
    failed record."""
    settings = Settings(kafka_bootstrap=stack.bootstrap)
    topic = f"sentlog-{uuid.uuid4().hex[:12]}"
    kept = {"cleanup.policy": "compact,delete", "retention.ms": str(30 * 86_400_000)}

    async def scenario() -> None:
        sent = KafkaSentLog(KafkaAccess.of(settings), topic)
        await sent.start()
        try:
            await sent.record("ana", ["a1"], "sent")
            await set_topic_configs(stack.bootstrap, topic, {**kept, "max.message.bytes": "64"})
            await until_topic_configs(stack.bootstrap, topic, lambda c: c.get("max.message.bytes") == "64")
            with pytest.raises(MessageSizeTooLargeError):
                await sent.record("ana", ["a2"], "sent")
            await set_topic_configs(stack.bootstrap, topic, kept)
            await until_topic_configs(stack.bootstrap, topic, lambda c: c.get("max.message.bytes") != "64")
            await sent.record("ana", ["a3"], "sent")
        finally:
            await sent.stop()
        again = KafkaSentLog(KafkaAccess.of(settings), topic)
        assert await again.start() == 2 and ("ana", "a3") in again and ("ana", "a2") not in again
        await again.stop()

    asyncio.run(scenario())


def destination(name: str, port: int) -> str:
    return (
        f'[[destinations]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}/json"\nrate_per_minute = 6000\n'
    )


RETRY = "[retry]\ninitial_seconds = 0.2\nmax_seconds = 1\n"


def test_a_renamed_destination_and_one_added_beside_a_dead_one_start_at_the_notifiers_mark(
    stack: StackInfo, receiver: Receiver, tmp_path: Path
) -> None:
    """A destination's new group starts where the notifier had read to (its mark), whatever the
    others' groups hold. Found by an audit: a renamed sole destination skipped the alerts
    published while the notifier was restarted for it, and one added beside a dead destination
    received the dead one's whole backlog."""
    prefix, app_id, topic = new_alerts_topic(stack.bootstrap)
    dead = Receiver(free_port())
    dead.start()
    dead.mode = "unavailable"
    config = tmp_path / "notify.toml"
    config.write_text(RETRY + destination("crm", receiver.port) + destination("dead", dead.port))
    env = notifier_env(stack.bootstrap, prefix, app_id)
    args = ["--config", str(config), "--start-from", "latest"]
    ids = lambda numbers: {alert(n)["alert_id"] for n in numbers}  # noqa: E731
    notifier = Notifier(args, env, tmp_path / "notify-1.log")
    try:
        wait_started(notifier, stack.bootstrap, app_id, topic)
        asyncio.run(publish_alerts(stack.bootstrap, topic, range(0, 5)))
        wait_for("0-4 at crm", lambda: set(receiver.acknowledged("/json")) == ids(range(5)), notifier)
        wait_for("503s from the dead one", lambda: dead.failed_requests() >= 2, notifier)
        notifier.stop()
        # crm renamed crm2 (the same receiver), and "new" added beside the dead one
        added = Receiver(free_port())
        added.start()
        try:
            config.write_text(
                RETRY
                + destination("crm2", receiver.port)
                + destination("dead", dead.port)
                + destination("new", added.port)
            )
            asyncio.run(publish_alerts(stack.bootstrap, topic, range(5, 10)))
            notifier = Notifier(args, env, tmp_path / "notify-2.log")
            wait_for("5-9 at crm2", lambda: set(receiver.acknowledged("/json")) == ids(range(10)), notifier)
            wait_for(
                "5-9 at the added one",
                lambda: set(added.acknowledged("/json")) == ids(range(5, 10)),
                notifier,
            )
            wait_for(
                "the added one's offsets committed",
                lambda: asyncio.run(committed(stack.bootstrap, f"{app_id}-notify.new", topic)) == 10,
                notifier,
            )
            assert set(added.acknowledged("/json")) == ids(range(5, 10)), (
                "the dead one's backlog sent to the added one"
            )
            assert max(receiver.acknowledged("/json").values()) == 1, (
                "an alert crm had sent again to crm2's receiver"
            )
        finally:
            added.close()
    finally:
        notifier.stop()
        dead.close()


def test_alerts_in_partitions_added_while_it_runs_are_delivered(
    stack: StackInfo, receiver: Receiver, tmp_path: Path
) -> None:
    """Partitions added to the alerts topic: a destination learned of them at aiokafka's metadata
    refresh (5 minutes) and, with `--start-from latest`, started them at their end: the alerts
    published there meanwhile were never delivered. A partition without an offset is now read
    from its beginning, and the metadata is refreshed every 30 s."""
    prefix, app_id, topic = new_alerts_topic(stack.bootstrap)
    config = tmp_path / "notify.toml"
    config.write_text(crm_config(receiver.port))
    env = notifier_env(stack.bootstrap, prefix, app_id)
    notifier = Notifier(["--config", str(config), "--start-from", "latest"], env, tmp_path / "notify.log")

    async def grow_and_publish() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({topic: NewPartitions(total_count=8)})
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        await producer.start()
        try:
            # The broker that took the new partitions may answer metadata without them for a
            # moment (seen under load: "Unrecognized partition"); the deadline bounds a hang only.
            deadline = time.monotonic() + 60
            while len(await producer.partitions_for(topic)) < 8:
                assert time.monotonic() < deadline, "the producer never saw the new partitions"
                await asyncio.sleep(0.2)
                await producer.client.force_metadata_update()
            for partition in range(4, 8):
                await producer.send_and_wait(topic, orjson.dumps(alert(100 + partition)), partition=partition)
        finally:
            await producer.stop()

    try:
        wait_started(notifier, stack.bootstrap, app_id, topic)
        asyncio.run(grow_and_publish())
        expected = {alert(100 + partition)["alert_id"] for partition in range(4, 8)}
        wait_for(
            "the alerts of the new partitions",
            lambda: set(receiver.acknowledged("/json")) == expected,
            notifier,
        )
    finally:
        notifier.stop()
