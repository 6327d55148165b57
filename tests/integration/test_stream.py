"""The stream worker against a real broker: same answers as `streamer offline --sort`, dead
letters, duplicates, kill -9, rebalances, kcat and the replay / tail commands.

Every test deploys its own copy of the system (topic prefix `t<hex>.`, app id `hs-<hex>`, state
under its tmp dir) so tests never see each other's data. Workers are real `streamer worker`
subprocesses; we wait by polling the output topics and the consumer group's committed offsets
against a deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import gzip
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    KafkaConnectionError,
    KafkaError,
    NotCoordinatorForGroupError,
)
from aiokafka.structs import ConsumerRecord

from streamer.contract.decode import MAX_EVENT_BYTES
from streamer.contract.events import EVENT_FAMILY
from streamer.contract.outputs import Alert, DeadLetter, HealthSnapshot
from streamer.local.kcat import ensure_kcat
from streamer.local.stack import StackInfo
from streamer.partitioning import partition_of
from streamer.settings import FAMILIES, Settings
from streamer.stream.clients import start_consumer
from streamer.stream.replay import publish, route
from streamer.stream.topics import INPUT, changelog_topic, ensure_topics, topic_specs
from tests.fixtures import stop_process, topic_configs, topic_partitions, wait_until

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
STREAMER = str(BIN / "streamer")
PARTITIONS = 4
# Deadlines only bound a hang: settle fails when the group made no progress (lag or outputs)
# for SETTLE_STUCK_S, or after SETTLE_DEADLINE_S whatever happens (a busy 2-core CI machine runs a
# backfill several times slower than a quiet one).
SETTLE_STUCK_S = 120.0
SETTLE_DEADLINE_S = 900.0
QUIET_S = 2.0  # outputs unchanged this long (and every input offset committed): finished
# A killed member keeps its partitions until its session times out (60 s by default): a worker
# restarted after a kill, or its peer, would wait that long for them. For tests that kill one.
KILLED_MEMBER_LEAVES_SOON = {"HEALTHSTREAM_SESSION_TIMEOUT_S": "8", "HEALTHSTREAM_HEARTBEAT_INTERVAL_S": "1"}
# What the broker answers about a consumer group while it has no coordinator for it yet: a fresh
# broker creates __consumer_offsets on first use, a restarted one loads it again.
NO_COORDINATOR_YET = (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    NotCoordinatorForGroupError,
)

T = TypeVar("T")


def clean_env() -> dict[str, str]:
    """The test process's environment without any HEALTHSTREAM_* setting of the developer's."""
    return {key: value for key, value in os.environ.items() if not key.startswith("HEALTHSTREAM_")}


# -- histories and their offline answers -------------------------------------------------------


@dataclass
class History:
    """A simulated events file and what `streamer offline --sort` makes of it."""

    events: Path
    lines: list[bytes]
    accounts: dict[str, dict[str, Any]]  # accounts.jsonl by account_id
    alerts: dict[str, dict[str, Any]]  # alerts.jsonl by alert_id
    portfolio: dict[str, Any]


def simulate(events: Path, seed: int, accounts: int = 30, months: int = 3, density: float = 0.3) -> Path:
    options = f"--accounts {accounts} --months {months} --seed {seed} --usage-density {density}"
    command = [STREAMER, "simulate", *options.split(), "--out", str(events)]
    subprocess.run(command, check=True, capture_output=True, env=clean_env(), timeout=120)
    return events


def closing_events(lines: list[bytes], tag: str = "closing") -> list[bytes]:
    """One last event per account, a minute after the history ends: a second subscription
    (`tag` names it and its event; another tag closes a history already closed).

    cs.health carries a snapshot only when (score, band, stage, MRR, plan) changed, so without
    these its last record may be an older evaluation than offline's accounts.jsonl, depending on
    where batches end (see test_cs_health_ends_with_each_accounts_current_snapshot). A change of
    MRR at the very end makes every account's final evaluation a published one, so the tests
    that compare whole histories check the state and not batch boundaries.
    """
    values = [orjson.loads(line) for line in lines]
    end = max(datetime.fromisoformat(value["occurred_at"]) for value in values) + timedelta(minutes=1)
    return [
        orjson.dumps(
            started(account, end.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{account}-{tag}", amount="1.00")
            | {"subscription_id": f"{account}-{tag}", "plan": "closing"}
        )
        for account in sorted({value["account_id"] for value in values})
    ]


def closed_again(history: History, folder: Path) -> tuple[Path, History]:
    """Closing events once more, after `history`'s own: their file, and what offline makes of
    the history followed by them. Applied on top of a worker's recovered state, every account
    publishes a snapshot of it: a check of the state the changelogs hold, not only of the
    outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    again = closing_events(history.lines, "closing-again")
    tail = folder / "closing-again.jsonl"
    tail.write_bytes(b"\n".join(again) + b"\n")
    whole = folder / "events.jsonl"
    whole.write_bytes(b"\n".join([*history.lines, *again]) + b"\n")
    return tail, run_offline(whole, folder / "offline")


def run_offline(events: Path, out: Path, config: Path | None = None, timeout_s: float = 120) -> History:
    """`streamer offline EVENTS --sort` with the stream's partition count (and `--config`)."""
    offline = [STREAMER, "offline", str(events), "--sort", "--partitions", str(PARTITIONS), "--out", str(out)]
    offline += ["--quiet", *(["--config", str(config)] if config is not None else [])]
    subprocess.run(offline, check=True, capture_output=True, env=clean_env(), timeout=timeout_s)
    alerts = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
    by_id = {alert["alert_id"]: alert for alert in alerts}
    assert len(by_id) == len(alerts), "offline emitted one alert id twice"
    return History(
        events=events,
        lines=events.read_bytes().splitlines(),
        accounts={
            record["account_id"]: record
            for record in map(orjson.loads, (out / "accounts.jsonl").read_bytes().splitlines())
        },
        alerts=by_id,
        portfolio=orjson.loads((out / "portfolio.json").read_bytes()),
    )


def simulate_and_score(folder: Path, seed: int, accounts: int = 30, months: int = 3) -> History:
    """A simulated history (plus closing events) and what offline makes of it."""
    folder.mkdir(parents=True, exist_ok=True)
    simulated = simulate(folder / "simulated.jsonl.gz", seed, accounts, months)
    simulated = gzip.decompress(simulated.read_bytes()).splitlines()
    events = folder / "events.jsonl"
    events.write_bytes(b"\n".join([*simulated, *closing_events(simulated)]) + b"\n")
    history = run_offline(events, folder / "offline")
    assert not (folder / "offline" / "deadletter.jsonl").read_bytes(), "the history should be clean"
    return history


@pytest.fixture(scope="session")
def history(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], History]:
    """`history(seed)`: a 30-account, 3-month history (5,000-10,000 events), made once per seed."""
    made: dict[int, History] = {}

    def get(seed: int) -> History:
        if seed not in made:
            made[seed] = simulate_and_score(tmp_path_factory.mktemp(f"history-{seed}"), seed)
        return made[seed]

    return get


# -- one deployment: topics, workers, a view of its topics --------------------------------------


class Worker:
    """A `streamer worker` subprocess; its output goes to a log file."""

    def __init__(
        self, name: str, env: dict[str, str], log: Path, command: Sequence[str] = (STREAMER,)
    ) -> None:
        self.name, self.log = name, log
        self.may_fail = False  # set by a test that makes it exit with 70 on purpose
        with log.open("ab") as handle:
            self.proc = subprocess.Popen(
                [*command, "worker"], env=env, stdout=handle, stderr=subprocess.STDOUT
            )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Its JSON log lines, parsed."""
        return [orjson.loads(line) for line in self.text().splitlines() if line.startswith("{")]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.proc, 5)


class Bus:
    """Synchronous access to the deployment's topics through aiokafka on a private event loop."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.loop = asyncio.new_event_loop()
        self.records: dict[str, list[ConsumerRecord]] = collections.defaultdict(list)
        self._consumers: dict[str, tuple[AIOKafkaConsumer, list[TopicPartition]]] = {}
        self._probe: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def _poll(self, topic: str) -> list[ConsumerRecord]:
        if topic not in self._consumers:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False
            )
            await start_consumer(consumer)  # a start that fails part way closes it
            try:
                partitions = await topic_partitions(consumer, topic)  # fails on a topic not made yet
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
            except BaseException:
                # Kept nowhere, it would be left running until `close` closed the loop under its
                # tasks: "Task was destroyed but it is pending!" at the end of a suite run.
                await consumer.stop()
                raise
            self._consumers[topic] = (consumer, partitions)
            self.records[topic] = []  # read again from the beginning
        consumer, partitions = self._consumers[topic]
        end = await consumer.end_offsets(partitions)
        new: list[ConsumerRecord] = []
        deadline = time.monotonic() + 30
        while True:
            behind = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
            if not behind:
                break
            assert time.monotonic() < deadline, f"cannot read {topic} up to {end}"
            batch = await consumer.getmany(*behind, timeout_ms=500)
            for records in batch.values():
                new.extend(records)
        self.records[topic].extend(new)
        return new

    def poll(self, topic: str) -> list[ConsumerRecord]:
        """Read what is new on `topic` (everything from the beginning the first time)."""
        return self.run(self._poll(topic))

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(record.value) for record in self.records[topic]]

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            try:
                await admin.start()
            except BaseException:
                await admin.close()  # as a consumer that failed after its start, above
                raise
            self._admin = admin
        return self._admin

    async def _admin_do(self, call: Callable[[AIOKafkaAdminClient], Coroutine[Any, Any, T]]) -> T:
        """`call` with the admin client; once more if the broker had closed its connection. The
        bus's loop runs only inside `run`, so aiokafka never reaps its idle connections, and the
        broker closes one idle for 10 minutes: a module fixture's deployment sits that long
        between its start and its teardown (`deployment.close`, which failed so once in CI)."""
        try:
            return await call(await self._admin_client())
        except KafkaConnectionError:
            return await call(await self._admin_client())  # aiokafka connects again

    async def _lag(self, group: str, topics: list[str]) -> dict[TopicPartition, int]:
        if self._probe is None:
            self._probe = await start_consumer(
                AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
            )
        partitions = [tp for topic in topics for tp in await topic_partitions(self._probe, topic)]
        end = await self._probe.end_offsets(partitions)
        committed = await self._admin_do(lambda admin: admin.list_consumer_group_offsets(group))
        lag = {}
        for tp in partitions:
            meta = committed.get(tp)
            lag[tp] = end[tp] - max(meta.offset if meta is not None else 0, 0)
        return lag

    def committed(self, group: str, topics: list[str]) -> int:
        """How many messages of `topics` the consumer group has committed, in all (0 while the
        broker has no coordinator for the group yet: a fresh broker creates it on first use)."""
        try:
            return self.run(self._committed_in(group, topics))
        except NO_COORDINATOR_YET:
            return 0

    def coordinator_ready(self, group: str) -> bool:
        """Whether the broker answers for `group`'s committed offsets (False while it is still
        creating or loading __consumer_offsets)."""
        try:
            self.run(self._committed_in(group, []))
        except NO_COORDINATOR_YET:
            return False
        return True

    async def _committed_in(self, group: str, topics: list[str]) -> int:
        committed = await self._admin_do(lambda admin: admin.list_consumer_group_offsets(group))
        return sum(max(meta.offset, 0) for tp, meta in committed.items() if tp.topic in topics)

    async def _group(self, group: str) -> tuple[str, int]:
        (response,) = await self._admin_do(lambda admin: admin.describe_consumer_groups([group]))
        (_error, _name, state, _protocol_type, _protocol, members) = response.groups[0]
        return state, len(members)

    def group(self, group: str) -> tuple[str, int]:
        """The consumer group's state ('Stable', 'PreparingRebalance', ...) and member count."""
        return self.run(self._group(group))

    def lag(self, group: str, topics: list[str]) -> dict[TopicPartition, int]:
        """Messages of `topics` the consumer group has not committed yet, per partition."""
        return self.run(self._lag(group, topics))

    async def _produce(
        self, topic: str, value: bytes, key: bytes | None, partition: int | None
    ) -> tuple[int, int]:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await self._producer.start()
        meta = await self._producer.send_and_wait(topic, value, key=key, partition=partition)
        return meta.partition, meta.offset

    def produce(
        self, topic: str, value: bytes, key: bytes | None, partition: int | None = None
    ) -> tuple[int, int]:
        """Send one raw message (default partitioner unless `partition`); return its (partition, offset)."""
        return self.run(self._produce(topic, value, key, partition))

    async def _delete_topics(self, prefixes: tuple[str, ...]) -> None:
        topics = await self._admin_do(lambda admin: admin.list_topics())
        names = [name for name in topics if name.startswith(prefixes)]
        if names:
            await self._admin_do(lambda admin: admin.delete_topics(names))

    def delete_topics(self, *prefixes: str) -> None:
        self.run(self._delete_topics(prefixes))

    def end_offset(self, topic: str, partition: int) -> int | None:
        """The partition's end offset as a new client sees it (None while the broker has no
        such topic partition)."""

        async def ask() -> int | None:
            consumer = await start_consumer(AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None))
            try:
                if partition not in (consumer.partitions_for_topic(topic) or set()):
                    await consumer._client.force_metadata_update()
                if partition not in (consumer.partitions_for_topic(topic) or set()):
                    return None
                tp = TopicPartition(topic, partition)
                return int((await consumer.end_offsets([tp]))[tp])
            finally:
                await consumer.stop()

        try:
            return self.run(ask())
        except KafkaError:
            return None  # the topic is being deleted or created

    async def _disconnect(self) -> None:
        clients: list[Any] = [consumer for consumer, _ in self._consumers.values()]
        clients += [client for client in (self._probe, self._producer) if client is not None]
        for client in clients:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await client.stop()
        if self._admin is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._admin.close()
        self._consumers.clear()
        self._probe = self._producer = self._admin = None

    def disconnect(self) -> None:
        """Close the clients (they cannot idle: their loop only runs during calls); keep what was read."""
        self.run(self._disconnect())

    def close(self) -> None:
        try:
            self.run(self._disconnect())
        finally:
            self.loop.close()


