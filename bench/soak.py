"""The combined soak: one bad message must never stop, stall or corrupt the stream.

A simulated history with the poison corpus (`tests/poison.py`) interleaved is published by
`streamer replay` at a steady rate to `streamer worker` processes, on a private Kafka + Redis
stack (own folder, free loopback ports, the cached Kafka jars). While it runs:

- the broker is stopped while replay is publishing, and started again once replay reports the
  stall;
- workers are killed with SIGKILL (`--kills`, 10) spread over the run, each restarted at once
  with the same data folder;
- Redis is shut down for `--redis-outage` seconds (30; it saves its data first, so it comes back
  with the projection as it was);
- a second worker joins (a rebalance) and later leaves with SIGTERM (another one).

Each fault waits until processing resumed after the one before (so every kill lands in a
worker that is consuming), and must be followed by progress within `--hang` seconds: a bound
that only detects a hang. At the end: every worker exit was one of ours (no exit code of its
own, no traceback or "exits with 70" in a log, every SIGTERM stopped cleanly without the
watchdog), replay exited 0, the final snapshots and alert ids in Kafka and in Redis equal
`streamer offline --sort` over the valid events alone, the dead-letter topic holds exactly the
poison messages (matched by SHA-256 and place), each once, with their reasons, and no worker skipped an
input offset. It prints a table of faults and one of checks, and exits 1 when a check failed.

    .venv/bin/python bench/soak.py                     # the full scenario (a few minutes)
    .venv/bin/python bench/soak.py --kills 3 --redis-outage 10 --accounts 20 --replay-seconds 60

`tests/integration/test_soak.py` runs the same code with a smaller setting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: the corpus lives in tests/poison.py

import orjson  # noqa: E402
import redis  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from streamer.local.settings import StackSettings  # noqa: E402
from streamer.local.stack import ensure_up, stop  # noqa: E402
from streamer.projection.redis_writer import KEEP_ALERTS  # noqa: E402
from streamer.settings import FAMILIES, Settings  # noqa: E402
from streamer.stream.replay import route  # noqa: E402
from streamer.stream.topics import ensure_topics  # noqa: E402
from tests.fixtures import isolated_stack  # noqa: E402
from tests.poison import POISONS, Poison, occurred_at, reused_id  # noqa: E402

PARTITIONS = 4
QUIET_S = 3.0  # outputs unchanged this long, every input committed, Redis caught up: settled
STREAMER = str(Path(sys.executable).with_name("streamer"))
# What a worker log must never contain (a crash or a stop that needed the watchdog).
CRASH_MARKS = ("Traceback", "exits with 70")
WATCHDOG_MARK = "the orderly shutdown did not finish"


@dataclass(frozen=True)
class SoakPlan:
    """The size of the scenario; the defaults are the full one."""

    accounts: int = 40
    months: int = 4
    seed: int = 17
    density: float = 0.3
    replay_s: float = 300.0  # the file is published over this long (rate = lines / replay_s)
    kills: int = 10
    redis_outage_s: float = 30.0
    hang_s: float = 240.0  # progress must resume within this after a fault: bounds a hang only
    # The replay compresses months into minutes, so the reorder a broker restart causes (events
    # resent after newer ones of other topics were written) spans weeks of event time; the
    # allowed lateness (workers and offline alike) covers it, so the soak measures loss and
    # double counting, not the lateness rule (tested on its own).
    lateness_days: float = 60.0
    settle_deadline_s: float = 1200.0  # the whole catch-up after the replay (bounds a hang only)


def quiet(_: str) -> None:
    pass


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("HEALTHSTREAM_")}


def digest(value: bytes | None) -> str:
    """The dead letter's `original_sha256` of a message value, its trailing CR/LF included (see
    `dead_letter_record`)."""
    return hashlib.sha256(b"" if value is None else value).hexdigest()


def identity(value: bytes | None) -> str:
    """What tells the poisons apart: the SHA-256, and a null value from an empty one."""
    return "null" if value is None else digest(value)


# -- the input: history, poisons, offline answers ----------------------------------------------


@dataclass
class Outgoing:
    """A poison published by the soak itself (not a line `streamer replay` can route)."""

    poison: Poison
    value: bytes | None
    at_fraction: float  # when, as a share of the replay


@dataclass
class Input:
    file: Path  # what `streamer replay` publishes: the history, file poisons, reused ids
    valid: Path  # the history alone, for `streamer offline`
    lines: int
    side: list[Outgoing]  # poisons the soak publishes itself, spread over the replay
    poisons: dict[str, Poison]  # by SHA-256 of the value
    kinds: int


def simulate(folder: Path, plan: SoakPlan) -> list[bytes]:
    out = folder / "simulated.jsonl.gz"
    options = (
        f"--accounts {plan.accounts} --months {plan.months} --seed {plan.seed} --usage-density {plan.density}"
    )
    subprocess.run(
        [STREAMER, "simulate", *options.split(), "--out", str(out)],
        check=True,
        capture_output=True,
        env=clean_env(),
        timeout=300,
    )
    return gzip.decompress(out.read_bytes()).splitlines()


def closing_events(lines: list[bytes]) -> list[bytes]:
    """One last event per account a minute after the history: a second subscription, so every
    account's final evaluation is a published snapshot (as in the stream tests)."""
    values = [orjson.loads(line) for line in lines]
    end = max(datetime.fromisoformat(value["occurred_at"]) for value in values) + timedelta(minutes=1)
    when = end.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        orjson.dumps(
            {
                "event_id": f"{account}-closing",
                "event_type": "subscription.started",
                "account_id": account,
                "occurred_at": when,
                "subscription_id": f"{account}-closing",
                "plan": "closing",
                "amount": "1.00",
                "currency": "USD",
                "interval": "month",
                "seats": 5,
            }
        )
        for account in sorted({value["account_id"] for value in values})
    ]


