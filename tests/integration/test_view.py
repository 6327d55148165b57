"""The view against the real thing: a `streamer worker` subprocess fed by `streamer replay` through
the local Kafka broker projects into the local Redis, and a `streamer view` subprocess serves it.

Its answers must be the worker's own outputs (the last `cs.health` record per account, the alerts
of `cs.alerts`) and the portfolio of `streamer offline --sort` over the same file. A second
deployment projects into a private Redis that is stopped mid-stream: the worker keeps going, and
the projection catches up (re-staged in full, the restarted Redis being empty) when it returns.

Each deployment has its own topic prefix, app id (consumer group and Redis key prefix) and state
directory; waits poll against deadlines. `shared_live` is also used by test_dashboard.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError

from streamer.contract.decode import decode_event
from streamer.local.stack import StackInfo
from streamer.partitioning import partition_of
from streamer.projection import history as projected_history
from streamer.projection.codec import epoch_ms
from streamer.settings import Settings
from streamer.stream.clients import start_consumer
from streamer.stream.topics import ensure_topics
from tests.core.harness import EveryScoring
from tests.fixtures import RedisServer, free_port, read_records, stop_process, topic_partitions, wait_until

pytestmark = pytest.mark.integration

STREAMER = str(Path(sys.executable).parent / "streamer")
PARTITIONS = 4
DEADLINE_S = 90.0


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("HEALTHSTREAM_")}


# -- a history and its offline answers ------------------------------------------------------------


@dataclass
class History:
    events: Path
    portfolio: dict[str, Any]
    lines: int


def make_history(folder: Path, seed: int = 5) -> History:
    folder.mkdir(parents=True, exist_ok=True)
    events = folder / "events.jsonl.gz"
    options = ["--accounts", "30", "--months", "3", "--seed", str(seed), "--usage-density", "0.3"]
    run = {"check": True, "capture_output": True, "env": clean_env(), "timeout": 120}
    subprocess.run([STREAMER, "simulate", *options, "--out", str(events)], **run)  # type: ignore[call-overload]
    out = folder / "offline"
    offline = [STREAMER, "offline", str(events), "--sort", "--partitions", str(PARTITIONS), "--quiet"]
    subprocess.run([*offline, "--out", str(out)], **run)  # type: ignore[call-overload]
    return History(
        events=events,
        portfolio=orjson.loads((out / "portfolio.json").read_bytes()),
        lines=len(gzip.decompress(events.read_bytes()).splitlines()),
    )


FINGERPRINT = ("account_id", "score", "band", "lifecycle_stage", "mrr", "plan")


def same_state(projected: dict[str, Any], published: dict[str, Any]) -> bool:
    """The projection holds the worker's last published snapshot, or a later evaluation of the same
    state: the worker re-stages each partition's current snapshots when it takes the partition
    (see streamer.projection.resync), and it publishes a re-scored account only when its score,
    band, stage, MRR or plan changed."""
    if projected == published:
        return True
    return all(projected[key] == published[key] for key in FINGERPRINT) and epoch_ms(
        projected["as_of"]
    ) >= epoch_ms(published["as_of"])


# -- Kafka reads -----------------------------------------------------------------------------------


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    return asyncio.run(read_records({"bootstrap_servers": bootstrap}, topic))


async def _delete_topics(bootstrap: str, prefixes: tuple[str, ...]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefixes)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def _group_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Input messages the consumer group has not committed yet."""
    consumer = await start_consumer(AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        partitions = [tp for topic in topics for tp in await topic_partitions(consumer, topic)]
        end = await consumer.end_offsets(partitions)
        try:
            committed = await admin.list_consumer_group_offsets(group)
        except GroupCoordinatorNotAvailableError:  # a fresh broker is still creating __consumer_offsets
            return sum(end.values()) or 1
        return sum(end[tp] - max(committed[tp].offset if tp in committed else 0, 0) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


# -- processes -------------------------------------------------------------------------------------


class Proc:
    """A subprocess with its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as handle:
            self.proc = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        stop_process(self.proc, 15)


@dataclass
class Deployment:
    """Topics, a worker and (optionally) a view of one isolated copy of the system."""

    bootstrap: str
    redis_url: str
    root: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    procs: list[Proc] = field(default_factory=list)
    view_port: int | None = None

    @property
    def prefix(self) -> str:
        return f"v{self.tag}."

    @property
    def app_id(self) -> str:
        return f"hsv-{self.tag}"

    def env(self) -> dict[str, str]:
        return {
            **clean_env(),
            "HEALTHSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "HEALTHSTREAM_REDIS_URL": self.redis_url,
            "HEALTHSTREAM_TOPIC_PREFIX": self.prefix,
            "HEALTHSTREAM_APP_ID": self.app_id,
            "HEALTHSTREAM_DATA_DIR": str(self.root / "data"),
            "HEALTHSTREAM_PARTITIONS": str(PARTITIONS),
            "HEALTHSTREAM_STORE": "memory://",
        }

    def create_topics(self) -> None:
        settings = Settings(
            kafka_bootstrap=self.bootstrap,
            topic_prefix=self.prefix,
            app_id=self.app_id,
            partitions=PARTITIONS,
        )
        asyncio.run(ensure_topics(settings))

    def start_worker(self) -> Proc:
        """A worker; no need to wait for it to join (its group starts at the earliest offsets)."""
        worker = Proc([STREAMER, "worker"], self.env(), self.root / f"worker-{len(self.procs)}.log")
        self.procs.append(worker)
        return worker

    def start_view(self, **env: str) -> Proc:
        self.view_port = free_port()
        variables = {**self.env(), "HEALTHSTREAM_VIEW_PORT": str(self.view_port), **env}
        view = Proc([STREAMER, "view"], variables, self.root / f"view-{len(self.procs)}.log")
        self.procs.append(view)

        def answers() -> bool:
            assert view.alive, f"the view exited:\n{view.tail()}"
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2).close()
                return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False

        wait_until("the view to answer", answers, 30, 0.1)
        return view

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.view_port}"

    def get(self, path: str, token: str | None = None) -> Any:
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    def replay(self, events: Path) -> None:
        done = subprocess.run(
            [STREAMER, "replay", str(events), "--quiet"], env=self.env(), capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr.decode()

    def topic(self, name: str) -> str:
        return self.prefix + name

    def last_snapshots(self) -> dict[str, dict[str, Any]]:
        """The last cs.health record per account (an account lives on one partition)."""
        records = sorted(
            read_topic(self.bootstrap, self.topic("health")), key=lambda r: (r.partition, r.offset)
        )
        return {record.key.decode(): orjson.loads(record.value) for record in records}

    def lag(self) -> int:
        topics = [self.topic(family) for family in ("subscriptions", "usage", "tickets", "surveys")]
        return asyncio.run(_group_lag(self.bootstrap, self.app_id, topics))

    def mismatches(self) -> list[str]:
        """Accounts whose projected state is not the worker's last published snapshot."""
        differing = []
        for account_id, snapshot in self.last_snapshots().items():
            try:
                answer = self.get(f"/api/accounts/{account_id}")
            except urllib.error.HTTPError:
                differing.append(account_id)
                continue
            answer.pop("recent_alerts")
            if not same_state(answer, snapshot):
                differing.append(account_id)
        return differing

    def alert_ids(self) -> set[str]:
        return {
            orjson.loads(record.value)["alert_id"]
            for record in read_topic(self.bootstrap, self.topic("alerts"))
        }

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        try:
            asyncio.run(_delete_topics(self.bootstrap, (self.prefix, f"{self.app_id}-")))
        except KafkaConnectionError:
            pass  # the session's stack is already stopped (cleanups run after its teardown)
        finally:
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
            try:
                keys = list(client.scan_iter(f"{self.app_id}:*", count=1000))
                if keys:
                    client.delete(*keys)
            except redis.RedisError:
                pass
            finally:
                client.close()


def projection_settled(deployment: Deployment) -> Callable[[], bool]:
    """Every input committed, and the view shows the worker's outputs: each account's last cs.health
    record and every alert of cs.alerts."""

    def check() -> bool:
        for proc in deployment.procs:
            assert proc.alive, f"{proc.log.name} exited:\n{proc.tail()}"
        if deployment.lag():
            return False
        try:
            alerts = deployment.get("/api/alerts?limit=500")["items"]
        except urllib.error.HTTPError:
            return False
        return {a["alert_id"] for a in alerts} == deployment.alert_ids() and not deployment.mismatches()

    return check


# -- the shared live deployment --------------------------------------------------------------------


@dataclass
class Live:
    deployment: Deployment
    history: History


_LIVE: dict[str, Live] = {}


def shared_live(
    stack: StackInfo, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Live:
    """One deployment (worker + view, history replayed and settled) for this module and the dashboard's."""
    if "live" not in _LIVE:
        root = tmp_path_factory.mktemp("view-live")
        history = make_history(root / "history")
        deployment = Deployment(stack.bootstrap, stack.redis_url, root / "deployment")
        deployment.root.mkdir(parents=True)
        request.addfinalizer(deployment.close)  # with the fixture: before the stack stops
        deployment.create_topics()
        deployment.start_worker()
        deployment.start_view()
        deployment.replay(history.events)
        wait_until("the projection to show the worker's outputs", projection_settled(deployment))

        def offline_portfolio() -> bool:  # partition sums are written up to a second after snapshots
            now = deployment.get("/api/portfolio")["current"]
            return (
                now == history.portfolio["current"]
                and deployment.get("/api/months")["months"] == history.portfolio["months"]
            )

        wait_until("the projection to show the offline portfolio", offline_portfolio, 30)
        _LIVE["live"] = Live(deployment, history)
    return _LIVE["live"]


@pytest.fixture(scope="session")
def live(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Live:
    return shared_live(stack, tmp_path_factory, request)


# -- tests -----------------------------------------------------------------------------------------


def test_portfolio_and_months_equal_offline(live: Live) -> None:
    view, portfolio = live.deployment, live.history.portfolio
    now = view.get("/api/portfolio")
    assert now["current"] == portfolio["current"] and now["currency"] == portfolio["currency"]
    assert view.get("/api/months")["months"] == portfolio["months"]
    for month in portfolio["months"][-3:]:
        period = view.get(f"/api/period?month={month['month']}")
        assert {key: period[key] for key in month} == month


def test_each_account_is_the_workers_last_snapshot_with_its_alerts(live: Live) -> None:
    view = live.deployment
    published = view.last_snapshots()
    alert_ids = view.alert_ids()
    assert len(published) == live.history.portfolio["current"]["accounts"]
    for account_id, snapshot in published.items():
        answer = view.get(f"/api/accounts/{account_id}")
        alerts = answer.pop("recent_alerts")
        assert same_state(answer, snapshot), account_id
        assert {alert["alert_id"] for alert in alerts} <= alert_ids
        assert all(alert["account_id"] == account_id for alert in alerts)
        assert [a["raised_at"] for a in alerts] == sorted((a["raised_at"] for a in alerts), reverse=True)


def test_alerts_are_the_workers_alerts(live: Live) -> None:
    items = live.deployment.get("/api/alerts?limit=500")["items"]
    assert {alert["alert_id"] for alert in items} == live.deployment.alert_ids()
    assert [a["raised_at"] for a in items] == sorted((a["raised_at"] for a in items), reverse=True)


def test_list_queries_agree_with_the_accounts(live: Live) -> None:
    view = live.deployment
    everyone = view.get("/api/accounts?limit=500")
    rows = {row["account_id"]: row for row in everyone["items"]}
    assert everyone["total"] == len(rows) == live.history.portfolio["current"]["accounts"]

    lowest = view.get("/api/accounts?sort=score&limit=10")["items"]
    assert [r["score"] for r in lowest] == sorted(r["score"] for r in rows.values())[:10]

    at_risk = view.get("/api/accounts?at_risk=true&sort=-mrr")["items"]
    want = sorted(
        (r for r in rows.values() if r["band"] != "green" and Decimal(r["mrr"]) > 0),
        key=lambda r: (Decimal(r["mrr"]), r["account_id"]),
        reverse=True,
    )
    assert [r["account_id"] for r in at_risk] == [r["account_id"] for r in want]

    renewing = view.get("/api/accounts?band=green,yellow,red&renewal_within_days=400&sort=renewal")["items"]
    assert renewing and all(r["renewal_at"] for r in renewing)
    assert [r["renewal_at"] for r in renewing] == sorted(r["renewal_at"] for r in renewing)


def test_healthz_and_metrics_show_the_worker(live: Live) -> None:
    view, lines = live.deployment, live.history.lines

    def counted() -> bool:
        text = urllib.request.urlopen(f"{view.url}/metrics", timeout=5).read().decode()
        totals = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("healthstream_events_processed_total{")
        ]
        return sum(totals) == lines

    wait_until("the worker's stats to count every event", counted, 30)
    text = urllib.request.urlopen(f"{view.url}/metrics", timeout=5).read().decode()
    assert "healthstream_redis_up 1.0" in text and "healthstream_workers 1.0" in text
    assert "healthstream_consumer_lag{" in text and "healthstream_processing_latency_seconds{" in text
    assert "healthstream_event_loop_stall_seconds{" in text
    assert "healthstream_projection_skipped_writes_total{" in text
    assert "healthstream_projection_pruned_alerts_total{" in text
    assert "healthstream_membership_fenced_total{" in text
    for name in ("dead_letters_known", "gap_rereads", "empty_offsets"):
        assert f"healthstream_{name}_total{{" in text
    wait_until("zero lag", lambda: view.get("/healthz")["consumer_lag"] == 0, 30)
    health = view.get("/healthz")
    assert health["status"] == "ok" and health["kafka"]["reachable"] and health["workers"] == 1


def test_bad_requests_are_4xx_with_a_message(live: Live) -> None:
    for path, status in [
        ("/api/accounts?band=blue", 400),
        ("/api/accounts?limit=100000", 400),
        ("/api/period?from=2024-01-01", 400),
        ("/api/accounts/not-an-account", 404),
    ]:
        with pytest.raises(urllib.error.HTTPError) as caught:
            live.deployment.get(path)
        assert caught.value.code == status
        assert json.loads(caught.value.read())["error"]


def test_requests_the_http_parser_refuses_are_one_warning_line_not_an_error_traceback(live: Live) -> None:
    """An over-long header, a negative Content-Length, HTTP/9.9: aiohttp answers 400 and logged
    each at `error` with a traceback, so any client could fill the error log."""
    deployment = live.deployment
    view = deployment.start_view()
    hostile = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"POST /api/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
        # aiohttp quotes the start of an over-long header or address: the token must not be logged
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-t0ken" + b" " * 9000 + b"\r\n\r\n",
        b"GET /?access_token=s3cret-t0ken&x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for raw in hostile:
        with socket.create_connection(("127.0.0.1", deployment.view_port), timeout=10) as connection:
            connection.sendall(raw)
            assert connection.recv(100).split(b"\r\n")[0].endswith(b" 400 Bad Request"), raw[:40]

    def warned() -> bool:
        return view.log.read_text().count("refused a malformed HTTP request") == len(hostile)

    wait_until("a warning for each malformed request", warned, 30, 0.1)
    records = [json.loads(line) for line in view.log.read_text().splitlines() if line.startswith("{")]
    assert not [r for r in records if r["level"] == "error" or "exc" in r], view.tail()
    assert {r["level"] for r in records if "malformed" in r["msg"]} == {"warning"}
    assert "s3cret-t0ken" not in view.log.read_text()
    assert deployment.status("/healthz") == 200  # still serving


def test_a_token_protects_a_second_view_and_views_share_nothing(live: Live) -> None:
    first = live.deployment
    second = Deployment(first.bootstrap, first.redis_url, first.root, tag=first.tag)  # same app id
    view = second.start_view(HEALTHSTREAM_VIEW_TOKEN="t0ken")
    try:
        with pytest.raises(urllib.error.HTTPError) as caught:
            second.get("/api/portfolio")
        assert caught.value.code == 401
        assert second.get("/api/portfolio", token="t0ken") == first.get("/api/portfolio")
        assert second.get("/healthz")["status"] == "ok"
    finally:
        view.stop()


BURST = 500


async def _burst(url: str, paths: list[str]) -> list[tuple[int, str]]:
    """Every path requested at once over its own loopback connection: (status, body) each."""
    import aiohttp

    async def one(session: aiohttp.ClientSession, path: str) -> tuple[int, str]:
        async with session.get(url + path) as response:
            return response.status, await response.text()

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=120)  # bounds a hang only
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        return await asyncio.gather(*(one(session, path) for path in paths))


@pytest.mark.parametrize(
    "pool",
    [
        {},  # the defaults: 50 connections, a request waits up to 20 s for one
        # 4 connections: nearly every request waits, for as long as the burst takes to drain
        {"HEALTHSTREAM_VIEW_REDIS_POOL_SIZE": "4", "HEALTHSTREAM_VIEW_REDIS_POOL_TIMEOUT_S": "120"},
    ],
)
def test_a_burst_of_500_concurrent_requests_gets_no_5xx(live: Live, pool: dict[str, str]) -> None:
    """Requests beyond the Redis pool wait for a connection instead of failing (was: 401 of 500
    answered 503 "Too many connections")."""
    first = live.deployment
    second = Deployment(first.bootstrap, first.redis_url, first.root, tag=first.tag)  # same app id
    view = second.start_view(**pool)
    try:
        account = next(iter(first.last_snapshots()))
        routes = [
            "/api/accounts?limit=500",
            "/api/accounts?band=red,yellow&sort=-mrr",
            f"/api/accounts/{account}",
            "/api/portfolio",
            "/api/months",
            "/api/alerts?limit=100",
            "/healthz",
            "/metrics",
        ]
        started = time.monotonic()
        answers = asyncio.run(_burst(second.url, [routes[i % len(routes)] for i in range(BURST)]))
        print(f"{BURST} concurrent requests answered in {time.monotonic() - started:.1f} s ({pool})")
        failed = [(status, body[:200]) for status, body in answers if status >= 500]
        assert not failed, f"{len(failed)} of {BURST} answered 5xx, e.g. {failed[:3]}"
        assert all(status == 200 for status, _ in answers), {status for status, _ in answers}
        assert view.alive
    finally:
        view.stop()


def history_in_halves(folder: Path) -> tuple[History, Path, Path]:
    """A simulated history (its offline answers) and its events in two files, first half first."""
    history = make_history(folder / "history", seed=9)
    lines = gzip.decompress(history.events.read_bytes()).splitlines(keepends=True)
    first, second = folder / "first.jsonl", folder / "second.jsonl"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    return history, first, second


@contextlib.contextmanager
def with_own_redis(stack: StackInfo, tmp_path: Path) -> Iterator[tuple[Deployment, RedisServer]]:
    """A deployment writing to a Redis of its own (the test stops and starts it)."""
    store = RedisServer(tmp_path / "redis")
    store.start()
    deployment = Deployment(stack.bootstrap, store.url, tmp_path / "deployment")
    deployment.root.mkdir(parents=True)
    try:
        yield deployment, store
    finally:
        deployment.close()
        store.stop()


def project_first_half(deployment: Deployment, first: Path) -> tuple[Proc, set[str]]:
    """Topics, a worker and a view, `first` replayed and projected; the worker and its alert ids."""
    deployment.create_topics()
    worker = deployment.start_worker()
    deployment.start_view()
    deployment.replay(first)
    wait_until("the first half to be projected", projection_settled(deployment))
    return worker, deployment.alert_ids()


def test_redis_going_down_does_not_stop_the_worker_and_the_projection_catches_up(
    stack: StackInfo, tmp_path: Path
) -> None:
    history, first, second = history_in_halves(tmp_path)
    with with_own_redis(stack, tmp_path) as (deployment, store):
        worker, before = project_first_half(deployment, first)

        store.stop()
        deployment.replay(second)
        wait_until("the worker to process the second half while Redis is down", lambda: deployment.lag() == 0)
        assert worker.alive, worker.tail()
        assert len(deployment.alert_ids()) > len(before)
        assert deployment.status("/api/portfolio") == 503 and deployment.status("/healthz") == 503

        store.start()  # empty (no persistence): the worker notices and re-stages its partitions

        def caught_up() -> bool:
            try:
                projected = {a["alert_id"] for a in deployment.get("/api/alerts?limit=500")["items"]}
                accounts = deployment.get("/api/accounts?limit=1")["total"]
            except urllib.error.HTTPError:
                return False
            during = deployment.alert_ids() - before  # alerts from before died with Redis's data
            return (
                during <= projected
                and accounts == len(deployment.last_snapshots())
                and not deployment.mismatches()
            )

        wait_until("the projection to catch up", caught_up)
        assert worker.alive, worker.tail()

        def portfolio_caught_up() -> bool:
            snapshots = deployment.last_snapshots().values()
            current = deployment.get("/api/portfolio")["current"]
            mrr = sum(Decimal(s["mrr"]) for s in snapshots)
            return (
                deployment.get("/api/months")["months"] == history.portfolio["months"]
                and current["accounts"] == len(snapshots)
                and abs(Decimal(current["mrr"]) - mrr) <= Decimal("0.01") * len(snapshots)  # rounding
                and all(
                    current["accounts_by_band"][band]
                    == sum(s["band"] == band and s["lifecycle_stage"] != "churned" for s in snapshots)
                    for band in ("green", "yellow", "red")
                )
            )

        wait_until("the portfolio to catch up", portfolio_caught_up, 30)
        log = worker.log.read_text()
        assert "projection store unreachable; staging until it returns" in log
        assert "projection store back; caught up" in log


def every_month(deployment: Deployment, history: History) -> Callable[[], bool]:
    """Whether the view lists every month offline lists (False while it cannot answer)."""

    def listed() -> bool:
        try:
            return bool(deployment.get("/api/months")["months"] == history.portfolio["months"])
        except urllib.error.HTTPError:
            return False

    return listed


def test_a_restarted_worker_keeps_every_month_of_the_portfolio(stack: StackInfo, tmp_path: Path) -> None:
    """After any restart /api/months (the dashboard's MRR and NRR/GRR charts) held the current
    month alone: a recovered partition took the month of its stream time for its first month."""
    history, first, second = history_in_halves(tmp_path)
    with with_own_redis(stack, tmp_path) as (deployment, _):
        worker, _ = project_first_half(deployment, first)
        worker.stop()
        restarted = deployment.start_worker()
        deployment.replay(second)

        wait_until("the restarted worker's projection to list every month", every_month(deployment, history))
        assert restarted.alive, restarted.tail()


def script_calls(store: RedisServer) -> int:
    """How many projection scripts Redis has run (each snapshot, history point, alert, ...)."""
    client = redis.Redis.from_url(store.url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_restart_with_nothing_new_leaves_every_account_as_published(
    stack: StackInfo, tmp_path: Path
) -> None:
    """A restarted worker re-stages every account, evaluated again at its last scoring instant on
    state that may hold usage folded in since (within `time.usage_rescore_minutes`): it replaced
    what had been published at that instant, so a restart after the last event changed accounts'
    rows and history points in the view, which no longer matched offline."""
    history, first, second = history_in_halves(tmp_path)
    with with_own_redis(stack, tmp_path) as (deployment, store):
        worker, _ = project_first_half(deployment, first)
        deployment.replay(second)

        listed = every_month(deployment, history)
        wait_until("the second half to be projected", lambda: deployment.lag() == 0 and listed())
        wait_until("the projection to settle", projection_settled(deployment))
        ids = [row["account_id"] for row in deployment.get("/api/accounts?limit=500")["items"]]

        def answers() -> dict[str, Any]:
            return {
                account: (
                    deployment.get(f"/api/accounts/{account}"),
                    deployment.get(f"/api/accounts/{account}/history?days=400"),
                )
                for account in ids
            }

        before, calls = answers(), script_calls(store)
        worker.stop()
        restarted = deployment.start_worker()
        # each account's snapshot and history point go through a script, written or not
        wait_until("every account to be re-staged", lambda: script_calls(store) >= calls + 2 * len(ids))
        after = answers()
        assert restarted.alive, restarted.tail()
        assert [a for a in ids if after[a] != before[a]] == []


def every_hours_last_scoring(events: Path) -> dict[str, set[tuple[int, bytes]]]:
    """Each account's history as the projection must end with it: every scoring of the core, each
    hour's last (each day's, before the last three days), whatever the worker's batches were."""
    engines = [EveryScoring() for _ in range(PARTITIONS)]
    for line in gzip.decompress(events.read_bytes()).splitlines():
        event = decode_event(line)
        engines[partition_of(event.account_id, PARTITIONS)].process(event)
    staged: dict[str, dict[int, tuple[int, bytes]]] = {}
    for engine in engines:
        for account, scoring in engine.scorings:
            staged.setdefault(account, {})[scoring.now] = (scoring.now, projected_history.point_of(scoring))
    return {account: set(projected_history.thin(points).values()) for account, points in staged.items()}


def test_every_accounts_history_is_its_hours_last_scorings_wherever_the_batches_end(
    stack: StackInfo, tmp_path: Path
) -> None:
    """History points were the snapshots published, at the end of a batch or of an event-time day:
    an hour whose last scoring fell inside a batch kept an earlier one or none, so the account
    page's hourly points (and the timeline read from them) depended on the replay's speed."""
    history = make_history(tmp_path / "history", seed=9)
    with with_own_redis(stack, tmp_path) as (deployment, store):
        project_first_half(deployment, history.events)  # the whole history, in a few large batches
        expected = every_hours_last_scoring(history.events)
        client = redis.Redis.from_url(store.url)
        try:
            stored = {
                key.decode().rsplit(":history:", 1)[1]: {
                    (int(at), point) for point, at in client.zrange(key, 0, -1, withscores=True)
                }
                for key in client.scan_iter(match=f"{deployment.app_id}:history:*")
            }
        finally:
            client.close()
    assert len(expected) == 30
    assert {account: points for account, points in stored.items() if points != expected.get(account)} == {}
    assert stored.keys() == expected.keys()


async def _publish_raw(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, value in records:
            await producer.send_and_wait(topic, value, key=b"someone-else", partition=partition)
    finally:
        await producer.stop()


def test_records_of_the_alerts_topic_that_are_not_alerts_are_left_out_of_a_restaging(
    stack: StackInfo, tmp_path: Path
) -> None:
    """The projection is re-staged (Redis came back empty) from the newest records of the alerts
    topic. One record that is not an alert, written by anything with access to the topic,
    stopped the worker at every re-staging (`[1, 2]`), or had its partition re-staged every two
    seconds for good (bytes that are not JSON): both are left out, with one warning each."""
    _, first, _ = history_in_halves(tmp_path)
    with with_own_redis(stack, tmp_path) as (deployment, store):
        worker, before = project_first_half(deployment, first)
        assert before
        bad = [(0, b"[1, 2]"), (1, b"\xff not json"), (2, b'{"alert_id": "x", "account_id": "a"}')]
        asyncio.run(_publish_raw(stack.bootstrap, deployment.topic("alerts"), bad))
        store.stop()
        store.start()  # empty: the worker re-stages every partition, its alerts from the topic

        left_out = "records of the alerts topic that are not alerts were left out"

        def restaged() -> bool:  # one warning per partition holding a bad record
            assert worker.alive, worker.tail()
            return worker.log.read_text().count(left_out) >= 3

        def projected() -> bool:
            try:
                return before <= {a["alert_id"] for a in deployment.get("/api/alerts?limit=500")["items"]}
            except urllib.error.HTTPError:
                return False

        wait_until("the re-staging to leave the three records out", restaged)
        wait_until("the alerts to be in the projection again", projected)
        log = worker.log.read_text()
        assert "not a JSON object: list" in log and "not JSON" in log and "not an alert" in log
        time.sleep(3)  # re-staging again would log that it could not read them, every 2 s
        assert "could not read the partition's recent alerts" not in worker.log.read_text()
        assert worker.alive, worker.tail()


def test_a_full_redis_holds_the_projection_back_and_the_view_and_worker_say_why(
    stack: StackInfo, tmp_path: Path
) -> None:
    """Redis at its memory limit with the default `noeviction` refuses every write: the worker goes
    on, keeps the writes and logs that the store refused them (it answers: no outage), `/healthz`
    is degraded with the reason, and once Redis has room the projection catches up with nothing
    missing. A policy that evicts the projection's keys (`allkeys-*`) is reported the same way,
    and its end too."""
    _, first, second = history_in_halves(tmp_path)
    with (
        with_own_redis(stack, tmp_path) as (deployment, store),
        contextlib.closing(redis.Redis.from_url(store.url)) as admin,
    ):
        worker, before = project_first_half(deployment, first)

        admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]))  # full
        deployment.replay(second)
        wait_until("the worker to process the second half while Redis is full", lambda: deployment.lag() == 0)
        assert worker.alive, worker.tail()
        health = deployment.get("/healthz")
        assert health["status"] == "degraded" and health["problems"][0].startswith("Redis uses "), health
        projected = {a["alert_id"] for a in deployment.get("/api/alerts?limit=500")["items"]}
        assert not (deployment.alert_ids() - before) <= projected  # held back: Redis refused them
        refused = "projection store refused the writes; staging until it takes them"
        wait_until("the worker to log the refusal", lambda: refused in worker.log.read_text())

        admin.config_set("maxmemory", 1 << 30)  # room, but keys can now be evicted at the limit
        admin.config_set("maxmemory-policy", "allkeys-lru")
        wait_until("the projection to catch up", projection_settled(deployment))
        evicts = deployment.get("/healthz")
        assert evicts["status"] == "degraded" and "maxmemory-policy allkeys-lru" in evicts["problems"][0]
        wait_until(
            "the worker to log that Redis can evict the projection",
            lambda: '"trouble":"evicts"' in worker.log.read_text(),
        )

        admin.config_set("maxmemory-policy", "noeviction")
        wait_until("the view to see Redis fine", lambda: deployment.get("/healthz")["problems"] == [])
        wait_until(
            "the worker to log that Redis is fine again",
            lambda: "projection store memory fine again" in worker.log.read_text(),
        )
        assert not deployment.mismatches() and worker.alive


COMPACT = {"cleanup.policy": "compact"}  # the health topic's own override


async def set_topic_configs(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    """Replace the topic's configuration overrides with `configs` (what AlterConfigs does)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)]
        )
        assert all(code == 0 for code, *_ in response.resources), response.resources
    finally:
        await admin.close()


def test_a_worker_whose_outputs_the_broker_refuses_is_named_stalled_and_then_catches_up(
    stack: StackInfo, tmp_path: Path
) -> None:
    """An output topic that refuses the worker's records (here `cs.health` with a 512-byte record
    limit, set by an operator after the worker started) holds every checkpoint: the worker keeps
    the records and sends them again, its heartbeat stays fresh, and only `/healthz`'s stall check
    shows that it stands still. Once the topic takes them, nothing is missing."""
    history, first, second = history_in_halves(tmp_path)
    deployment = Deployment(stack.bootstrap, stack.redis_url, tmp_path / "deployment")
    deployment.root.mkdir(parents=True)
    try:
        deployment.create_topics()
        worker = deployment.start_worker()
        deployment.start_view(HEALTHSTREAM_VIEW_WORKER_STALL_S="3")
        deployment.replay(first)
        wait_until("the first half to be projected", projection_settled(deployment))
        assert deployment.get("/healthz")["stalled_workers"] == []

        health_topic = deployment.topic("health")
        asyncio.run(set_topic_configs(stack.bootstrap, health_topic, {**COMPACT, "max.message.bytes": "512"}))
        deployment.replay(second)
        wait_until(
            "/healthz to name the worker stalled", lambda: deployment.get("/healthz")["stalled_workers"]
        )
        health = deployment.get("/healthz")
        assert health["status"] == "degraded" and health["workers"] == 1, health
        [problem] = health["problems"]
        assert " input messages waiting and committed none for " in problem, problem
        assert deployment.lag() > 0 and worker.alive
        assert "alerts and snapshots not acknowledged by the broker" in worker.log.read_text()

        asyncio.run(set_topic_configs(stack.bootstrap, health_topic, COMPACT))
        wait_until("the projection to catch up", projection_settled(deployment))
        wait_until("/healthz to be fine again", lambda: deployment.get("/healthz")["problems"] == [])

        def offline_portfolio() -> bool:  # partition sums are written up to a second after snapshots
            return deployment.get("/api/portfolio")["current"] == history.portfolio["current"]

        wait_until("the projection to show the offline portfolio", offline_portfolio, 30)
        assert worker.alive, worker.tail()
    finally:
        deployment.close()