@dataclass
class Deployment:
    """One isolated copy of the system: its own topics, consumer group and worker state."""

    bootstrap: str
    redis_url: str  # the worker keeps a Redis projection under its app id
    root: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    store: str = "rocksdb://"
    worker_env: dict[str, str] = field(default_factory=dict)  # extra variables for workers
    workers: list[Worker] = field(default_factory=list)
    live: list[LiveReplay] = field(default_factory=list)  # publishing threads (replay_live_until)

    def __post_init__(self) -> None:
        self.bus = Bus(self.bootstrap)

    @property
    def prefix(self) -> str:
        return f"t{self.tag}."

    @property
    def app_id(self) -> str:
        return f"hs-{self.tag}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    @property
    def inputs(self) -> list[str]:
        return [self.topic(family) for family in FAMILIES]

    def settings(self) -> Settings:
        return Settings(
            kafka_bootstrap=self.bootstrap,
            topic_prefix=self.prefix,
            app_id=self.app_id,
            partitions=PARTITIONS,
            data_dir=self.root / "data",
            store=self.store,
        )

    def env(self, data_dir: Path | None = None) -> dict[str, str]:
        return {
            **clean_env(),
            "HEALTHSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "HEALTHSTREAM_REDIS_URL": self.redis_url,
            "HEALTHSTREAM_TOPIC_PREFIX": self.prefix,
            "HEALTHSTREAM_APP_ID": self.app_id,
            "HEALTHSTREAM_DATA_DIR": str(data_dir or self.root / "data"),
            "HEALTHSTREAM_PARTITIONS": str(PARTITIONS),
            "HEALTHSTREAM_STORE": self.store,
        }

    def create_topics(self) -> None:
        """What the worker and `streamer replay` do first (for tests that produce themselves)."""
        asyncio.run(ensure_topics(self.settings()))

    def start_worker(
        self,
        name: str = "w1",
        data_dir: Path | None = None,
        command: Sequence[str] = (STREAMER,),
        **env: str,
    ) -> Worker:
        """`streamer worker` (or `command worker`), with the deployment's environment and `env`."""
        variables = {**self.env(data_dir), **self.worker_env, **env}
        worker = Worker(name, variables, self.root / f"{name}.log", command)
        self.workers.append(worker)
        return worker

    def start_patched_worker(self, name: str, script: Path, **env: str) -> Worker:
        """`python SCRIPT worker`: a worker with a fault of the test's making, in its own data dir."""
        return self.start_worker(name, self.root / f"{name}-data", (sys.executable, str(script)), **env)

    def replay(self, events: Path, *options: str) -> str:
        """`streamer replay EVENTS --quiet [options]`; return what it printed."""
        done = subprocess.run(
            [STREAMER, "replay", str(events), "--quiet", *options],
            env=self.env(),
            capture_output=True,
            timeout=600,  # bounds a hang only: 25,000 events took over 120 s at a load of 30
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    # -- waiting ----------------------------------------------------------------------------------

    def poll_outputs(self) -> int:
        return sum(len(self.bus.poll(self.topic(name))) for name in ("health", "alerts", "deadletter"))

    def settle(self, *workers: Worker, deadline_s: float = SETTLE_DEADLINE_S) -> None:
        """Wait until the group has committed every input message and the outputs are quiet.

        Fails at once when one of `workers` exits, when neither the lag nor the outputs moved for
        `SETTLE_STUCK_S`, and after `deadline_s`, with the lag.
        """
        workers = workers or tuple(self.workers)
        self.wait_coordinator()
        started = last_change = last_progress = time.monotonic()
        caught_up_at: float | None = None
        least_lag: int | None = None
        while True:
            for worker in workers:
                assert worker.alive, (
                    f"worker {worker.name} exited with {worker.proc.returncode}:\n{worker.tail()}"
                )
            if self.poll_outputs():
                last_change = last_progress = time.monotonic()
            lag = self.bus.lag(self.app_id, self.inputs)
            now = time.monotonic()
            total = sum(lag.values())
            if least_lag is None or total < least_lag:
                least_lag, last_progress = total, now
            if total:
                caught_up_at = None
            elif caught_up_at is None:
                caught_up_at = now  # outputs of the last batch may have landed after the poll
            if caught_up_at is not None and now - max(last_change, caught_up_at) >= QUIET_S:
                return
            stuck = now - last_progress > SETTLE_STUCK_S
            if stuck or now - started > deadline_s:
                behind = {f"{tp.topic}[{tp.partition}]": n for tp, n in lag.items() if n}
                logs = "\n".join(f"--- {w.name}:\n{w.tail(15)}" for w in workers)
                why = (
                    f"no progress for {SETTLE_STUCK_S:.0f} s"
                    if stuck
                    else f"unfinished after {deadline_s:.0f} s"
                )
                raise AssertionError(f"{why}; uncommitted {behind}\n{logs}")
            time.sleep(0.5)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """Poll the outputs until `check()` holds; fail when a worker exits or after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll_outputs()
            if check():
                return
            for worker in self.workers:
                if worker.proc.returncode is None:  # not yet stopped or killed by the test
                    assert worker.alive, (
                        f"worker {worker.name} exited with {worker.proc.returncode}:\n{worker.tail()}"
                    )
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.3)

    def wait_coordinator(self) -> None:
        """Until the broker has a coordinator for the workers' group: right after a fresh or
        restarted broker comes up it answers GroupCoordinatorNotAvailable for a while (the
        deadline only bounds a hang)."""
        wait_until(
            f"the broker's group coordinator for {self.app_id}",
            lambda: self.bus.coordinator_ready(self.app_id),
            deadline_s=SETTLE_STUCK_S,
            every=0.5,
        )

    def wait_group(self, members: int, timeout: float = 60.0) -> None:
        """Until the workers' consumer group is stable with `members` members (partitions assigned)."""
        self.wait_coordinator()
        stable = ("Stable", members)
        self.wait_for(f"a stable group of {members}", lambda: self.bus.group(self.app_id) == stable, timeout)

    # -- reading results --------------------------------------------------------------------------

    def committed(self) -> int:
        """Input messages the worker group has committed (processed and acknowledged)."""
        return self.bus.committed(self.app_id, self.inputs)

    def final_snapshots(self) -> dict[str, dict[str, Any]]:
        """The last `cs.health` record per key (keys live on one partition, so offset order)."""
        last: dict[str, dict[str, Any]] = {}
        records = sorted(self.bus.records[self.topic("health")], key=lambda r: (r.partition, r.offset))
        for record in records:
            last[record.key.decode()] = orjson.loads(record.value)
        return last

    def alerts(self) -> list[dict[str, Any]]:
        return self.bus.values(self.topic("alerts"))

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.bus.values(self.topic("deadletter"))

    def close(self) -> None:
        for live in self.live:  # a failed test's publisher finishes quickly
            live.hurry()
        for worker in self.workers:
            worker.stop()
        try:
            self.bus.delete_topics(self.prefix, f"{self.app_id}-")
        finally:
            self.bus.close()
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
        try:
            keys = list(client.scan_iter(f"{self.app_id}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
def deploy(stack: StackInfo, tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """`deploy(store=..., worker_env=...)`: a fresh isolated deployment, torn down afterwards."""
    made: list[Deployment] = []

    def make(**options: Any) -> Deployment:
        root = tmp_path / f"deployment-{len(made)}"
        deployment = Deployment(stack.bootstrap, stack.redis_url, root, **options)
        deployment.root.mkdir(parents=True)
        deployment.create_topics()
        made.append(deployment)
        return deployment

    yield make
    failed = [
        f"{worker.name}: {short(record, 600)}"
        for deployment in made
        for worker in deployment.workers
        if not worker.may_fail
        for record in worker.records()
        if record.get("level") == "critical"
    ]
    for deployment in made:
        deployment.close()
    # A worker that failed after the outputs a test waits for: the test passed by a race (its
    # snapshot published before the table writes that ended the worker).
    assert not failed, "a worker failed:\n" + "\n".join(failed)


# -- comparing with offline ---------------------------------------------------------------------


def short(value: Any, width: int = 160) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 3] + "..."


def snapshot_differences(got: dict[str, Any], want: dict[str, Any], path: str = "") -> str:
    """The fields that differ, down to the innermost differing keys of nested objects."""
    parts = []
    for name in sorted(set(got) | set(want)):
        mine, theirs = got.get(name), want.get(name)
        if mine == theirs:
            continue
        if isinstance(mine, dict) and isinstance(theirs, dict):
            parts.append(snapshot_differences(mine, theirs, f"{path}{name}."))
        else:
            parts.append(f"{path}{name}: stream {short(mine, 80)} offline {short(theirs, 80)}")
    return "; ".join(parts)


def warnings_of(workers: Sequence[Worker], most: int = 30) -> str:
    """The workers' warnings and errors, for a failure's message: the clue to an intermittent
    one is in the run that failed (the logs are gone with the temporary directory)."""
    lines = [
        f"{worker.name}: {short(record, 300)}"
        for worker in workers
        for record in worker.records()
        if record.get("level") in ("warning", "error", "critical")
    ]
    return f"\nworker warnings ({len(lines)}):\n" + "\n".join(lines[-most:]) if lines else ""


def written_at(deployment: Deployment, topic: str, field: str, ids: Sequence[str]) -> str:
    """Where and when (the producer's clock, as the workers' logs have it) each record of
    `topic` whose `field` is one of `ids` was written, for a failure's message: with the logs'
    rebalances it says which worker wrote an output offline does not have."""
    wanted = set(ids)
    lines = [
        f"{value[field]}: partition {record.partition} offset {record.offset} written "
        f"{datetime.fromtimestamp(record.timestamp / 1000, UTC).strftime('%H:%M:%S.%f')[:-3]}"
        for record in deployment.bus.records[deployment.topic(topic)]
        if (value := orjson.loads(record.value)).get(field) in wanted
    ]
    return "\n" + "\n".join(lines) if lines else ""


def dead_letters_of(deployment: Deployment, most: int = 10) -> str:
    """The deployment's dead letters, for a failure's message: a clean history has none, and an
    event refused in the stream (too late, say) explains a snapshot that differs."""
    letters = deployment.dead_letters()
    lines = [
        f"{got('topic')}[{got('partition')}]@{got('offset')}: {short(got('error'), 200)}"
        for got in (letter.get for letter in letters[:most])
    ]
    return f"\ndead letters ({len(letters)}):\n" + "\n".join(lines) if letters else ""


def assert_same_as_offline(deployment: Deployment, history: History) -> None:
    """Final snapshot per account, the set of alert ids (each with the same record) and MRR."""
    snapshots = deployment.final_snapshots()
    missing = sorted(set(history.accounts) - set(snapshots))
    extra = sorted(set(snapshots) - set(history.accounts))
    assert not missing and not extra, f"accounts missing from cs.health {missing}, extra {extra}"
    differing = [aid for aid in sorted(history.accounts) if snapshots[aid] != history.accounts[aid]]
    assert not differing, (
        f"{len(differing)} of {len(snapshots)} final snapshots differ:\n"
        + "\n".join(
            f"{aid}: {snapshot_differences(snapshots[aid], history.accounts[aid])}" for aid in differing[:5]
        )
        + dead_letters_of(deployment)
        + warnings_of(deployment.workers)
    )

    alerts = deployment.alerts()
    ids = {alert["alert_id"] for alert in alerts}
    missing = sorted(set(history.alerts) - ids)
    extra = sorted(ids - set(history.alerts))
    assert not missing and not extra, (
        f"alert ids: {len(missing)} of {len(history.alerts)} missing, {len(extra)} extra; e.g. missing "
        f"{[short(history.alerts[i]) for i in missing[:3]]}, extra "
        f"{[short(a) for a in alerts if a['alert_id'] in extra[:3]]}"
        + written_at(deployment, "alerts", "alert_id", extra[:10])
        + warnings_of(deployment.workers)
    )
    changed = [alert for alert in alerts if alert != history.alerts[alert["alert_id"]]]
    assert not changed, f"same id, different alert: {short(changed[0], 400)} vs offline " + short(
        history.alerts[changed[0]["alert_id"]], 400
    )

    # The worker publishes no portfolio yet: at least the MRR adds up to offline's.
    mrr = sum(Decimal(snapshot["mrr"]) for snapshot in snapshots.values())
    assert mrr == sum(Decimal(account["mrr"]) for account in history.accounts.values())
    # (The portfolio adds unrounded amounts: it may differ from the rounded accounts by cents.)
    assert abs(mrr - Decimal(history.portfolio["current"]["mrr"])) <= Decimal("0.005") * len(snapshots)


def alert_counts(deployment: Deployment) -> collections.Counter[str]:
    return collections.Counter(alert["alert_id"] for alert in deployment.alerts())


# -- 1. a backfill gives offline's answers ------------------------------------------------------


@pytest.fixture(scope="module")
def backfill(
    stack: StackInfo, history: Callable[[int], History], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployment, History, str]]:
    """A history published before the worker starts, processed to the end (shared read-only)."""
    events = history(11)
    deployment = Deployment(stack.bootstrap, stack.redis_url, tmp_path_factory.mktemp("backfill"))
    try:
        printed = deployment.replay(events.events)
        worker = deployment.start_worker()
        deployment.settle(worker)
        yield deployment, events, printed
    finally:
        deployment.close()


def test_backfill_gives_the_same_answers_as_offline_sort(
    backfill: tuple[Deployment, History, str],
) -> None:
    deployment, history, printed = backfill
    assert f"published {len(history.lines):,} events" in printed
    assert_same_as_offline(deployment, history)
    assert not deployment.dead_letters()
    # An uninterrupted worker sends each alert once.
    assert max(alert_counts(deployment).values()) == 1


def test_outputs_follow_the_output_contract_and_are_keyed_by_account(
    backfill: tuple[Deployment, History, str],
) -> None:
    deployment, _, _ = backfill
    for name, model in (("health", HealthSnapshot), ("alerts", Alert)):
        records = deployment.bus.records[deployment.topic(name)]
        assert records
        for record in records:
            value = model.model_validate_json(record.value)
            assert record.key == value.account_id.encode()
            assert record.partition == partition_of(value.account_id, PARTITIONS), (
                f"{name} record for {value.account_id} on partition {record.partition}"
            )


# -- 2. dead letters ----------------------------------------------------------------------------


def event(event_type: str, account: str, when: str, event_id: str, **fields: Any) -> dict[str, Any]:
    envelope = {"event_id": event_id, "event_type": event_type, "account_id": account, "occurred_at": when}
    return envelope | fields


def started(account: str, when: str, event_id: str, amount: str = "100.00") -> dict[str, Any]:
    return event(
        "subscription.started",
        account,
        when,
        event_id,
        subscription_id=f"{account}-s1",
        plan="pro",
        amount=amount,
        currency="USD",
        interval="month",
        seats=5,
    )


def used(account: str, when: str, event_id: str) -> dict[str, Any]:
    return event("usage.recorded", account, when, event_id, user_id="u1", feature="reports")


def test_bad_messages_go_to_the_dead_letter_topic_and_the_worker_keeps_going(
    deploy: Callable[..., Deployment],
) -> None:
    deployment = deploy()
    subs, usage = deployment.topic("subscriptions"), deployment.topic("usage")
    bus = deployment.bus

    def send(topic: str, value: bytes | dict[str, Any], key: str | None) -> tuple[int, int]:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        return bus.produce(topic, raw, key.encode() if key is not None else None)

    # (topic, value, key, what the error says)
    bad: list[tuple[str, bytes | dict[str, Any], str, str]] = [
        (usage, b'{"event_id": "x1", "account_id": "dl-json", oops', "dl-json", "not valid JSON"),
        (usage, b"\xff\xfe\x00 not utf-8", "dl-bytes", "not valid JSON"),
        (
            usage,
            event("usage.teleported", "dl-type", "2024-03-01T10:00:00Z", "x2"),
            "dl-type",
            "unknown event_type 'usage.teleported'",
        ),
        (
            subs,
            started("dl-neg", "2024-03-01T10:00:00Z", "x3", amount="-10.00"),
            "dl-neg",
            "field 'amount' of subscription.started",
        ),
        (
            subs,
            started("dl-owner", "2024-03-01T10:00:00Z", "x4"),
            "dl-someone-else",
            "message key 'dl-someone-else' disagrees with account_id 'dl-owner'",
        ),
        (
            subs,
            used("dl-topic", "2024-03-01T10:00:00Z", "x5"),
            "dl-topic",
            "event_type 'usage.recorded' does not belong on the subscriptions topic",
        ),
    ]
    sent = [(topic, value, key, error, send(topic, value, key)) for topic, value, key, error in bad]
    send(subs, started("dl-good", "2024-03-01T09:00:00Z", "g1"), "dl-good")
    keyless_at = send(subs, started("dl-keyless", "2024-03-01T09:30:00Z", "k1"), None)

    worker = deployment.start_worker()
    deployment.wait_for(
        "dl-good and dl-keyless in cs.health and six dead letters",
        lambda: (
            {"dl-good", "dl-keyless"} <= set(deployment.final_snapshots())
            and len(deployment.dead_letters()) >= len(bad)
        ),
    )
    # Now that the partition's stream time is 2024-03-01, an event 60 days older is too late.
    late = used("dl-good", "2024-01-01T09:00:00Z", "late1")
    sent.append((usage, late, "dl-good", "too late to fold in", send(usage, late, "dl-good")))
    send(subs, started("dl-after", "2024-03-02T09:00:00Z", "a1"), "dl-after")
    deployment.wait_for(
        "dl-after in cs.health and the late event's dead letter",
        lambda: "dl-after" in deployment.final_snapshots() and len(deployment.dead_letters()) >= len(sent),
    )
    deployment.settle(worker)
    assert worker.alive

    letters = deployment.dead_letters()
    assert len(letters) == len(sent), [short(letter) for letter in letters]
    for letter in letters:
        DeadLetter.model_validate(letter)
    by_place = {(letter["topic"], letter["partition"], letter["offset"]): letter for letter in letters}
    for topic, value, key, error, (partition, offset) in sent:
        found = by_place.get((topic, partition, offset))
        assert found is not None, f"no dead letter for {topic}[{partition}]@{offset} ({error})"
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        if found["encoding"] == "base64":
            assert base64.b64decode(found["original"]) == raw
            assert raw == b"\xff\xfe\x00 not utf-8"
        else:
            assert found["original"] == raw.decode()
        assert found["key"] == key
        assert error in found["error"], found["error"]
        assert len(found["error"]) < 400

    # The keyless message went to its account's partition, keyed, and was scored from there.
    snapshots = deployment.final_snapshots()
    assert snapshots["dl-keyless"]["mrr"] == "100.00"
    assert snapshots["dl-good"]["mrr"] == "100.00" and snapshots["dl-after"]["mrr"] == "100.00"
    assert not {"dl-neg", "dl-owner", "dl-someone-else", "dl-type", "dl-topic"} & set(snapshots)
    bus.poll(subs)
    copies = [
        record for record in bus.records[subs] if orjson.loads(record.value)["account_id"] == "dl-keyless"
    ]
    home = partition_of("dl-keyless", PARTITIONS)
    assert [(r.key, r.partition) for r in copies if r.key is not None] == [(b"dl-keyless", home)]
    assert [(r.partition, r.offset) for r in copies if r.key is None] == [keyless_at]


def test_a_keyless_event_of_the_largest_size_is_re_routed_and_scored(
    deploy: Callable[..., Deployment],
) -> None:
    """A valid keyless event of the largest size the contract takes (1 MiB), sent compressed,
    is re-published uncompressed with its key: the broker's default record limit refused the
    copy, the worker sent it again for ever and nothing moved, at every restart. The worker
    gives its input topics room for it (topics.INPUT)."""
    deployment = deploy()
    subs = deployment.topic("subscriptions")
    worker = deployment.start_worker()
    deployment.wait_group(1)  # joined: its topics are its own (a metadata request creates one too)
    big = started("big-keyless", "2024-03-01T09:00:00Z", "b1") | {"pad": ""}
    big["pad"] = "x" * (MAX_EVENT_BYTES - len(orjson.dumps(big)))
    value = orjson.dumps(big)
    assert len(value) == MAX_EVENT_BYTES

    async def send_compressed() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=deployment.bootstrap,
            compression_type="gzip",
            acks="all",
            max_request_size=2**21,
        )
        await producer.start()
        try:
            await producer.send_and_wait(subs, value, key=None)
        finally:
            await producer.stop()

    deployment.bus.run(send_compressed())
    deployment.bus.produce(
        subs, orjson.dumps(started("after-big", "2024-03-01T10:00:00Z", "a1")), b"after-big"
    )
    deployment.wait_for(
        "both accounts in cs.health",
        lambda: {"big-keyless", "after-big"} <= set(deployment.final_snapshots()),
    )
    assert deployment.final_snapshots()["big-keyless"]["mrr"] == "100.00"
    assert not deployment.dead_letters()
    assert not [r for r in worker.records() if "re-routed input not acknowledged" in r.get("msg", "")]


def test_a_keyless_event_too_large_to_re_route_where_the_topic_takes_less_is_dead_lettered(
    deploy: Callable[..., Deployment],
) -> None:
    """Where the input topics take less than a keyless event's keyed copy (the worker may not
    set their limit, or an operator lowered it), re-routing it would send the copy again for
    ever and hold up every later checkpoint: the worker learns the topics' limit from the broker
    (every 30 s) and dead-letters such an event with what to do; the next event is scored."""
    deployment = deploy()
    subs = deployment.topic("subscriptions")
    worker = deployment.start_worker()
    # Joined, the worker has created and configured its topics: lowered before it configured
    # them (the topic can exist before: a metadata request creates it on this broker), the
    # limit was set back by the worker, which then had nothing to learn.
    deployment.wait_group(1)

    async def lower_the_limit() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=deployment.bootstrap)
        await admin.start()
        try:
            configs = {**INPUT, "max.message.bytes": "4096"}
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, subs, configs=configs)])
        finally:
            await admin.close()

    deployment.bus.run(lower_the_limit())
    deployment.wait_for(
        "the worker to learn the topics' limit",
        lambda: any(r.get("max_message_bytes") == 4096 for r in worker.records()),
        timeout=90.0,
    )
    big = started("too-big-keyless", "2024-03-01T09:00:00Z", "t1") | {"pad": "x" * 6000}

    async def send_compressed() -> None:  # 6 KB of x's: the broker takes it compressed
        producer = AIOKafkaProducer(
            bootstrap_servers=deployment.bootstrap, compression_type="gzip", acks="all"
        )
        await producer.start()
        try:
            await producer.send_and_wait(subs, orjson.dumps(big), key=None)
        finally:
            await producer.stop()

    deployment.bus.run(send_compressed())
    deployment.bus.produce(
        subs, orjson.dumps(started("after-too-big", "2024-03-01T10:00:00Z", "a1")), b"after-too-big"
    )
    deployment.wait_for("after-too-big in cs.health", lambda: "after-too-big" in deployment.final_snapshots())
    deployment.wait_for("the dead letter", lambda: bool(deployment.dead_letters()))
    [letter] = deployment.dead_letters()
    assert "larger than the input topic takes (max.message.bytes 4,096)" in letter["error"], letter
    assert "too-big-keyless" not in deployment.final_snapshots()
    assert not [r for r in worker.records() if "re-routed input not acknowledged" in r.get("msg", "")]