def replayable(poison: Poison, settings: Settings, when: str) -> bool:
    """Whether `streamer replay` publishes this poison as the corpus means it: to its family's
    topic, keyed by its account (replay skips lines it cannot route)."""
    value = poison.value(when)
    if not poison.in_file or value is None or poison.key != "account" or b"\n" in value:
        return False
    return route(value, settings) == (settings.topic(poison.family), poison.account.encode())


def make_input(folder: Path, plan: SoakPlan, settings: Settings) -> Input:
    """Each poison twice: in the replayed file dated like its neighbour, or published by the soak
    at two moments of the replay; and an event id reused for another payload every 500 lines."""
    history = simulate(folder, plan)
    valid = [*history, *closing_events(history)]
    (folder / "valid.jsonl").write_bytes(b"\n".join(valid) + b"\n")
    first = occurred_at(valid[0])
    in_file = [p for p in POISONS if replayable(p, settings, first)]
    side = [p for p in POISONS if p not in in_file]
    placed = [p for p in in_file for _ in range(2)]
    every = max(1, len(history) // (len(placed) + 1))
    lines: list[bytes] = []
    poisons: dict[str, Poison] = {}
    for number, line in enumerate(valid, start=1):
        lines.append(line)
        if number > len(history):
            continue  # the closing events stay last
        if number % 500 == 250:
            record = orjson.loads(line)
            when = datetime.fromisoformat(record["occurred_at"]) + timedelta(minutes=1)
            lines.append(reused_id(record, when.strftime("%Y-%m-%dT%H:%M:%SZ")))
        if number % every == 0 and placed:
            poison = placed.pop(0)
            value = poison.value(occurred_at(line))
            assert value is not None
            lines.append(value)
            poisons[identity(value)] = poison
    assert not placed, "the history is too short for the corpus"
    outgoing = []
    for index, poison in enumerate(p for p in side for _ in range(2)):
        value = poison.value(first)
        poisons[identity(value)] = poison
        outgoing.append(Outgoing(poison, value, (index + 0.5) / (2 * len(side))))
    (folder / "replayed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return Input(
        file=folder / "replayed.jsonl",
        valid=folder / "valid.jsonl",
        lines=len(lines),
        side=outgoing,
        poisons=poisons,
        kinds=len({p.name for p in poisons.values()}),
    )


@dataclass
class Offline:
    accounts: dict[str, dict[str, Any]]
    alerts: dict[str, dict[str, Any]]


def run_offline(events: Path, out: Path, config: Path) -> Offline:
    command = [STREAMER, "offline", str(events), "--sort", "--partitions", str(PARTITIONS), "--out", str(out)]
    command += ["--config", str(config)]
    subprocess.run([*command, "--quiet"], check=True, capture_output=True, env=clean_env(), timeout=600)
    assert not (out / "deadletter.jsonl").read_bytes(), "the valid history should be clean"
    accounts = [orjson.loads(line) for line in (out / "accounts.jsonl").read_bytes().splitlines()]
    alerts = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
    return Offline({a["account_id"]: a for a in accounts}, {a["alert_id"]: a for a in alerts})


# -- processes --------------------------------------------------------------------------------


@dataclass
class Incarnation:
    """One `streamer worker` process, and what we did to it."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    signalled: str | None = None  # "SIGKILL" / "SIGTERM" when we ended it
    stopped_in_s: float | None = None  # SIGTERM to exit
    log_from: int = 0  # where its lines start in the log (restarts append to the same file)

    def ready(self) -> bool:
        """faust's worker is up (its signal handlers installed, its partitions assigned)."""
        with self.log.open("rb") as handle:
            handle.seek(self.log_from)
            return b"JsonLogWorker]: Ready" in handle.read()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class Workers:
    def __init__(self, env: dict[str, str], root: Path) -> None:
        self.env, self.root = env, root
        self.all: list[Incarnation] = []
        self.current: dict[str, Incarnation] = {}

    def start(self, name: str) -> Incarnation:
        log = self.root / f"{name}.log"
        env = {**self.env, "HEALTHSTREAM_DATA_DIR": str(self.root / f"{name}-data")}
        start = log.stat().st_size if log.exists() else 0
        with log.open("ab") as handle:
            proc = subprocess.Popen([STREAMER, "worker"], env=env, stdout=handle, stderr=subprocess.STDOUT)
        worker = self.current[name] = Incarnation(name, proc, log, log_from=start)
        self.all.append(worker)
        return worker

    def kill(self, name: str) -> None:
        worker = self.current[name]
        worker.signalled = "SIGKILL"
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(timeout=30)

    def terminate(self, name: str, bound_s: float = 60.0) -> Incarnation:
        worker = self.current.pop(name)
        worker.signalled = "SIGTERM"
        started = time.monotonic()
        worker.proc.terminate()
        try:
            worker.proc.wait(timeout=bound_s)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait(timeout=30)
        worker.stopped_in_s = time.monotonic() - started
        return worker

    def crashed(self) -> list[str]:
        return [
            f"{w.name} (pid {w.proc.pid}) exited with {w.proc.returncode}"
            for w in self.all
            if self.exited_alone(w)
        ]

    @staticmethod
    def exited_alone(worker: Incarnation) -> bool:
        return worker.signalled is None and worker.proc.poll() is not None

    def close(self) -> None:
        for worker in self.all:
            if worker.alive:
                worker.proc.kill()
                worker.proc.wait(timeout=30)


# -- Kafka and Redis reads ----------------------------------------------------------------------


class Kafka:
    """Admin reads (committed offsets, ends) and whole-topic reads on a private event loop;
    every call is allowed to fail while the broker is away (None / an exception)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.loop = asyncio.new_event_loop()
        self._admin: AIOKafkaAdminClient | None = None
        self._probe: AIOKafkaConsumer | None = None

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    async def _reset(self) -> None:
        for client in (self._probe,):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        self._admin = self._probe = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
            await self._admin.start()
        if self._probe is None:
            self._probe = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
            await self._probe.start()
        return self._admin, self._probe

    async def _progress(self, group: str, topics: list[str]) -> tuple[int, int]:
        admin, probe = await self._clients()
        partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await probe.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group)
        done = sum(max(committed[tp].offset, 0) if tp in committed else 0 for tp in partitions)
        return done, sum(ends.values())

    def progress(self, group: str, topics: list[str]) -> tuple[int, int] | None:
        """(messages committed by the group, messages on the topics), or None when unknown."""
        try:
            return self.run(self._progress(group, topics))  # type: ignore[no-any-return]
        except Exception:
            with contextlib.suppress(Exception):
                self.run(self._reset())
            return None

    async def _read(self, topics: list[str]) -> list[Any]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_bytes=8 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records: list[Any] = []
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    records.extend(batch)
            return records
        finally:
            await consumer.stop()

    def read(self, topics: list[str]) -> list[Any]:
        """Every record of `topics` from the beginning to the current end."""
        return self.loop.run_until_complete(asyncio.wait_for(self._read(topics), 300))  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self._reset())
        self.loop.close()


class SidePublisher:
    """Publishes the poisons `streamer replay` cannot (null values, wrong topics, keys, ...),
    each until the broker acknowledged it (so a broker restart may publish one twice)."""

    def __init__(self, bootstrap: str, settings: Settings) -> None:
        self.bootstrap, self.settings = bootstrap, settings
        self.loop = asyncio.new_event_loop()
        self.producer: AIOKafkaProducer | None = None

    async def _send(self, poison: Poison, value: bytes | None) -> None:
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=True,
                max_request_size=2 * 1024 * 1024,
                request_timeout_ms=10_000,
            )
            await producer.start()
            self.producer = producer
        topic = self.settings.topic(poison.family)
        await self.producer.send_and_wait(topic, value=value, key=poison.message_key())

    def send(self, poison: Poison, value: bytes | None, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                self.loop.run_until_complete(asyncio.wait_for(self._send(poison, value), 20))
                return
            except Exception:
                if self.producer is not None:
                    with contextlib.suppress(Exception):
                        self.loop.run_until_complete(asyncio.wait_for(self.producer.stop(), 10))
                    self.producer = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def close(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(asyncio.wait_for(self.producer.stop(), 10))
        self.loop.close()


def redis_state(url: str, app_id: str) -> tuple[dict[str, dict[str, Any]], set[str]] | None:
    """The projection's snapshots by account and its alert ids; None while Redis is away."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=10)
    try:
        snapshots = {}
        for key in client.scan_iter(f"{app_id}:account:*", count=1000):
            raw = client.hget(key, "snapshot")
            if raw is not None:
                snapshot = orjson.loads(raw)
                snapshots[snapshot["account_id"]] = snapshot
        alerts = {member.decode() for member in client.zrange(f"{app_id}:alerts", 0, -1)}
        return snapshots, alerts
    except redis.RedisError:
        return None
    finally:
        client.close()


# -- the scenario -------------------------------------------------------------------------------


@dataclass
class Fault:
    what: str
    at_s: float  # since the replay started
    committed: int  # what the group had committed when it happened
    resumed_s: float | None = None  # until the group committed more (None: not yet)
    note: str = ""
    members: int | None = None  # the group must be stable with this many members again
    started: Incarnation | None = None  # and this new worker process up


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Result:
    faults: list[Fault] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]