def test_partitions_added_to_an_input_topic_under_the_worker_re_route_each_event_once(
    deploy: Callable[..., Deployment],
) -> None:
    """An operator adds partitions to an input topic under a running worker. An event on a new
    partition is re-routed once, to the partition its account has among the worker's, and
    scored; the worker says what is wrong. Before, the copy went through the producer's
    partitioner, which hashed it over the topic's new count to a wrong partition again, for
    ever: the topic grew by 1,500 records a second and the event was never scored."""
    deployment = deploy()
    subs = deployment.topic("subscriptions")
    worker = deployment.start_worker()
    deployment.wait_group(1)  # joined: its topics are its own (a metadata request creates one too)
    added = PARTITIONS + 2

    async def add_partitions() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=deployment.bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({subs: NewPartitions(total_count=added)})
        finally:
            await admin.close()

    deployment.bus.run(add_partitions())
    account = next(a for a in (f"grown-{n}" for n in range(1000)) if partition_of(a, added) >= PARTITIONS)
    new = partition_of(account, added)
    deployment.wait_for(
        "the worker to see the topic's new partitions",
        lambda: any("another partition count" in r.get("msg", "") for r in worker.records()),
        timeout=90.0,
    )
    deployment.bus.produce(
        subs, orjson.dumps(started(account, "2024-03-01T09:00:00Z", "g1")), account.encode(), new
    )
    deployment.wait_for(
        f"{account} in cs.health", lambda: account in deployment.final_snapshots(), timeout=120.0
    )
    home = partition_of(account, PARTITIONS)
    assert deployment.bus.end_offset(subs, home) == 1, "the copy, once, on the account's partition"
    assert deployment.bus.end_offset(subs, new) == 1, "the event as sent, never a copy"
    # The event and its copy committed: the checkpoints that wrote their state got through. The
    # tables once refused any write routed by a message of a topic with another partition count.
    deployment.wait_for("the event and its copy committed", lambda: deployment.committed() == 2)
    assert worker.alive, worker.tail()
    assert not deployment.dead_letters()