def timeline(plan: SoakPlan) -> list[tuple[float, str]]:
    """(share of the replay, fault) in order: kills spread evenly, the broker restart early, the
    second worker joining and leaving around the Redis outage."""
    events = [(0.12, "broker-restart"), (0.30, "join"), (0.50, "redis-down"), (0.72, "leave")]
    for number in range(plan.kills):
        events.append(((number + 0.5) / plan.kills, f"kill-{number + 1}"))
    return sorted(events)


class Soak:
    def __init__(self, plan: SoakPlan, root: Path, echo: Callable[[str], None] = print) -> None:
        self.plan, self.root, self.echo = plan, root, echo
        self.result = Result()
        tag = uuid.uuid4().hex[:10]
        self.prefix, self.app_id = f"s{tag}.", f"soak-{tag}"
        self.config = root / "score.toml"

    # -- set-up ---------------------------------------------------------------------------------

    def stack(self) -> contextlib.AbstractContextManager[StackSettings]:
        """A stack of its own on free ports (the Kafka jars from the shared cache), stopped after."""
        return isolated_stack(self.root / "stack")

    def env(self, stack: StackSettings) -> dict[str, str]:
        return {
            **clean_env(),
            "HEALTHSTREAM_KAFKA_BOOTSTRAP": stack.bootstrap,
            "HEALTHSTREAM_REDIS_URL": stack.redis_url,
            "HEALTHSTREAM_TOPIC_PREFIX": self.prefix,
            "HEALTHSTREAM_APP_ID": self.app_id,
            "HEALTHSTREAM_PARTITIONS": str(PARTITIONS),
            "HEALTHSTREAM_STORE": "rocksdb://",
            "HEALTHSTREAM_SCORE_CONFIG": str(self.config),
        }

    def run(self) -> Result:
        with self.stack() as stack:
            settings = Settings(
                kafka_bootstrap=stack.bootstrap,
                topic_prefix=self.prefix,
                app_id=self.app_id,
                partitions=PARTITIONS,
            )
            asyncio.run(ensure_topics(settings))
            data = make_input(self.root / "input", self.plan, settings)
            self.config.write_text(f"[time]\nallowed_lateness_days = {self.plan.lateness_days}\n")
            offline = run_offline(data.valid, self.root / "offline", self.config)
            self.result.figures |= {
                "events replayed": f"{data.lines:,} lines ({len(offline.accounts)} accounts)",
                "poison kinds": f"{data.kinds} ({len(data.side)} messages published beside replay)",
                "offline alerts": f"{len(offline.alerts):,}",
            }
            kafka = Kafka(stack.bootstrap)
            side = SidePublisher(stack.bootstrap, settings)
            # a killed member's partitions move after 8 s, not 60
            workers = Workers(
                {
                    **self.env(stack),
                    "HEALTHSTREAM_SESSION_TIMEOUT_S": "8",
                    "HEALTHSTREAM_HEARTBEAT_INTERVAL_S": "1",
                },
                self.root,
            )
            try:
                self._scenario(stack, settings, data, kafka, side, workers)
                self._verify(stack, settings, data, offline, kafka, workers)
            finally:
                workers.close()
                side.close()
                kafka.close()
        return self.result

    # -- during the run -------------------------------------------------------------------------

    def _scenario(
        self,
        stack: StackSettings,
        settings: Settings,
        data: Input,
        kafka: Kafka,
        side: SidePublisher,
        workers: Workers,
    ) -> None:
        plan, result = self.plan, self.result
        inputs = [settings.topic(family) for family in FAMILIES]
        workers.start("w1")
        self._wait("the first worker to join", lambda: self._group_size(kafka) == 1, plan.hang_s, workers)
        rate = data.lines / plan.replay_s
        stderr = self.root / "replay.stderr"
        with stderr.open("wb") as err:
            replay = subprocess.Popen(
                [STREAMER, "replay", str(data.file), "--quiet", "--rate", f"{rate:.1f}", "--timeout", "300"],
                env=self.env(stack),
                stdout=subprocess.PIPE,
                stderr=err,
            )
        # The timeline starts when replay publishes (its start-up takes a while on a busy machine):
        # the broker restart must hit a replay that is sending.
        self._wait(
            "replay to publish",
            lambda: (kafka.progress(self.app_id, inputs) or (0, 0))[1] > 0 or replay.poll() is not None,
            plan.hang_s,
            workers,
        )
        began = time.monotonic()
        pending = timeline(plan)
        outgoing = sorted(data.side, key=lambda o: o.at_fraction)
        kill_targets = ["w1"]
        last: Fault | None = None
        redis_down_at: float | None = None
        committed = 0

        def elapsed() -> float:
            return time.monotonic() - began

        while pending or outgoing or redis_down_at is not None:
            self._assert_alive(workers)
            progress = kafka.progress(self.app_id, inputs)
            if progress is not None:
                committed = progress[0]
                # Progress: more committed, or everything published so far once replay ended.
                moved = {f.what for f in result.faults if committed > f.committed}
                caught_up = replay.poll() is not None and progress[0] == progress[1]
                waiting = [f for f in result.faults if f.resumed_s is None and (f.what in moved or caught_up)]
                size = self._group_size(kafka) if any(f.members for f in waiting) else None
                for fault in waiting:
                    if fault.members in (None, size) and (fault.started is None or fault.started.ready()):
                        fault.resumed_s = elapsed() - fault.at_s
            for fault in result.faults:
                if fault.resumed_s is None and elapsed() - fault.at_s > plan.hang_s:
                    raise SoakFailed(f"no progress for {plan.hang_s:.0f} s after {fault.what}")
            share = elapsed() / plan.replay_s
            while outgoing and outgoing[0].at_fraction <= share:
                item = outgoing.pop(0)
                side.send(item.poison, item.value, plan.hang_s)
            if redis_down_at is not None and elapsed() - redis_down_at >= plan.redis_outage_s:
                ensure_up(stack, echo=quiet)
                progressed = committed - next(f.committed for f in result.faults if f.what == "Redis down")
                result.faults.append(
                    Fault("Redis up", elapsed(), committed, note=f"{progressed:,} committed while down")
                )
                redis_down_at = None
            ready = last is None or last.resumed_s is not None
            if pending and pending[0][0] <= share and ready:
                _, what = pending.pop(0)
                fault = Fault(what, elapsed(), committed)
                if what == "broker-restart":
                    fault.what = "broker restart"
                    stop(stack, services=["kafka"], echo=quiet)
                    self._wait(
                        "replay to report the stall",
                        lambda: b"stopped acknowledging" in stderr.read_bytes(),
                        plan.hang_s,
                        workers,
                    )
                    fault.note = f"down {elapsed() - fault.at_s:.0f} s"
                    ensure_up(stack, echo=quiet)
                elif what == "join":
                    fault.what = "w2 joins"
                    fault.started = workers.start("w2")
                    kill_targets = ["w1", "w2"]
                elif what == "leave":
                    fault.what = "w2 leaves (SIGTERM)"
                    w2 = workers.terminate("w2")
                    fault.note = f"exit {w2.proc.returncode} after {w2.stopped_in_s:.1f} s"
                    kill_targets = ["w1"]
                elif what == "redis-down":
                    fault.what = "Redis down"
                    client = redis.Redis.from_url(stack.redis_url, socket_connect_timeout=2)
                    with contextlib.suppress(redis.ConnectionError):
                        client.shutdown(save=True)  # comes back with its data (see the module doc)
                    client.close()
                    redis_down_at = elapsed()
                    fault.note = f"{plan.redis_outage_s:.0f} s"
                else:
                    number = int(what.split("-")[1])
                    target = kill_targets[number % len(kill_targets)]
                    fault.what = f"SIGKILL {target} ({what})"
                    workers.kill(target)
                    fault.started = workers.start(target)
                fault.members = len(workers.current)  # back in the group (a restart, a join)
                result.faults.append(fault)
                last = fault
            time.sleep(0.5)
        self.echo(f"faults done after {elapsed():.0f} s; waiting for replay")
        try:
            out, _ = replay.communicate(timeout=plan.replay_s + plan.hang_s + 300)
        except subprocess.TimeoutExpired:
            replay.kill()
            out, _ = replay.communicate()
        self.result.figures["replay"] = (
            f"exit {replay.returncode}: {out.decode().strip()[-300:]}"
            if out
            else f"exit {replay.returncode}: {stderr.read_text(errors='replace')[-300:]}"
        )
        self.result.check(
            "replay exited 0 after the broker restart",
            replay.returncode == 0 and b"stopped acknowledging" in stderr.read_bytes(),
            self.result.figures["replay"],
        )
        self.result.figures["replay finished after"] = f"{elapsed():.0f} s"
        self._settle(stack, settings, kafka, workers)
        progress = kafka.progress(self.app_id, inputs)
        size = self._group_size(kafka)
        for fault in result.faults:
            done = progress is not None and (progress[0] > fault.committed or progress[0] == progress[1])
            if fault.resumed_s is None and done and fault.members in (None, size):
                fault.resumed_s = elapsed() - fault.at_s

    def _group_size(self, kafka: Kafka) -> int | None:
        async def describe() -> int:
            admin, _ = await kafka._clients()
            (response,) = await admin.describe_consumer_groups([self.app_id])
            state, members = response.groups[0][2], response.groups[0][5]
            return len(members) if state == "Stable" else -1

        try:
            return kafka.run(describe())  # type: ignore[no-any-return]
        except Exception:
            return None

    def _assert_alive(self, workers: Workers) -> None:
        crashed = workers.crashed()
        if crashed:
            raise SoakFailed(f"a worker exited on its own: {crashed}")

    def _wait(self, what: str, check: Callable[[], bool], bound_s: float, workers: Workers) -> None:
        deadline = time.monotonic() + bound_s
        while not check():
            self._assert_alive(workers)
            if time.monotonic() > deadline:
                raise SoakFailed(f"timed out after {bound_s:.0f} s waiting for {what}")
            time.sleep(0.3)

    def _settle(self, stack: StackSettings, settings: Settings, kafka: Kafka, workers: Workers) -> None:
        """Until every input message is committed, the outputs are quiet and Redis holds the
        last snapshot of every account; fails on a worker exit, no progress for `hang_s`, or
        after `settle_deadline_s`."""
        inputs = [settings.topic(family) for family in FAMILIES]
        outputs = [settings.topic(name) for name in ("health", "alerts", "deadletter")]
        started = last_change = time.monotonic()
        seen: tuple[int, int] | None = None
        while True:
            self._assert_alive(workers)
            now = time.monotonic()
            progress = kafka.progress(self.app_id, inputs)
            produced = kafka.progress(self.app_id, outputs)
            marker = None if progress is None or produced is None else (progress[0], produced[1])
            if marker != seen:
                seen, last_change = marker, now
            caught_up = progress is not None and progress[0] == progress[1]
            if caught_up and now - last_change >= QUIET_S:
                return
            if now - last_change > self.plan.hang_s:
                raise SoakFailed(f"no progress for {self.plan.hang_s:.0f} s at the end: {progress}")
            if now - started > self.plan.settle_deadline_s:
                raise SoakFailed(f"unfinished after {self.plan.settle_deadline_s:.0f} s: {progress}")
            time.sleep(1.0)

    # -- after the run --------------------------------------------------------------------------

    def _verify(
        self,
        stack: StackSettings,
        settings: Settings,
        data: Input,
        offline: Offline,
        kafka: Kafka,
        workers: Workers,
    ) -> None:
        result = self.result
        logs = {w.log: w.log.read_text(errors="replace") for w in workers.all}
        crashes = workers.crashed()
        marks = [
            f"{path.name}: {mark!r}" for path, text in logs.items() for mark in CRASH_MARKS if mark in text
        ]
        kills = [w for w in workers.all if w.signalled == "SIGKILL"]
        terms = [w for w in workers.all if w.signalled == "SIGTERM"]
        result.check(
            "no crash: every exit was ours",
            not crashes and not marks and all(w.proc.returncode == -signal.SIGKILL for w in kills),
            f"{len(kills)} SIGKILL, {len(terms)} SIGTERM, {len(workers.all)} processes; "
            + (f"crashed {crashes} " if crashes else "")
            + (f"log marks {marks[:3]}" if marks else "no traceback or exit 70 in any log"),
        )
        watchdog = [path.name for path, text in logs.items() if WATCHDOG_MARK in text]
        result.check(
            "SIGTERM stops cleanly (no watchdog)",
            all(w.proc.returncode == 0 for w in terms) and not watchdog,
            ", ".join(f"exit {w.proc.returncode} in {w.stopped_in_s:.1f} s" for w in terms)
            + (f"; watchdog fired in {watchdog}" if watchdog else ""),
        )
        unresumed = [f.what for f in result.faults if f.resumed_s is None and f.what != "Redis up"]
        slowest = max((f.resumed_s for f in result.faults if f.resumed_s is not None), default=0.0)
        result.check(
            "no stall: progress after every fault",
            not unresumed,
            f"slowest resumption {slowest:.0f} s (bound {self.plan.hang_s:.0f} s)"
            + (f"; none after {unresumed}" if unresumed else ""),
        )
        skipped = [
            line for text in logs.values() for line in text.splitlines() if "skipped an offset range" in line
        ]
        jumps = sum(text.count("passed over input offsets") for text in logs.values())
        result.check(
            "no offset gap",
            not skipped,
            f"{len(skipped)} skipped ranges; {jumps} input ranges passed over by faust's reader "
            "(left unacknowledged)" + (f"; e.g. {skipped[0][:300]}" if skipped else ""),
        )
        readbacks = [
            orjson.loads(line)
            for text in logs.values()
            for line in text.splitlines()
            if '"dead letters read back"' in line
        ]
        result.figures["dead letters read back at takeovers"] = (
            f"{len(readbacks)} partition takeovers found {sum(r.get('kept', 0) for r in readbacks)} dead "
            "letters already written for messages still to be read again (not written twice)"
        )
        self._verify_kafka(settings, data, offline, kafka)
        self._verify_redis(stack, offline)

    def _verify_kafka(self, settings: Settings, data: Input, offline: Offline, kafka: Kafka) -> None:
        result = self.result
        last: dict[str, dict[str, Any]] = {}
        health = kafka.read([settings.topic("health")])
        for record in sorted(health, key=lambda r: (r.partition, r.offset)):
            last[record.key.decode()] = orjson.loads(record.value)
        differing = sorted(a for a in offline.accounts if last.get(a) != offline.accounts[a])
        extra = sorted(set(last) - set(offline.accounts))
        mrr = sum((Decimal(s["mrr"]) for s in last.values()), Decimal(0))
        result.check(
            "Kafka snapshots = offline",
            not differing and not extra,
            f"{len(offline.accounts) - len(differing)}/{len(offline.accounts)} equal, MRR {mrr}"
            + (f"; differing {differing[:5]}" if differing else "")
            + (f"; extra {extra[:5]}" if extra else "")
            + "".join(
                f"; {a}: {field_differences(last.get(a, {}), offline.accounts[a])}" for a in differing[:3]
            ),
        )
        alerts = [orjson.loads(r.value) for r in kafka.read([settings.topic("alerts")])]
        ids = Counter(a["alert_id"] for a in alerts)
        changed = [a["alert_id"] for a in alerts if offline.alerts.get(a["alert_id"], a) != a]
        missing, unknown = set(offline.alerts) - set(ids), set(ids) - set(offline.alerts)
        result.check(
            "Kafka alert ids = offline",
            not missing and not unknown and not changed,
            f"{len(ids)} ids ({sum(ids.values()) - len(ids)} sent again, same record)"
            + (f"; missing {sorted(missing)[:3]}" if missing else "")
            + (f"; unknown {sorted(unknown)[:3]}" if unknown else "")
            + (f"; changed {changed[:3]}" if changed else ""),
        )
        # Dead letters: exactly the poison messages on the input topics, each with its reason.
        inputs = kafka.read([settings.topic(family) for family in FAMILIES])
        expected: dict[tuple[str, int, int], tuple[str, Poison]] = {}
        for record in inputs:
            poison = data.poisons.get(identity(record.value))
            if poison is not None:
                expected[(record.topic, record.partition, record.offset)] = (digest(record.value), poison)
        records = kafka.read([settings.topic("deadletter")])
        letters = [orjson.loads(r.value) for r in records]
        copies: dict[tuple[str, int, int], list[str]] = {}  # where each copy landed, for a duplicate
        for r, d in zip(records, letters, strict=True):
            copies.setdefault((d["topic"], d["partition"], d["offset"]), []).append(
                f"deadletter[{r.partition}]@{r.offset} t={r.timestamp}"
            )
        places = Counter((d["topic"], d["partition"], d["offset"]) for d in letters)
        wrong = [
            f"{d['topic']}[{d['partition']}]@{d['offset']}: {d['error'][:160]}"
            for d in letters
            if (d["topic"], d["partition"], d["offset"]) not in expected
            or expected[(d["topic"], d["partition"], d["offset"])][0] != d["original_sha256"]
        ]
        unlettered = sorted(set(expected) - set(places))
        unreasoned = [
            f"{expected[p][1].name}: {d['error'][:160]}"
            for d in letters
            if (p := (d["topic"], d["partition"], d["offset"])) in expected
            and expected[p][1].reason not in d["error"]
        ]
        kinds = {poison.name for _, poison in expected.values()}
        twice = sorted(place for place, count in places.items() if count > 1)
        twice_where = [(f"{t}[{p}]@{o}", copies[t, p, o]) for t, p, o in twice[:3]]
        result.check(
            "dead letters = the poisons, once each",
            not wrong and not unlettered and not unreasoned and not twice and len(kinds) == data.kinds,
            f"{len(expected)} poison messages of {len(kinds)} kinds, {len(places)} dead-lettered"
            f" ({sum(places.values()) - len(places)} more than once)"
            + (f"; not poison {wrong[:3]}" if wrong else "")
            + (f"; more than once {twice_where}" if twice else "")
            + (f"; no dead letter for {[expected[p][1].name for p in unlettered[:5]]}" if unlettered else "")
            + (f"; wrong reason {unreasoned[:3]}" if unreasoned else ""),
        )

    def _verify_redis(self, stack: StackSettings, offline: Offline) -> None:
        result = self.result
        state: tuple[dict[str, dict[str, Any]], set[str]] | None = None
        wanted_alerts = newest_alerts(offline.alerts)
        deadline = time.monotonic() + self.plan.hang_s  # the projection writes in the background
        while time.monotonic() < deadline:
            state = redis_state(stack.redis_url, self.app_id)
            if state is not None and state[0] == offline.accounts and state[1] == wanted_alerts:
                break
            time.sleep(1.0)
        if state is None:
            result.check("Redis = offline", False, "Redis does not answer")
            return
        snapshots, alerts = state
        differing = sorted(a for a in offline.accounts if snapshots.get(a) != offline.accounts[a])
        result.check(
            "Redis snapshots = offline",
            not differing and set(snapshots) == set(offline.accounts),
            f"{len(offline.accounts) - len(differing)}/{len(offline.accounts)} equal"
            + (f"; differing {differing[:5]}" if differing else ""),
        )
        result.check(
            "Redis alert ids = offline",
            alerts == wanted_alerts,
            f"{len(alerts)} ids (the newest {KEEP_ALERTS} are kept); "
            f"{len(wanted_alerts - alerts)} missing, {len(alerts - wanted_alerts)} unknown",
        )