def test_cs_health_ends_with_each_accounts_current_snapshot(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """x starts on 1 March; y, on x's partition, on 2 March: the daily tick at 00:00 re-scores x
    (same score, band, MRR; new as_of and metrics). Offline's final x is that evaluation."""
    deployment = deploy()
    subs = deployment.topic("subscriptions")
    home = partition_of("stale-x", PARTITIONS)
    neighbour = next(a for a in (f"stale-y{n}" for n in range(100)) if partition_of(a, PARTITIONS) == home)
    first = orjson.dumps(started("stale-x", "2024-03-01T09:00:00Z", "x1"))
    second = orjson.dumps(started(neighbour, "2024-03-02T09:00:00Z", "y1"))
    worker = deployment.start_worker()
    deployment.bus.produce(subs, first, b"stale-x")
    deployment.wait_for("stale-x in cs.health", lambda: "stale-x" in deployment.final_snapshots())
    deployment.bus.produce(subs, second, neighbour.encode())  # published in time order, later
    deployment.wait_for(f"{neighbour} in cs.health", lambda: neighbour in deployment.final_snapshots())
    deployment.settle(worker)

    events = tmp_path / "two.jsonl"
    events.write_bytes(first + b"\n" + second + b"\n")
    offline = run_offline(events, tmp_path / "offline")
    assert offline.accounts["stale-x"]["as_of"] == "2024-03-02T00:00:00Z"
    snapshots = deployment.final_snapshots()
    assert snapshots["stale-x"] == offline.accounts["stale-x"], snapshot_differences(
        snapshots["stale-x"], offline.accounts["stale-x"]
    )


# -- 3. duplicates ------------------------------------------------------------------------------


def test_publishing_the_same_file_again_changes_nothing(
    deploy: Callable[..., Deployment], history: Callable[[int], History]
) -> None:
    events = history(12)
    deployment = deploy()
    deployment.replay(events.events)
    deployment.replay(events.events)  # twice before the worker starts ...
    worker = deployment.start_worker()
    deployment.settle(worker)
    assert_same_as_offline(deployment, events)
    first = alert_counts(deployment)

    deployment.replay(events.events)  # ... and once more while it runs
    deployment.settle(worker)
    assert_same_as_offline(deployment, events)
    assert alert_counts(deployment) == first, "alerts were sent again for repeated events"
    # Repeats are either recognised duplicates or too late (older than the allowed lateness):
    # nothing else lands on the dead-letter topic.
    for letter in deployment.dead_letters():
        assert "too late" in letter["error"], letter


# -- 4. kill -9 and restart ---------------------------------------------------------------------


class LiveReplay:
    """Publishes a history's lines from a thread at `rate` events per second (as `streamer replay
    --rate`) until `hurry()`, then the rest at full speed.

    A fault test paces the start so that its fault lands while events flow, and need not sit
    through the pacing once the fault is in place: the condition, not a duration, ends it.

    `transactions`: as a transactional producer (an outbox relay) would, in committed
    transactions of that many lines, each third one followed by an aborted transaction of
    altered copies (new event ids, and accounts nobody else has) that must never count.
    """

    def __init__(self, settings: Settings, lines: list[bytes], rate: float, transactions: int = 0) -> None:
        self.lines = lines
        self.transactions = transactions
        self.published = 0
        self.paced = 0  # lines published before hurry()
        self._hurry = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(settings, rate), daemon=True)
        self._thread.start()

    def hurry(self) -> None:
        self._hurry.set()

    def _run(self, settings: Settings, rate: float) -> None:
        try:
            asyncio.run(self._publish(settings, rate))
        except BaseException as exc:  # re-raised by wait()
            self._error = exc

    async def _publish(self, settings: Settings, rate: float) -> None:
        if self.transactions:
            await self._publish_in_transactions(settings, rate)
            return
        rest = iter(self.lines)

        def until_hurried() -> Iterator[bytes]:
            for line in rest:
                yield line
                if self._hurry.is_set():
                    return

        paced = await publish(until_hurried(), settings, rate=rate)
        self.paced = paced.total
        self.published = paced.total + (await publish(rest, settings)).total

    async def _publish_in_transactions(self, settings: Settings, rate: float) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, transactional_id=f"live-{uuid.uuid4().hex[:8]}"
        )
        await producer.start()
        started, size = time.perf_counter(), self.transactions
        try:
            for number, first in enumerate(range(0, len(self.lines), size)):
                chunk = self.lines[first : first + size]
                async with producer.transaction():
                    for line in chunk:
                        await self._send(producer, settings, line)
                if number % 3 == 2:
                    await producer.begin_transaction()
                    for line in chunk:
                        await self._send(producer, settings, aborted_copy(line, number))
                    await producer.abort_transaction()
                self.published += len(chunk)
                if self._hurry.is_set():
                    continue
                self.paced = self.published
                ahead = self.published / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            await producer.stop()

    @staticmethod
    async def _send(producer: AIOKafkaProducer, settings: Settings, line: bytes) -> None:
        target = route(line, settings)
        assert target is not None, line
        topic, key = target
        await producer.send(topic, line, key=key)

    def wait(self, timeout: float = 180.0) -> None:
        """Until every line is published (the timeout bounds a hang only)."""
        self.hurry()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"publishing unfinished after {timeout:.0f} s"
        if self._error is not None:
            raise self._error
        assert self.published == len(self.lines), f"published {self.published} of {len(self.lines)} lines"


def aborted_copy(line: bytes, number: int) -> bytes:
    """An event of an aborted transaction: a new id, and every other account a ghost's."""
    event = orjson.loads(line)
    event["event_id"] = f"aborted-{number}-{event['event_id']}"
    if number % 2:
        event["account_id"] = f"ghost-{event['account_id']}"
    return orjson.dumps(event)


def replay_live_until(
    deployment: Deployment, events: History, seconds: float, fraction: float, transactions: int = 0
) -> LiveReplay:
    """Publish `events` spread over `seconds` while workers run; return once the group has
    committed `fraction` of them (more are in flight then). The caller hurries the rest."""
    rate = len(events.lines) / seconds
    live = LiveReplay(deployment.settings(), events.lines, rate=rate, transactions=transactions)
    deployment.live.append(live)
    wanted = int(len(events.lines) * fraction)
    committed = 0

    def enough() -> bool:
        nonlocal committed
        committed = deployment.committed()
        return committed >= wanted

    deployment.wait_for(f"{wanted} events processed", enough)
    assert committed < len(events.lines) * 0.8, f"too late to act in the middle: {committed} committed"
    return live


def assert_no_offsets_skipped(*workers: Worker) -> None:
    """faust counts an offset range it skipped as acknowledged; with our non-transactional
    producers every skip is a lost delivery (the rebalance race the worker's consumer closes).
    Both faust's consumer (`RebalanceSafeConsumer._add_gap`) and the scorer (a delivery past
    the next offset of its topic partition) log each one as "skipped an offset range"."""
    for worker in workers:
        skipped = [line for line in worker.text().splitlines() if "skipped an offset range" in line]
        assert not skipped, f"{worker.name} skipped offsets: {skipped[:3]}"


@pytest.mark.slow
@pytest.mark.parametrize("transactions", [0, 20], ids=["plain", "transactional"])
def test_kill_9_in_the_middle_then_restart_loses_and_invents_nothing(
    deploy: Callable[..., Deployment], history: Callable[[int], History], transactions: int
) -> None:
    """Also with a transactional producer, whose markers and aborted records take offsets that
    no read delivers: the restart starts from committed offsets at or between them."""
    events = history(13)
    deployment = deploy(worker_env=KILLED_MEMBER_LEAVES_SOON)
    first = deployment.start_worker("w1")
    deployment.wait_group(1)
    # Paced as if spread over a minute until the kill: the worker takes whatever a fetch returns
    # (up to 1,000 records per partition), so a faster replay lands in one or two batches and is
    # committed before the kill. The rest is published at once, for the restarted worker.
    live = replay_live_until(deployment, events, seconds=60, fraction=0.4, transactions=transactions)
    first.kill()
    live.hurry()
    before = len(alert_counts(deployment))

    second = deployment.start_worker("w2")  # same app id, same data dir
    live.wait()
    assert live.paced < len(events.lines), "the history was published before the kill"
    deployment.settle(second)
    # The killed worker's local stores held writes the changelog lacks: not trusted.
    assert "the last run did not stop cleanly" in second.text(), second.tail()
    assert_no_offsets_skipped(first, second)  # first: a lost delivery explains any difference
    assert_same_as_offline(deployment, events)
    # At least once: an alert may be re-sent after the restart, always with the same id.
    assert 0 < before < len(events.alerts)
    # The history is clean (offline dead-letters nothing): messages read again after the kill
    # were already applied, and are skipped by their offsets however old their event time,
    # never dead-lettered as too late.
    letters = deployment.dead_letters()
    assert not letters, (
        f"{len(letters)} valid events dead-lettered after the kill, e.g. {short(letters[0], 400)}"
    )


def test_a_standby_replica_takes_over_a_killed_workers_partitions_and_gives_offlines_answers(
    deploy: Callable[..., Deployment], history: Callable[[int], History]
) -> None:
    """With `HEALTHSTREAM_STANDBY_REPLICAS=1` each worker keeps the other's tables up to date;
    killed mid-stream, one worker's partitions are taken over from the other's standby stores
    (no changelog read from the start) and the answers are offline's."""
    events = history(13)
    deployment = deploy(worker_env={**KILLED_MEMBER_LEAVES_SOON, "HEALTHSTREAM_STANDBY_REPLICAS": "1"})
    first = deployment.start_worker("w1", data_dir=deployment.root / "w1-data")
    second = deployment.start_worker("w2", data_dir=deployment.root / "w2-data")
    deployment.wait_group(2, timeout=180)  # bounds a hang only
    live = replay_live_until(deployment, events, seconds=60, fraction=0.4)
    first.kill()
    live.hurry()
    live.wait()
    assert live.paced < len(events.lines), "the history was published before the kill"
    deployment.settle(second)
    # The group's leader logs the assignment: either worker, until the kill.
    assignments = [
        record
        for worker in (first, second)
        for record in worker.records()
        if record.get("msg") == "partitions assigned by their input messages"
    ]
    assert any(record.get("standbys") for record in assignments), "no standby was assigned"
    assert_no_offsets_skipped(first, second)
    assert_same_as_offline(deployment, events)
    assert not deployment.dead_letters()


@pytest.mark.slow
def test_a_worker_that_stood_still_past_its_session_writes_nothing_over_the_new_owner(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """SIGSTOP one of two workers in the middle of a backlog, past its session timeout: the group
    gives its partitions to the other, which scores the whole history. Resumed, the stopped
    worker's consumer still counts those partitions its own until its next heartbeat fails and
    faust revokes them, and its scorer finishes the batch it stood still in. Before the
    membership lease (`streamer/stream/membership.py`) it then wrote that batch's snapshots and
    state, older than the new owner's, over them: offline's answers were lost for good. The
    state is checked where it lives too, in the changelogs: a third worker with no local store
    recovers from them and applies one more event per account."""
    events = simulate_and_score(tmp_path / "history", seed=17, accounts=120, months=4)
    deployment = deploy(worker_env=KILLED_MEMBER_LEAVES_SOON)
    first = deployment.start_worker("w1", data_dir=deployment.root / "w1-data")
    second = deployment.start_worker("w2", data_dir=deployment.root / "w2-data")
    deployment.wait_group(2, timeout=180)  # bounds a hang: joining takes a while on a busy machine
    # Published while the workers are watched: waiting for the whole replay first let them commit
    # past half the backlog on a busy machine before the stop (a loop run once), and polled every
    # 50 ms without reading the outputs (`wait_for` reads them all each time: CI once).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as publisher:
        published = publisher.submit(deployment.replay, events.events)
        wait_until(
            "the workers to be busy with the backlog",
            lambda: deployment.committed() >= len(events.lines) // 8,
            deadline_s=180,  # bounds a hang only
            every=0.05,
        )
        first.proc.send_signal(signal.SIGSTOP)
        try:
            assert deployment.committed() < len(events.lines) // 2, "too late: the backlog is mostly done"
            published.result(timeout=600)  # bounds a hang only
            deployment.wait_group(1, timeout=180)  # the group drops it after its session
            deployment.wait_for(
                "the remaining worker to commit the whole history",
                lambda: deployment.committed() >= len(events.lines),
                timeout=300,  # bounds a hang only
            )
            deployment.poll_outputs()
        finally:
            first.proc.send_signal(signal.SIGCONT)
    deployment.wait_group(2, timeout=180)  # it rejoins
    deployment.settle(first, second)
    assert_no_offsets_skipped(first, second)
    assert_same_as_offline(deployment, events)
    assert not deployment.dead_letters()
    # The changelogs too: a worker with no local store recovers every partition from them, and
    # one more event per account publishes what it recovered (the stopped worker's account
    # records written over the new owner's would show here, whatever the snapshots said).
    tail, whole = closed_again(events, tmp_path / "again")
    first.stop()
    second.stop()
    recovered = deployment.start_worker("w3", data_dir=deployment.root / "w3-data")
    deployment.wait_group(1, timeout=180)  # bounds a hang only
    deployment.replay(tail)
    deployment.settle(recovered)
    assert_same_as_offline(deployment, whole)
    assert not deployment.dead_letters()


def stop_at_line(worker: Worker, line: str, deadline_s: float = 180) -> None:
    """SIGSTOP `worker` the moment its log shows `line` (read every millisecond: the window to
    hit is a fraction of a second)."""
    deadline = time.monotonic() + deadline_s
    with worker.log.open("rb") as log:
        seen = b""
        while time.monotonic() < deadline:
            seen = seen[-len(line) :] + log.read()
            if line.encode() in seen:
                worker.proc.send_signal(signal.SIGSTOP)
                return
            assert worker.alive, f"worker {worker.name} exited:\n{worker.tail()}"
            time.sleep(0.001)
    raise AssertionError(f"{worker.name} never logged {line!r}")


@pytest.mark.slow
def test_a_worker_stopped_as_it_is_assigned_its_partitions_writes_nothing_over_their_owner(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """A reviewer's race: a second worker joins a worker busy with a backlog and is stopped as
    faust hands it its assignment, past its session timeout. The first worker takes every
    partition back and scores them. The lease was first renewed by the assignment as the scorer
    saw it, after the stop: resumed, the second worker held a fresh lease for a generation the
    group had dropped, applied and wrote over the first (29-31 of 120 final snapshots differed
    in three of three tries). A generation now holds a lease only once a heartbeat confirmed it."""
    events = simulate_and_score(tmp_path / "history", seed=17, accounts=120, months=4)
    deployment = deploy(worker_env=KILLED_MEMBER_LEAVES_SOON)
    first = deployment.start_worker("w1", data_dir=deployment.root / "w1-data")
    deployment.wait_group(1, timeout=180)  # bounds a hang: joining takes a while on a busy machine
    deployment.replay(events.events)
    deployment.wait_for(
        "the worker to be busy with the backlog",
        lambda: deployment.committed() >= len(events.lines) // 10,
        timeout=180,  # bounds a hang only
    )
    second = deployment.start_worker("w2", data_dir=deployment.root / "w2-data")
    stop_at_line(second, "Executing _on_partitions_assigned")
    try:
        deployment.wait_group(1, timeout=180)  # the group drops it after its session
        # Resumed while the first still works the backlog: the second seeks to offsets the first
        # is moving past, and what it applies then is older than what the first writes.
        assert deployment.committed() < len(events.lines), "too late: the backlog is done"
    finally:
        second.proc.send_signal(signal.SIGCONT)
    deployment.settle(first, second)
    assert_no_offsets_skipped(first, second)
    assert_same_as_offline(deployment, events)
    assert not deployment.dead_letters()


HOLDING_WORKER = Path(__file__).with_name("hold_recovery_end.py")


def test_a_recovery_that_ends_after_the_next_rebalance_began_does_not_end_that_one(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """faust's table recovery starts the fetcher after its last generation check, then ends the
    rebalance. The first worker's recovery of a second worker's join, held there until the
    second worker has scored its partitions and left, ended the rebalance of the leave before
    the leave's recovery had run: the first worker took the tables as restored without the
    second worker's writes, and could build those partitions' engines from a store that lacked
    the accounts it had added."""
    events = simulate_and_score(tmp_path / "history", seed=29, accounts=60, months=3)
    half = len(events.lines) // 2
    first_half, second_half = events.lines[:half], events.lines[half:]
    (tmp_path / "first.jsonl").write_bytes(b"\n".join(first_half) + b"\n")
    (tmp_path / "second.jsonl").write_bytes(b"\n".join(second_half) + b"\n")
    arm, held = tmp_path / "arm", tmp_path / "held"
    deployment = deploy(worker_env=KILLED_MEMBER_LEAVES_SOON)
    holding = deployment.start_patched_worker(
        "w1", HOLDING_WORKER, HOLD_RECOVERY_ARM=str(arm), HOLD_RECOVERY_HELD=str(held)
    )
    deployment.wait_group(1, timeout=180)  # bounds a hang only
    deployment.replay(tmp_path / "first.jsonl")
    deployment.wait_for(
        "the first worker to commit the first half",
        lambda: deployment.committed() >= len(first_half),
        timeout=300,  # bounds a hang only
    )

    arm.touch()  # the first worker's next recovery holds until the rebalance after it begins
    second = deployment.start_worker("w2", data_dir=deployment.root / "w2-data")
    deployment.wait_for("the first worker to hold its recovery", held.exists, timeout=180)
    deployment.wait_for(
        "the second worker to score its partitions",
        lambda: "partition engine ready" in second.text(),
        timeout=180,  # bounds a hang only
    )
    deployment.replay(tmp_path / "second.jsonl")
    ready = [record for record in second.records() if record.get("msg") == "partition engine ready"]
    theirs = {record["partition"] for record in ready}
    assert theirs and len(theirs) < PARTITIONS, theirs
    owed = len(first_half) + sum(
        1 for line in second_half if partition_of(orjson.loads(line)["account_id"], PARTITIONS) in theirs
    )
    deployment.wait_for(
        "the second worker to commit the second half of its partitions",
        lambda: deployment.committed() >= owed,
        timeout=300,  # bounds a hang only
    )
    second.stop()  # leaves the group: the held recovery ends as the next rebalance begins
    deployment.settle(holding)

    # The engines built after the leave hold every account and event of the partitions taken
    # back (built before the leave's recovery, they held those of the first half).
    accounts: dict[int, set[str]] = collections.defaultdict(set)
    latest: dict[int, int] = collections.defaultdict(int)
    for line in events.lines:
        event = orjson.loads(line)
        partition = partition_of(event["account_id"], PARTITIONS)
        accounts[partition].add(event["account_id"])
        at = int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000)
        latest[partition] = max(latest[partition], at)
    built = [record for record in holding.records() if record.get("msg") == "partition engine ready"]
    last = {record["partition"]: (record["accounts"], record["stream_time"]) for record in built}
    assert {p: last.get(p) for p in theirs} == {p: (len(accounts[p]), latest[p]) for p in theirs}
    assert "a table recovery ended after the next rebalance began" in holding.text()
    assert_no_offsets_skipped(holding, second)
    assert_same_as_offline(deployment, events)
    assert not deployment.dead_letters()


ENDING_WORKER = Path(__file__).with_name("end_recovery_loop.py")


def test_a_worker_whose_recovery_loop_ended_exits_and_another_takes_over(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    """A step of a table recovery that times out ends faust's recovery loop without a word:
    every later rebalance waited for a recovery that never came, and the worker held its input
    for good. It now exits (a restart resumes from the committed offsets)."""
    events = history(14)
    arm = tmp_path / "arm"
    deployment = deploy(worker_env=KILLED_MEMBER_LEAVES_SOON)
    ending = deployment.start_patched_worker("w1", ENDING_WORKER, END_RECOVERY_ARM=str(arm))
    ending.may_fail = True
    deployment.wait_group(1, timeout=180)  # bounds a hang only
    deployment.replay(events.events)
    deployment.wait_for(
        "the first worker to commit a third of the history",
        lambda: deployment.committed() >= len(events.lines) // 3,
        timeout=180,  # bounds a hang only
    )
    arm.touch()  # its next recovery ends the loop
    second = deployment.start_worker("w2", data_dir=deployment.root / "w2-data")
    deployment.wait_for("the first worker to exit", lambda: not ending.alive, timeout=180)  # bounds a hang
    assert ending.proc.returncode == 70, ending.tail()
    assert "recovery loop has ended" in ending.text()
    deployment.settle(second)
    assert_same_as_offline(deployment, events)


DROPPING_WORKER = Path(__file__).with_name("drop_changelog_fetch.py")


def test_changelog_records_faust_drops_in_a_recovery_are_read_again(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    """faust drops the records of a fetch undelivered when its flow stopped or their partition is
    paused, and seeks back only partitions with a committed offset: changelog records a fetch
    drained as a rebalance began were read past for good, and the table recovery of a worker
    taking over partitions waited for ever for them (or would have ended without them). A worker
    that takes over every partition from its changelogs, and whose first fetch of them faust
    drops, gives offline's answers."""
    events = history(15)
    half = len(events.lines) // 2
    earlier, later = tmp_path / "earlier.jsonl", tmp_path / "later.jsonl"
    earlier.write_bytes(b"\n".join(events.lines[:half]) + b"\n")
    later.write_bytes(b"\n".join(events.lines[half:]) + b"\n")
    deployment = deploy()
    first = deployment.start_worker("w1", data_dir=deployment.root / "w1-data")
    deployment.wait_group(1, timeout=180)  # bounds a hang only
    deployment.replay(earlier)
    deployment.settle(first)
    first.stop()
    arm = tmp_path / "arm"
    arm.touch()
    second = deployment.start_patched_worker("w2", DROPPING_WORKER, DROP_CHANGELOG_ARM=str(arm))
    deployment.replay(later)  # scored on the tables it recovered
    deployment.settle(second)
    assert not arm.exists(), "no fetch of changelog records was dropped"
    assert "changelog records fetched and dropped undelivered" in second.text()
    assert_same_as_offline(deployment, events)


# -- 5. a second worker joins mid-stream ---------------------------------------------------------


@pytest.mark.parametrize("transactions", [0, 20], ids=["plain", "transactional"])
def test_a_second_worker_joining_mid_stream_changes_no_answer(
    deploy: Callable[..., Deployment], history: Callable[[int], History], transactions: int
) -> None:
    events = history(14)
    deployment = deploy()
    first = deployment.start_worker("w1", data_dir=deployment.root / "w1-data")
    deployment.wait_group(1)
    # Paced as if spread over 90 s until the second worker scores: it takes up to a minute to
    # start on a busy machine, and the first one keeps up with any rate of this test. Then the
    # rest at once.
    live = replay_live_until(deployment, events, seconds=90, fraction=0.1, transactions=transactions)
    second = deployment.start_worker("w2", data_dir=deployment.root / "w2-data")
    # The rebalance completes while events still flow: the newcomer scores its partitions.
    deployment.wait_for(
        "the second worker to score the partitions it was given",
        lambda: "partition engine ready" in second.text(),
        timeout=180,  # bounds a hang only: a rebalance on a busy 2-core machine can take a while
    )
    live.hurry()
    live.wait()
    assert live.paced < len(events.lines), "the history was published before the second worker scored"
    deployment.settle(first, second)
    assert_no_offsets_skipped(first, second)  # first: a lost delivery explains any difference
    assert_same_as_offline(deployment, events)
    letters = deployment.dead_letters()  # re-reads after the rebalance are skipped by offset
    assert not letters, f"{len(letters)} valid events dead-lettered, e.g. {short(letters[0], 400)}"


def test_a_producer_cannot_date_its_messages_into_the_future(deploy: Callable[..., Deployment]) -> None:
    """An event's time may be at most `input.max_skew_hours` after its message was published,
    read from the message's Kafka timestamp. The input topics are created with LogAppendTime,
    so the broker sets it: an event dated 2099 sent with a timestamp of 2100 was admitted, set
    its partition's stream time to 2099 and made every later event of the partition too late."""
    deployment = deploy()
    home = partition_of("acme", PARTITIONS)
    neighbour = next(f"acct-{n}" for n in range(1000) if partition_of(f"acct-{n}", PARTITIONS) == home)
    terms = {"subscription_id": "s1", "plan": "pro", "amount": "100", "currency": "USD", "interval": "month"}

    def started(account: str, when: str) -> bytes:
        event = {"event_type": "subscription.started", "account_id": account, "occurred_at": when}
        return orjson.dumps({"event_id": f"{account}-1", **event, **terms})

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap)
        await producer.start()
        try:
            topic = deployment.topic("subscriptions")
            in_2100 = int(datetime(2100, 1, 1).timestamp() * 1000)
            await producer.send_and_wait(
                topic, started("acme", "2099-06-01T00:00:00Z"), b"acme", timestamp_ms=in_2100
            )
            await producer.send_and_wait(
                topic, started(neighbour, "2024-03-01T00:00:00Z"), neighbour.encode()
            )
        finally:
            await producer.stop()

    asyncio.run(send())
    worker = deployment.start_worker()
    deployment.settle(worker)
    [letter] = deployment.dead_letters()
    assert "2099-06-01" in letter["error"] and "after the message was published" in letter["error"], letter
    assert deployment.final_snapshots()[neighbour]["mrr"] == "100.00"


def test_events_written_in_transactions_count_once_committed_and_never_aborted(
    deploy: Callable[..., Deployment],
) -> None:
    """Producers that write in transactions (an outbox relay, Kafka Streams, a CDC connector)
    leave commit and abort markers between their records. The worker read uncommitted, so an
    aborted transaction's events were applied, and it expected a record at every offset: it read
    a partition again from each marker for ever, and the marker after a topic's last record
    kept that topic from its end, holding every other topic of the partition."""
    deployment = deploy()
    deployment.create_topics()
    worker = deployment.start_worker()
    deployment.wait_group(1)
    home = partition_of("acme", PARTITIONS)
    ghost, neighbour = [f"acct-{n}" for n in range(1000) if partition_of(f"acct-{n}", PARTITIONS) == home][:2]
    terms = {"subscription_id": "s1", "plan": "pro", "amount": "100", "currency": "USD", "interval": "month"}

    def event(number: int, kind: str, account: str, when: str) -> bytes:
        fields = terms if kind == "subscription.started" else {"user_id": "u1", "feature": "reports"}
        head = {"event_id": f"e{number}", "event_type": kind, "account_id": account, "occurred_at": when}
        return orjson.dumps({**head, **fields})

    async def send() -> None:
        subscriptions, usage = deployment.topic("subscriptions"), deployment.topic("usage")
        producer = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap, transactional_id=deployment.tag)
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send(
                    subscriptions, event(1, "subscription.started", "acme", "2024-03-01T09:00:00Z"), b"acme"
                )
                await producer.send(
                    usage, event(2, "usage.recorded", "acme", "2024-03-01T10:00:00Z"), b"acme"
                )
            await producer.begin_transaction()
            await producer.send(
                subscriptions, event(3, "subscription.started", ghost, "2024-03-01T11:00:00Z"), ghost.encode()
            )
            await producer.send(usage, event(4, "usage.recorded", "acme", "2024-03-01T11:00:00Z"), b"acme")
            await producer.abort_transaction()
            for number in range(5, 9):  # small transactions, as a relay commits them
                async with producer.transaction():
                    when = f"2024-03-0{number - 3}T09:00:00Z"
                    await producer.send(usage, event(number, "usage.recorded", "acme", when), b"acme")
        finally:
            await producer.stop()
        plain = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap)  # the last subscriptions
        await plain.start()  # record comes after the markers of the topics above
        try:
            started = event(9, "subscription.started", neighbour, "2024-03-06T09:00:00Z")
            await plain.send_and_wait(subscriptions, started, neighbour.encode())
        finally:
            await plain.stop()

    asyncio.run(send())
    deployment.settle(worker)  # every offset committed: past every marker
    snapshots = deployment.final_snapshots()
    assert ghost not in snapshots  # its only event was aborted
    assert snapshots["acme"]["mrr"] == "100.00" and snapshots[neighbour]["mrr"] == "100.00"
    assert not deployment.dead_letters()
    said = worker.text()
    assert "reading them again" not in said and "re-reading a stalled partition" not in said, said[-3000:]


def test_an_open_transaction_on_one_topic_does_not_hold_back_the_partitions_other_topics(
    deploy: Callable[..., Deployment],
) -> None:
    """A producer that opens a transaction on a partition's usage topic and leaves it open: the
    usage behind it waits for it (committed transactions only), but the subscriptions of the
    same partition did too, until the transaction timed out (64 s in the audit that found it,
    15 minutes at most): the usage topic's end was read as its high watermark, which counts the
    open transaction's records, so it never looked idle. Behind an open transaction it waits
    `OPEN_TRANSACTION_WAIT_S` (5 s) at one offset, then counts as idle; the lag the worker
    reports still counts the held records."""
    deployment = deploy()
    worker = deployment.start_worker()
    deployment.wait_group(1)
    home = partition_of("acme", PARTITIONS)
    other = next(f"acct-{n}" for n in range(1000) if partition_of(f"acct-{n}", PARTITIONS) == home)
    terms = {"subscription_id": "s1", "plan": "pro", "amount": "100", "currency": "USD", "interval": "month"}

    def event(number: int, kind: str, account: str) -> bytes:
        fields = terms if kind == "subscription.started" else {"user_id": "u1", "feature": "reports"}
        when = "2024-03-01T09:00:00Z"
        return orjson.dumps(
            {
                "event_id": f"e{number}",
                "event_type": kind,
                "account_id": account,
                "occurred_at": when,
                **fields,
            }
        )

    async def open_transaction() -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=deployment.bootstrap,
            transactional_id=deployment.tag,
            transaction_timeout_ms=900_000,
        )
        await producer.start()
        await producer.begin_transaction()
        await producer.send_and_wait(deployment.topic("usage"), event(1, "usage.recorded", "acme"), b"acme")
        return producer

    async def close(producer: AIOKafkaProducer) -> None:
        await producer.abort_transaction()
        await producer.stop()

    loop = asyncio.new_event_loop()
    producer = loop.run_until_complete(open_transaction())
    try:
        deployment.bus.produce(
            deployment.topic("subscriptions"), event(2, "subscription.started", other), other.encode()
        )
        wait_until(
            "the subscription behind nothing to be scored",
            lambda: worker.alive and deployment.poll_outputs() >= 0 and other in deployment.final_snapshots(),
            120,  # bounds a hang; without the fix it waited for the 15-minute transaction timeout
        )
        assert deployment.final_snapshots()[other]["mrr"] == "100.00"
        # The usage the transaction holds back is lag, not "caught up": the progress lines (and so
        # /healthz and `stalled_s`) counted to the last stable offset and said 0 for as long as
        # the transaction stayed open.
        seen = len(worker.records())
        wait_until(
            "a progress line counting the open transaction's record as lag",
            lambda: any(r.get("msg") == "progress" and r.get("lag", 0) >= 1 for r in worker.records()[seen:]),
            60,  # progress lines come every 10 s
        )
    finally:
        loop.run_until_complete(close(producer))
        loop.close()