def field_differences(got: dict[str, Any], want: dict[str, Any], limit: int = 6) -> str:
    """The fields of two snapshots that differ (nested keys joined with dots), as
    `field got!=want`: what to look at first when an account's snapshot differs from offline's
    (usage counts: a lost usage event; `time_to_value_days`: a lost first use)."""

    def flat(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, dict):
                out.update(flat(item, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = item
        return out

    a, b = flat(got), flat(want)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    shown = ", ".join(f"{k} {a.get(k)!r}!={b.get(k)!r}" for k in keys[:limit])
    return shown + (f", ... ({len(keys)} fields)" if len(keys) > limit else "")


def newest_alerts(alerts: dict[str, dict[str, Any]]) -> set[str]:
    """The alert ids the projection keeps: the newest `KEEP_ALERTS` by `raised_at` (all ids
    raised at the boundary instant count, since the order among them is Redis's)."""
    ordered = sorted(alerts.values(), key=lambda a: datetime.fromisoformat(a["raised_at"]), reverse=True)
    if len(ordered) <= KEEP_ALERTS:
        return set(alerts)
    return {a["alert_id"] for a in ordered[:KEEP_ALERTS]}


class SoakFailed(AssertionError):
    pass


def soak(plan: SoakPlan, root: Path, echo: Callable[[str], None] = print) -> Result:
    """Run the scenario in `root`; a fault that leaves no progress ends it as a failed check."""
    runner = Soak(plan, root, echo)
    try:
        return runner.run()
    except SoakFailed as failed:
        runner.result.check("the scenario ran to the end", False, str(failed))
        return runner.result


def print_result(result: Result, plan: SoakPlan) -> None:
    print()
    print(f"{'fault':<26} {'at s':>6} {'resumed after s':>16}  note")
    print(f"{'-' * 26} {'-' * 6} {'-' * 16}  {'-' * 30}")
    for fault in result.faults:
        resumed = "-" if fault.resumed_s is None else f"{fault.resumed_s:.1f}"
        print(f"{fault.what:<26} {fault.at_s:>6.0f} {resumed:>16}  {fault.note}")
    print()
    for name, value in result.figures.items():
        print(f"{name}: {value}")
    print()
    print(f"{'check':<40} {'result':<6}  detail")
    print(f"{'-' * 40} {'-' * 6}  {'-' * 30}")
    for check in result.checks:
        print(f"{check.name:<40} {'ok' if check.ok else 'FAIL':<6}  {check.detail}")
    print()
    print("PASSED" if result.ok else "FAILED")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    full = SoakPlan()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=full.accounts)
    parser.add_argument("--months", type=int, default=full.months)
    parser.add_argument("--seed", type=int, default=full.seed)
    parser.add_argument("--replay-seconds", type=float, default=full.replay_s)
    parser.add_argument("--kills", type=int, default=full.kills)
    parser.add_argument("--redis-outage", type=float, default=full.redis_outage_s)
    parser.add_argument("--hang", type=float, default=full.hang_s, help="seconds without progress that fail")
    parser.add_argument("--lateness-days", type=float, default=full.lateness_days)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, inputs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the stack and workers
    plan = SoakPlan(
        accounts=args.accounts,
        months=args.months,
        seed=args.seed,
        replay_s=args.replay_seconds,
        kills=args.kills,
        redis_outage_s=args.redis_outage,
        hang_s=args.hang,
        lateness_days=args.lateness_days,
    )
    print(f"soak: {plan}; load {os.getloadavg()[0]:.2f}")
    started = time.monotonic()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = soak(plan, args.keep)
    else:
        root = Path(tempfile.mkdtemp(prefix="soak-"))
        try:
            result = soak(plan, root)
        finally:
            if result_ok_or_none(locals().get("result")):
                shutil.rmtree(root, ignore_errors=True)
            else:
                print(f"kept {root} (logs of the failed run)")
    print_result(result, plan)
    print(f"took {time.monotonic() - started:.0f} s; load {os.getloadavg()[0]:.2f}")
    return 0 if result.ok else 1


def result_ok_or_none(result: Result | None) -> bool:
    return result is not None and result.ok


if __name__ == "__main__":
    sys.exit(main())