def test_a_topic_waits_for_a_transaction_still_open_on_it_before_newer_events_pass(
    deploy: Callable[..., Deployment],
) -> None:
    """A transaction commits on one partition after another: a worker can read one topic's
    records of it while the partition's other topic is read to its last stable offset with
    records of the same transaction still uncommitted. Idle by its stable end, that topic let
    the newer events through, and its own older ones then came too late (a history published
    in transactions lost 6 subscription events so, now and then in the full suite). Here the open
    transaction is held open on purpose, for a second, while a usage event two months newer is
    published on the same partition: the subscription must be applied first."""
    deployment = deploy()
    deployment.start_worker()
    deployment.wait_group(1)
    home = partition_of("acme", PARTITIONS)
    other = next(f"acct-{n}" for n in range(1000) if partition_of(f"acct-{n}", PARTITIONS) == home)
    subscription = orjson.dumps(started("acme", "2024-01-02T09:00:00Z", "s1"))
    newer = orjson.dumps(used(other, "2024-03-01T09:00:00Z", "u1"))

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap, transactional_id=deployment.tag)
        plain = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap, acks="all")
        await producer.start()
        await plain.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(deployment.topic("subscriptions"), subscription, b"acme")
                await plain.send_and_wait(deployment.topic("usage"), newer, other.encode())
                await asyncio.sleep(1.0)  # the worker reads the usage meanwhile
        finally:
            await plain.stop()
            await producer.stop()

    deployment.bus.run(publish())

    def scored() -> bool:
        snapshots = deployment.final_snapshots()
        return other in snapshots and ("acme" in snapshots or bool(deployment.dead_letters()))

    deployment.wait_for("the usage scored, and the subscription scored or refused", scored)
    deployment.settle()
    assert not deployment.dead_letters(), dead_letters_of(deployment)
    assert deployment.final_snapshots()["acme"]["mrr"] == "100.00"


def test_a_changelog_record_keyed_by_no_account_is_left_alone_at_recovery(
    deploy: Callable[..., Deployment],
) -> None:
    """A record of the accounts changelog keyed by a JSON number (written by hand or by another
    program): the worker exited with 70 at every start, its partition's ownership test reading
    the key as text. It is left alone, with a warning naming it."""
    deployment = deploy()
    first = deployment.start_worker("w1")
    deployment.wait_group(1)
    terms = {"subscription_id": "s1", "plan": "pro", "amount": "100", "currency": "USD", "interval": "month"}

    def started(number: int, when: str) -> bytes:
        head = {"event_id": f"e{number}", "event_type": "subscription.started", "account_id": "acme"}
        return orjson.dumps({**head, "occurred_at": when, **terms, "subscription_id": f"s{number}"})

    subscriptions = deployment.topic("subscriptions")
    deployment.bus.produce(subscriptions, started(1, "2024-03-01T09:00:00Z"), b"acme")
    deployment.settle(first)
    first.stop()
    changelog = changelog_topic(deployment.settings(), "accounts")
    for partition in range(PARTITIONS):  # whichever partition the worker reads it from
        deployment.bus.produce(changelog, b"x", b"123", partition)
    second = deployment.start_worker("w2")
    deployment.bus.produce(subscriptions, started(2, "2024-03-02T09:00:00Z"), b"acme")
    deployment.settle(second)
    assert second.alive, second.tail()
    assert deployment.final_snapshots()["acme"]["mrr"] == "200.00"
    assert "a record of the accounts table has a key that is not an account id" in second.text()


def test_a_data_directory_shared_by_two_app_ids_keeps_each_apps_state_its_own(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """faust names a worker's local stores by table alone: a worker of a second app id given
    the first one's data directory opened its stores over its own changelogs (a ConsistencyError
    at start, or the first app's state under the second's). The directory records its app id."""
    shared = tmp_path / "one-data-directory"

    def started(amount: str) -> bytes:
        head = {"event_id": "e1", "event_type": "subscription.started", "account_id": "acme"}
        terms = {
            "subscription_id": "s1",
            "plan": "pro",
            "amount": amount,
            "currency": "USD",
            "interval": "month",
        }
        return orjson.dumps({**head, "occurred_at": "2024-03-01T09:00:00Z", **terms})

    for amount in ("100", "300"):
        deployment = deploy()
        worker = deployment.start_worker(f"w-{amount}", data_dir=shared)
        deployment.bus.produce(deployment.topic("subscriptions"), started(amount), b"acme")
        deployment.settle(worker)
        assert worker.alive, worker.tail()
        assert deployment.final_snapshots()["acme"]["mrr"] == f"{amount}.00"
        worker.stop()  # a clean stop: the stores stay, marked as this app's
    assert "the data directory held the local table stores of another app id" in worker.text()


Placed = tuple[int, int]  # (partition, offset) of a produced message


class AcmeEvents:
    """Account acme's subscription (event e1, on 2024-03-01) and its uses: event `n` by user
    `u<n>` on day `n` of March 2024, each produced with the default partitioner."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def start(self) -> AcmeEvents:
        terms = {
            "subscription_id": "s1",
            "plan": "pro",
            "amount": "100",
            "currency": "USD",
            "interval": "month",
        }
        self._send("subscriptions", 1, "subscription.started", "2024-03-01T08:00:00Z", terms)
        return self

    def __call__(self, number: int) -> Placed:
        """Use `number`; its (partition, offset)."""
        fields = {"user_id": f"u{number}", "feature": "reports"}
        return self._send("usage", number, "usage.recorded", f"2024-03-{number:02}T09:00:00Z", fields)

    def _send(
        self, family: str, number: int, kind: str, when: str, fields: dict[str, str]
    ) -> tuple[int, int]:
        head = {"event_id": f"e{number}", "event_type": kind, "account_id": "acme", "occurred_at": when}
        value = orjson.dumps({**head, **fields})
        return self.deployment.bus.produce(self.deployment.topic(family), value, b"acme")


@pytest.mark.parametrize("passed", ["one by one", "as a range"])
def test_events_deleted_before_a_restart_read_them_are_reported_lost_and_commits_pass_them(
    deploy: Callable[..., Deployment], passed: str
) -> None:
    """A worker down longer than the input's retention: the broker deletes records the group
    never committed (here with DeleteRecords, as retention does). The restarted worker reads on
    from the earliest record left, says which offsets were lost, and commits past them; the
    events after them count. A long range is passed as a range, not offset by offset (a day of
    deleted offsets took gigabytes): "as a range" passes every range so."""
    deployment = deploy()
    deployment.create_topics()
    usage, home = deployment.topic("usage"), partition_of("acme", PARTITIONS)
    used = AcmeEvents(deployment).start()
    used(2)
    worker = deployment.start_worker()
    deployment.settle(worker)
    worker.stop()
    _, first_lost = used(3)
    _, last_lost = used(4)
    used(5)

    async def delete_before(offset: int) -> None:
        admin = await deployment.bus._admin_client()
        await admin.delete_records({TopicPartition(usage, home): RecordsToDelete(offset)}, timeout_ms=30_000)

    deployment.bus.run(delete_before(last_lost + 1))  # e3 and e4 are gone unread
    if passed == "as a range":
        again = deployment.start_patched_worker("w2", Path(__file__).with_name("passed_as_ranges.py"))
    else:
        again = deployment.start_worker("w2")
    deployment.settle(again)  # every offset committed: past the deleted ones
    lost = [r for r in again.records() if r.get("msg") == "skipped an offset range"]
    assert [(r["topic"], r["partition"], r["from"], r["to"]) for r in lost] == [
        (usage, home, first_lost, last_lost)
    ], again.tail()
    assert deployment.final_snapshots()["acme"]["metrics"]["active_users_28d"] == 2  # u2 and u5


@pytest.mark.parametrize(
    "worker_during",
    ["stopped", "running", pytest.param("killed once it noticed", marks=pytest.mark.slow)],
)
def test_an_input_topic_deleted_and_created_again_counts_its_new_events(
    deploy: Callable[..., Deployment], worker_during: str
) -> None:
    """The new topic's offsets start again at 0, below those the worker's state had applied.
    A restarted worker took its events for ones applied before and skipped them without a word;
    a running one sat past the new topic's end and never read them. One killed once it noticed (at
    its start, as the restarted one), restarted after the new topic grew past the old offsets,
    took it for the old one (its record was still the old topic's) and skipped the new events
    below them."""
    deployment = deploy()
    deployment.create_topics()
    usage, home = deployment.topic("usage"), partition_of("acme", PARTITIONS)
    used = AcmeEvents(deployment).start()
    for number in range(2, 7):
        used(number)
    worker = deployment.start_worker()
    deployment.settle(worker)
    assert deployment.final_snapshots()["acme"]["metrics"]["active_users_28d"] == 5
    if worker_during != "running":
        worker.stop()
    deployment.bus.delete_topics(usage)
    # A running worker's consumer may create it again at once (the broker creates topics on
    # demand): either way, the topic is new once its end is offset 0.

    async def create_plain() -> None:  # as kafka-topics.sh --create would: the broker's defaults
        admin = await deployment.bus._admin_client()
        with contextlib.suppress(KafkaError):  # still being deleted, or created on demand already
            await admin.create_topics([NewTopic(usage, PARTITIONS, 1)])

    def created_again() -> bool:
        deployment.bus.run(create_plain())
        return deployment.bus.end_offset(usage, home) == 0

    deployment.wait_for("the topic created again", created_again)
    assert [used(7)[1], used(8)[1]] == [0, 1]  # offsets the old topic had too
    noticed = worker
    if worker_during == "stopped":
        worker = noticed = deployment.start_worker("w2")
    elif worker_during == "killed once it noticed":
        noticed = deployment.start_worker("w2")
        deployment.wait_for(
            "the new topic's start committed",
            lambda: any("is read from its start" in r.get("msg", "") for r in noticed.records()),
        )
        noticed.kill()
        assert [used(number)[1] for number in range(9, 14)] == [2, 3, 4, 5, 6]  # past the old ones
        worker = deployment.start_worker("w3")
    deployment.settle(worker)
    users = 12 if worker_during == "killed once it noticed" else 7
    assert deployment.final_snapshots()["acme"]["metrics"]["active_users_28d"] == users, worker.tail()
    said = {(r["topic"], r["partition"]) for r in noticed.records() if "created again" in r.get("msg", "")}
    assert said == {(usage, home)}, noticed.tail()
    configs = deployment.bus.run(topic_configs(deployment.bootstrap, usage))
    # The worker set it again: at its start when stopped, when it noticed the topic when running.
    assert configs["message.timestamp.type"] == "LogAppendTime"
    assert not deployment.dead_letters()


def test_a_compacted_dead_letter_topic_is_set_back_to_delete_and_takes_a_keyless_letter(
    deploy: Callable[..., Deployment],
) -> None:
    """Dead letters are a log, and a bad message without a key gets a dead letter without one,
    which a compacted topic refuses: the worker sent it again for ever while every partition
    waited. The worker sets the alerts and dead-letter topics to the delete policy."""
    deployment = deploy()
    letters = deployment.topic("deadletter")

    async def compact_and_send() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=deployment.bootstrap)
        await admin.start()
        try:
            compact = {"cleanup.policy": "compact"}
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, letters, configs=compact)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(deployment.topic("usage"), b"not json", partition=0)
        finally:
            await producer.stop()

    asyncio.run(compact_and_send())
    wait_until(
        "the dead-letter topic to be compacted", lambda: cleanup_policy(deployment, letters) == "compact"
    )
    worker = deployment.start_worker()
    deployment.settle(worker)
    [letter] = deployment.dead_letters()
    assert letter["key"] is None and letter["topic"] == deployment.topic("usage"), letter
    assert cleanup_policy(deployment, letters) == "delete"


def cleanup_policy(deployment: Deployment, topic: str) -> str | None:
    async def describe() -> str | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=deployment.bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            [(_, _, _, _, entries)] = response.resources
            return next((str(entry[1]) for entry in entries if entry[0] == "cleanup.policy"), None)
        finally:
            await admin.close()

    return asyncio.run(describe())


def test_a_keyless_event_of_a_megabyte_is_rerouted_and_applied(deploy: Callable[..., Deployment]) -> None:
    """The broker takes messages up to its message.max.bytes (1 MiB by default); a valid event
    that size sent without a key must be re-routed to its account's partition. The producer's
    own 1,000,000-byte limit refused it there, and the worker retried it for ever, holding up
    every partition."""
    deployment = deploy()
    event = {
        "event_id": "big-1",
        "event_type": "subscription.started",
        "account_id": "acme",
        "occurred_at": "2024-03-01T09:00:00Z",
        **{"subscription_id": "s1", "plan": "pro", "amount": "100", "currency": "USD", "interval": "month"},
        "notes": "x" * 1_010_000,  # not in the contract: ignored
    }
    value = orjson.dumps(event)

    async def send_keyless() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap, max_request_size=2 * 1024 * 1024)
        await producer.start()
        try:
            home = partition_of("acme", PARTITIONS)
            await producer.send_and_wait(deployment.topic("subscriptions"), value, partition=(home + 1) % 4)
        finally:
            await producer.stop()

    asyncio.run(send_keyless())
    worker = deployment.start_worker()
    deployment.settle(worker)
    assert deployment.final_snapshots()["acme"]["mrr"] == "100.00"
    assert not deployment.dead_letters()


def test_a_worker_refuses_input_topics_with_another_partition_count(
    deploy: Callable[..., Deployment],
) -> None:
    """Topics that exist with another partition count than the worker's setting: with an input
    of 3 partitions where it said 4, the worker re-routed every event to the partition its
    account hashes to among 4, which the producer placed back among 3, for ever (one message
    became 4,582 in 20 s). It refuses to start instead, in one line that says what to do.
    (Here the deployment's topics have 4 partitions and the worker is told 5: deleting and
    re-creating a topic races the broker.)"""
    deployment = deploy(worker_env={"HEALTHSTREAM_PARTITIONS": str(PARTITIONS + 1)})

    def ours() -> list[str]:
        return sorted(name for name in asyncio.run(_topics(deployment.bootstrap)) if deployment.tag in name)

    # a freshly started broker lists new topics a moment after creating them
    wait_until(
        "the deployment's topics to be listed", lambda: len(ours()) == len(topic_specs(deployment.settings()))
    )
    before = ours()
    worker = deployment.start_worker()
    assert worker.proc.wait(timeout=120) == 1, worker.tail()  # bounds a hang only
    said = worker.text()
    assert f"{deployment.topic('usage')} has {PARTITIONS}" in said, said[-2000:]
    assert f"HEALTHSTREAM_PARTITIONS ({PARTITIONS + 1})" in said
    assert ours() == before  # nothing created


def test_a_worker_names_the_topics_the_broker_refused_to_create(deploy: Callable[..., Deployment]) -> None:
    """CreateTopics answers with an error per topic and raises for none: the worker went on and
    waited for ever, without a word, for topics that were never there. Here the broker refuses
    names that collide with the deployment's own ('.' and '_' are one character in its metric
    names)."""
    deployment = deploy()
    colliding = deployment.prefix.replace(".", "_")
    deployment.worker_env["HEALTHSTREAM_TOPIC_PREFIX"] = colliding
    worker = deployment.start_worker()
    assert worker.proc.wait(timeout=120) == 1, worker.tail()  # bounds a hang only
    said = worker.text()
    assert "the broker refused to create topics: " in said, said[-2000:]
    assert f"{colliding}usage: InvalidTopicError (Topic '{colliding}usage' collides" in said, said[-2000:]


def test_the_replication_factor_setting_reaches_the_broker(deploy: Callable[..., Deployment]) -> None:
    """HEALTHSTREAM_REPLICATION_FACTOR is what the topics are created with (every topic had 1,
    which a managed cluster refuses and a production one should not have): three copies on the
    single-broker stack are refused by the broker, named per topic."""
    deployment = deploy()
    fresh = f"r{deployment.prefix}"  # topics the worker creates itself (deploy() made the others)
    deployment.worker_env |= {"HEALTHSTREAM_REPLICATION_FACTOR": "3", "HEALTHSTREAM_TOPIC_PREFIX": fresh}
    worker = deployment.start_worker()
    assert worker.proc.wait(timeout=120) == 1, worker.tail()  # bounds a hang only
    said = worker.text()
    refused = f"{fresh}usage: InvalidReplicationFactorError (Unable to replicate the partition 3 time(s)"
    assert "the broker refused to create topics: " in said and refused in said, said[-2000:]


def test_existing_topics_with_fewer_copies_than_the_setting_are_named_and_used(
    deploy: Callable[..., Deployment],
) -> None:
    """Topics created before the replication factor was raised keep their copies (changing them
    is a reassignment): the worker runs on them and names them in a warning."""
    deployment = deploy()
    deployment.worker_env["HEALTHSTREAM_REPLICATION_FACTOR"] = "2"
    worker = deployment.start_worker()
    warned = "topics have fewer copies than HEALTHSTREAM_REPLICATION_FACTOR"
    wait_until("the worker to name the topics", lambda: warned in worker.text(), 120)
    line = next(line for line in worker.text().splitlines() if warned in line)
    assert f'"{deployment.prefix}usage"' in line and '"replication_factor":2' in line, line
    assert worker.proc.poll() is None, worker.tail()


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


def test_two_worker_processes_of_one_group_share_the_partitions_and_give_offlines_answers(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    """Several workers on one machine use every core: the partitions are split between them
    (the consumer group) by the input messages they hold, each scores its own, and together they
    give offline's answers."""
    events = history(15)
    deployment = deploy()
    # The busiest partition's events again, until it holds more input messages than the three
    # others together: duplicates change no answer, and the leader then gives that partition a
    # worker alone (by count, faust's way, each worker would have two partitions).
    by_partition: dict[int, list[bytes]] = collections.defaultdict(list)
    for line in events.lines:
        by_partition[partition_of(orjson.loads(line)["account_id"], PARTITIONS)].append(line)
    heavy = max(by_partition, key=lambda p: len(by_partition[p]))
    again = tmp_path / "busiest-partition-again.jsonl"
    again.write_bytes(b"".join(line + b"\n" for line in by_partition[heavy]))  # lines without their ends
    deployment.replay(events.events)
    published = len(by_partition[heavy])
    while published <= len(events.lines) - len(by_partition[heavy]):
        deployment.replay(again)
        published += len(by_partition[heavy])
    first = deployment.start_worker("w1", data_dir=deployment.root / "w1-data")
    second = deployment.start_worker("w2", data_dir=deployment.root / "w2-data")
    deployment.wait_group(2, timeout=180)  # bounds a hang: joining takes a while on a busy machine
    deployment.settle(first, second)

    def scored(worker: Worker) -> set[int]:
        return {line["partition"] for line in worker.records() if line.get("msg") == "partition engine ready"}

    mine, theirs = scored(first), scored(second)
    assert mine and theirs, f"one worker scored nothing: w1 {sorted(mine)}, w2 {sorted(theirs)}"
    assert mine | theirs == set(range(PARTITIONS))
    decisions = [
        line
        for worker in (first, second)
        for line in worker.records()
        if line.get("msg") == "partitions assigned by their input messages"
    ]
    final = max(decisions, key=lambda line: str(line["ts"]))["actives"]
    assert sorted(map(sorted, final.values()), key=len) == [
        [heavy],
        sorted(set(range(PARTITIONS)) - {heavy}),
    ], final
    assert_no_offsets_skipped(first, second)
    assert_same_as_offline(deployment, events)
    assert not deployment.dead_letters()


def test_sigterm_stops_a_worker_mid_backlog_promptly(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    # A backlog of about 25,000 events takes the worker some 7 s: it is stopped while catching up,
    # when its merge holds messages of the topics it has read further than the busy usage topic
    # (unacknowledged: faust must not wait for them, they are simply read again).
    events = simulate(tmp_path / "backlog.jsonl.gz", seed=21, accounts=60, density=1.0)
    deployment = deploy()
    deployment.replay(events)
    worker = deployment.start_worker()
    deployment.wait_for(
        "the worker to be under way",
        lambda: deployment.committed() > 0,
    )
    worker.proc.terminate()
    try:
        code = worker.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"still running 10 s after SIGTERM:\n{worker.tail(3)}") from None
    # The clean path: the scorer left its batch before faust closed the tables, and the shutdown
    # watchdog (a backstop that exits after 8 s and logs where every task waits) never fired.
    log = worker.text()
    assert code == 0, worker.tail()
    assert "stopped applying messages" in log, worker.tail()
    assert "the orderly shutdown did not finish" not in log, worker.tail()
    # Its local stores agree with the changelogs: the next start keeps them.
    again = deployment.start_worker("w1-again")
    deployment.settle(again)
    assert "the last run did not stop cleanly" not in again.text(), again.tail()
    assert "the last run did not stop cleanly" not in log, worker.tail()  # a first start


# -- 6. kcat: the contract outside our code -----------------------------------------------------


def kcat_produce(kcat: str, bootstrap: str, topic: str, lines: list[bytes], *options: str) -> None:
    subprocess.run(
        [kcat, "-b", bootstrap, "-P", "-t", topic, "-K", "|", *options],
        input=b"\n".join(lines) + b"\n",
        check=True,
        capture_output=True,
        timeout=60,
    )


def kcat_consume(kcat: str, bootstrap: str, topic: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_events_published_with_kcat_in_compressed_batches_give_offline_answers_read_back_with_kcat(
    deploy: Callable[..., Deployment], history: Callable[[int], History]
) -> None:
    kcat = ensure_kcat()
    events = history(15)
    deployment = deploy()
    by_topic: dict[str, list[bytes]] = collections.defaultdict(list)
    for line in events.lines:
        value = orjson.loads(line)
        family = EVENT_FAMILY[value["event_type"]]
        by_topic[deployment.topic(family)].append(value["account_id"].encode() + b"|" + line)
    # Each topic's batches compressed with another codec Kafka offers: a codec the worker could
    # not read crashed its fetcher, and every restart again.
    codecs = iter(("lz4", "zstd", "snappy", "gzip"))
    for topic, lines in by_topic.items():
        # librdkafka's murmur2 partitioner is the Java client's default: keyed like our replay
        options = ("-X", "topic.partitioner=murmur2_random", "-z", next(codecs))
        kcat_produce(kcat, deployment.bootstrap, topic, lines, *options)

    worker = deployment.start_worker()
    deployment.settle(worker)
    assert_same_as_offline(deployment, events)

    alerts = kcat_consume(kcat, deployment.bootstrap, deployment.topic("alerts"))
    assert {orjson.loads(m["payload"])["alert_id"] for m in alerts} == set(events.alerts)
    for message in alerts:
        alert = orjson.loads(message["payload"])
        assert message["key"] == alert["account_id"]
        assert message["partition"] == partition_of(alert["account_id"], PARTITIONS)
        assert alert == events.alerts[alert["alert_id"]]
    assert not deployment.dead_letters()


def test_kcat_default_partitioner_messages_are_rerouted_to_their_account(
    deploy: Callable[..., Deployment],
) -> None:
    """librdkafka's default partitioner (CRC32) disagrees with Kafka's murmur2: the worker moves
    such messages to their account's partition instead of scoring them in the wrong place."""
    kcat = ensure_kcat()
    deployment = deploy()
    accounts = [f"kc-{n}" for n in range(40)]
    misplaced = [a for a in accounts if zlib.crc32(a.encode()) % PARTITIONS != partition_of(a, PARTITIONS)]
    chosen = misplaced[:3]
    assert len(chosen) == 3
    lines = [
        account.encode() + b"|" + orjson.dumps(started(account, "2024-03-01T09:00:00Z", f"{account}-1"))
        for account in chosen
    ]
    kcat_produce(kcat, deployment.bootstrap, deployment.topic("subscriptions"), lines)
    worker = deployment.start_worker()
    deployment.settle(worker)

    assert set(deployment.final_snapshots()) == set(chosen)
    assert not deployment.dead_letters()
    records = deployment.bus.poll(deployment.topic("subscriptions"))
    for account in chosen:
        places = sorted(r.partition for r in records if r.key == account.encode())
        kcat_partition = zlib.crc32(account.encode()) % PARTITIONS
        assert places == sorted([kcat_partition, partition_of(account, PARTITIONS)])


# -- 7. the replay and tail commands ------------------------------------------------------------


def tail_alerts(deployment: Deployment, *options: str) -> subprocess.CompletedProcess[bytes]:
    """`streamer alerts tail OPTIONS` against the deployment's topics."""
    return subprocess.run(
        [STREAMER, "alerts", "tail", *options], env=deployment.env(), capture_output=True, timeout=60
    )


def test_alerts_tail_prints_every_alert(backfill: tuple[Deployment, History, str]) -> None:
    deployment, history, _ = backfill
    started_at = time.monotonic()
    done = tail_alerts(deployment, "--from-beginning", "--timeout", "5", "--json")
    elapsed = time.monotonic() - started_at
    assert done.returncode == 0, done.stderr.decode()
    printed = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert sorted(printed, key=lambda a: a["alert_id"]) == sorted(
        history.alerts.values(), key=lambda a: a["alert_id"]
    )
    assert elapsed >= 4.5  # it followed for its --timeout (a hang is bounded by tail_alerts' 60 s)

    done = tail_alerts(deployment, "--from-beginning", "--timeout", "3")
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == len(history.alerts)
    known = {(a["raised_at"], a["account_id"], a["rule"]) for a in history.alerts.values()}
    for line in lines:
        raised_at, severity, account, rule, *_ = line.split()
        assert (raised_at, account, rule) in known, line
        assert severity in {"CRIT", "WARN", "info"}, line
        assert " score " in line and " MRR " in line, line


def test_alerts_tail_stops_after_n(backfill: tuple[Deployment, History, str]) -> None:
    deployment, _, _ = backfill
    done = tail_alerts(deployment, "--from-beginning", "-n", "3", "--timeout", "30", "--json")
    assert done.returncode == 0, done.stderr.decode()
    assert len(done.stdout.splitlines()) == 3


def test_alerts_tail_on_a_prefix_without_topics_says_so_and_creates_none(
    deploy: Callable[..., Deployment],
) -> None:
    """A mistyped prefix printed nothing, exited 0 and had the broker create the alerts topic
    with its own defaults, which a worker of that prefix would then refuse."""
    deployment = deploy()
    prefix = f"hs-nothere-{uuid.uuid4().hex[:8]}."
    done = subprocess.run(
        [STREAMER, "alerts", "tail", "--from-beginning", "--timeout", "5"],
        env={**deployment.env(), "HEALTHSTREAM_TOPIC_PREFIX": prefix},
        capture_output=True,
        timeout=60,
    )
    said = done.stderr.decode()
    assert done.returncode == 1, said
    assert f"has no topic '{prefix}alerts': start the workers first" in said, said
    assert "Traceback" not in said and done.stdout == b""

    async def topics() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=deployment.bootstrap)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    assert not {t for t in asyncio.run(topics()) if t.startswith(prefix)}


def test_alerts_tail_skips_a_record_that_is_not_an_alert_with_one_line(
    deploy: Callable[..., Deployment],
) -> None:
    """It died with an AttributeError traceback on one (anything with access may write the topic)."""
    deployment = deploy()
    good = {
        "alert_id": "a-1", "account_id": "acme", "rule": "silence", "severity": "warning",
        "raised_at": "2024-03-01T00:00:00Z", "score": 41.5, "band": "yellow", "previous_score": 55.0,
        "previous_band": "yellow", "mrr": "120.00", "reasons": [],
    }  # fmt: skip
    topic = deployment.topic("alerts")
    for value in (b"[1, 2]", orjson.dumps(good), b"\xff\x1b[2J"):
        deployment.bus.produce(topic, value, b"acme")
    done = tail_alerts(deployment, "--from-beginning", "-n", "1", "--timeout", "30", "--json")
    assert done.returncode == 0, done.stderr.decode()
    assert [orjson.loads(line) for line in done.stdout.splitlines()] == [good]
    assert "skipped a record that is not an alert: partition " in done.stderr.decode()
    assert "not a JSON object: list" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()


def test_replay_rate_limits_and_prints_a_summary(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    events = history(11)
    lines = events.lines[:400]
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(b"\n".join([*lines, b'{"no": "event_type"}', b"not json"]) + b"\n")
    deployment = deploy()

    started_at = time.monotonic()
    printed = deployment.replay(sample, "--rate", "200")
    elapsed = time.monotonic() - started_at

    families = collections.Counter(
        deployment.topic(EVENT_FAMILY[orjson.loads(line)["event_type"]]) for line in lines
    )
    match = re.fullmatch(
        r"published 400 events in (\d+\.\d) s \(([\d,]+)/s\): (.*); "
        r"2 lines skipped \(no topic and key could be read from them; the first, line 401: "
        r"no known event_type\)\n",
        printed,
    )
    assert match, printed
    seconds, rate = float(match[1]), int(match[2].replace(",", ""))
    assert 1.5 <= seconds <= elapsed, printed
    assert rate <= 230, printed
    assert match[3] == ", ".join(f"{topic} {n}" for topic, n in sorted(families.items()))
    lag = deployment.bus.lag(deployment.app_id, deployment.inputs)  # nothing consumed: lag = sizes
    per_topic = collections.Counter({tp.topic: 0 for tp in lag})
    for tp, n in lag.items():
        per_topic[tp.topic] += n
    assert {topic: n for topic, n in per_topic.items() if n} == dict(families)


# -- a fitted churn model in the configuration ---------------------------------------------------

HAND_MODEL = """
[model]
version = "hand-written"
intercept = -1.0
coefficients = { payment_failures = -2.0, nps = -1.5 }
means = { payment_failures = 90.0, nps = 60.0 }
missing = { nps = 0.5 }
"""


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "nothing published: {path} holds no events"),
        (b"account_id,product\na1,basic\n", "nothing published: no line of {path} is an event"),
    ],
    ids=["empty", "a table"],
)
def test_replay_of_a_file_that_publishes_nothing_fails_with_one_line(
    deploy: Callable[..., Deployment], tmp_path: Path, content: bytes, said: str
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    deployment = deploy()
    done = subprocess.run(
        [STREAMER, "replay", str(path), "--quiet"], env=deployment.env(), capture_output=True, timeout=120
    )
    assert done.returncode == 1, done.stdout
    assert done.stderr.decode().strip() == "Error: " + said.format(path=path) + (
        " (tables go through `streamer import`)" if content else ""
    )
    if content:
        assert done.stdout.decode().startswith("published 0 events in ")
        assert ": ;" not in done.stdout.decode()  # no empty list of topics
    else:  # refused before the broker is asked for: nothing was tried, no summary
        assert done.stdout.decode() == ""


def streamed_with_config(
    deploy: Callable[..., Deployment], history: Callable[[int], History], path: Path, text: str
) -> tuple[History, dict[str, dict[str, Any]]]:
    """Seed 11's history through a worker given the score configuration `text` (written to
    `path`): the history and the final snapshot of each of its accounts."""
    path.write_text(text)
    events = history(11)
    deployment = deploy(worker_env={"HEALTHSTREAM_SCORE_CONFIG": str(path)})
    deployment.replay(events.events)
    # a deadline that only bounds a hang: on a machine shared by many builds this takes minutes
    deployment.settle(deployment.start_worker(), deadline_s=900)
    snapshots = deployment.final_snapshots()
    assert set(snapshots) == set(events.accounts)
    return events, snapshots


def test_a_worker_given_a_config_with_a_model_publishes_the_calibrated_churn_risk(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    from math import exp

    from streamer.core.config import ScoreConfig

    events, snapshots = streamed_with_config(deploy, history, tmp_path / "model.toml", HAND_MODEL)
    curves = ScoreConfig().curves
    with_nps = 0
    for account_id, snapshot in snapshots.items():
        HealthSnapshot.model_validate(snapshot)
        metrics = snapshot["metrics"]
        z = -1.0 - 2.0 * curves.payment_failures(metrics["payment_failures_30d"]) / 100
        if metrics["nps"] is not None:  # NPS answered within 180 days: the signal has data
            z -= 1.5 * curves.nps(metrics["nps"]) / 100
            with_nps += 1
        else:
            z += -1.5 * 0.6 + 0.5  # the training mean and the missing-data term
        # churn is MRR reaching 0: an account paying nothing has no risk of it
        expected = round(1 / (1 + exp(-z)), 4) if float(snapshot["mrr"]) > 0 else None
        assert snapshot["churn_risk_60d"] == expected, (account_id, snapshot["churn_risk_60d"], expected)
    assert 0 < with_nps < len(snapshots)  # both paths were checked
    # the same history without a model: null (the offline answers of the shared fixture)
    assert {account["churn_risk_60d"] for account in events.accounts.values()} == {None}


SCORE_MODEL = """
[model]
version = "the score calibrated"
intercept = 0.8
coefficients = {}
means = {}
score = -4.5
"""


def test_a_model_of_the_score_alone_publishes_the_score_calibrated(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    """What `--tune` writes when too few accounts churned to learn from: churn_risk_60d is the
    account's own computed score through the calibration, so it ranks accounts as the score does."""
    from math import exp

    _, snapshots = streamed_with_config(deploy, history, tmp_path / "score.toml", SCORE_MODEL)
    for account_id, snapshot in snapshots.items():
        HealthSnapshot.model_validate(snapshot)
        override = snapshot["override"]
        score = snapshot["score"] if override is None else override["computed_score"]
        expected = round(1 / (1 + exp(-(0.8 - 4.5 * score / 100))), 4) if float(snapshot["mrr"]) > 0 else None
        assert snapshot["churn_risk_60d"] == expected, (account_id, snapshot["churn_risk_60d"], expected)
    assert len({snapshot["score"] for snapshot in snapshots.values()}) > 1  # not one constant


VOLUME_MODEL = (
    HAND_MODEL
    + """feature_volumes = { dashboards = -0.35, reports = 0.2, api = -0.5 }
"""
)


def test_a_model_reading_feature_volumes_streams_like_offline(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    """A `[model]` with per-feature volumes (what `--tune` writes when the plain regression wins):
    the worker's churn_risk_60d reads each feature's events over 28 days from its state and equals
    `streamer offline --sort --config` with the same file, and the volumes change the answers."""
    config_path = tmp_path / "volumes.toml"
    config_path.write_text(VOLUME_MODEL)
    plain_path = tmp_path / "plain.toml"
    plain_path.write_text(HAND_MODEL)
    events = history(11).events
    deployment = deploy(worker_env={"HEALTHSTREAM_SCORE_CONFIG": str(config_path)})
    deployment.replay(events)
    # a deadline that only bounds a hang: on a machine shared by many builds this takes minutes
    deployment.settle(deployment.start_worker(), deadline_s=900)
    offline: dict[str, dict[str, dict[str, Any]]] = {}
    for name, path in (("volumes", config_path), ("signals only", plain_path)):
        out = tmp_path / name.replace(" ", "-")
        command = [STREAMER, "offline", str(events), "--sort", "--partitions", str(PARTITIONS)]
        subprocess.run(
            [*command, "--out", str(out), "--config", str(path), "--quiet"],
            check=True,
            env=clean_env(),
            timeout=300,
        )
        offline[name] = {
            record["account_id"]: record
            for record in map(orjson.loads, (out / "accounts.jsonl").read_bytes().splitlines())
        }
    snapshots = deployment.final_snapshots()
    assert set(snapshots) == set(offline["volumes"])
    for account_id, snapshot in snapshots.items():
        HealthSnapshot.model_validate(snapshot)
        assert snapshot["churn_risk_60d"] == offline["volumes"][account_id]["churn_risk_60d"], account_id
    changed = [
        account_id
        for account_id, record in offline["volumes"].items()
        if record["churn_risk_60d"] != offline["signals only"][account_id]["churn_risk_60d"]
    ]
    assert len(changed) > len(snapshots) // 2, f"the volumes changed only {len(changed)} answers"


def streamed_beside_offline(
    deploy: Callable[..., Deployment], history: Callable[[int], History], path: Path, text: str
) -> tuple[dict[str, dict[str, Any]], History, list[dict[str, Any]]]:
    """Seed 11's history through a worker and through `streamer offline --sort`, both given the
    score configuration `text` (written to `path`): the worker's final snapshots, offline's
    answers and the worker's alerts."""
    path.write_text(text)
    events = history(11).events
    deployment = deploy(worker_env={"HEALTHSTREAM_SCORE_CONFIG": str(path)})
    deployment.replay(events)
    # a deadline that only bounds a hang: on a machine shared by many builds this takes minutes
    deployment.settle(deployment.start_worker(), deadline_s=900)
    answers = run_offline(events, path.with_suffix(".offline"), path, timeout_s=300)
    return deployment.final_snapshots(), answers, deployment.alerts()


def assert_streamed_as_offline(
    snapshots: dict[str, dict[str, Any]], answers: History, alerts: list[dict[str, Any]]
) -> None:
    """The worker's final snapshots and its alerts (ids and contents) are offline's."""
    offline = answers.accounts
    differing = [aid for aid in sorted(offline) if snapshots.get(aid) != offline[aid]]
    assert not differing, f"{len(differing)} of {len(offline)} differ: " + "; ".join(
        f"{aid}: {snapshot_differences(snapshots.get(aid) or {}, offline[aid])}" for aid in differing[:3]
    )
    streamed = {alert["alert_id"]: alert for alert in alerts}
    assert sorted(streamed) == sorted(answers.alerts)
    assert [aid for aid, alert in streamed.items() if alert != answers.alerts[aid]] == []


def test_the_mix_of_use_among_peers_streams_like_offline(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    """Events per feature survive the worker's state: with peers small enough for the 30-account
    history (`min_peers = 3`), the stream's snapshots rank the mix of use among peers and equal
    `streamer offline --sort --config` with the same configuration, and so do its alerts."""
    snapshots, answers, alerts = streamed_beside_offline(
        deploy, history, tmp_path / "peers.toml", "[peers]\nmin_peers = 3\n"
    )
    mixed = [
        snapshot
        for snapshot in snapshots.values()
        if (snapshot["metrics"].get("features_in_use_28d") or 0) > 0
        and "feature_mix_28d" in ((snapshot.get("peers") or {}).get("percentiles") or {})
    ]
    assert mixed, f"no snapshot of {len(snapshots)} carries the mix of use among peers"
    for snapshot in mixed:
        assert 0 <= snapshot["metrics"]["features_used_28d"] <= snapshot["metrics"]["features_in_use_28d"]
    # The bands move with the peers: band alerts and health_declined (an account the green
    # budget held in yellow that declined) have offline's ids and contents.
    assert any(alert["rule"] == "health_declined" for alert in answers.alerts.values())
    assert_streamed_as_offline(snapshots, answers, alerts)


def test_peers_grouped_by_segment_stream_like_offline(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    """`peers.group_by = "segment"`: each account is ranked among the paying accounts of its
    partition in the segment its profile (account.updated) had at the reference's instant; the
    worker's snapshots and alerts equal `streamer offline --sort --config` with the same file."""
    snapshots, answers, alerts = streamed_beside_offline(
        deploy, history, tmp_path / "segments.toml", '[peers]\ngroup_by = "segment"\nmin_peers = 2\n'
    )
    grouped = [
        s
        for s in snapshots.values()
        if s.get("peers") and s["peers"]["group"] == (s["profile"] or {}).get("segment")
    ]
    assert grouped, f"no snapshot of {len(snapshots)} is ranked within its segment"
    assert_streamed_as_offline(snapshots, answers, alerts)


def test_weekly_idle_rescoring_streams_like_offline(
    deploy: Callable[..., Deployment], history: Callable[[int], History], tmp_path: Path
) -> None:
    """With `time.idle_rescore_days = 7` (and the weekly peer grid) the worker re-scores idle
    accounts at the same midnights as `streamer offline --sort --config`: the same final
    snapshots and the same alerts, ids and contents (the alerts differ from the defaults')."""
    snapshots, coarse_offline, alerts = streamed_beside_offline(
        deploy,
        history,
        tmp_path / "coarse.toml",
        "[time]\nidle_rescore_days = 7\n\n[peers]\nrefresh_days = 7\n",
    )
    daily_offline = run_offline(history(11).events, tmp_path / "daily", timeout_s=300)
    # The option changes answers (when idle accounts' conditions are seen, so the alerts), so
    # the stream equal to the coarse run is the worker applying it, not the defaults.
    assert sorted(coarse_offline.alerts) != sorted(daily_offline.alerts)
    assert_streamed_as_offline(snapshots, coarse_offline, alerts)
