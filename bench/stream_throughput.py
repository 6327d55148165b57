"""Stream throughput and publish->alert latency of one `streamer worker` on the local Kafka broker.

A simulated history (~200k events) is published once to fresh input topics (a unique topic prefix
and app id per run, 4 partitions, keyed and partitioned by account_id), then:

  a. raw ceiling    a plain aiokafka loop over the same messages: consume the four input topics,
                    produce every value to an output topic, commit per batch, until all are read
  p. peers          the same history through a Quix Streams app and a faust `take_events` app
                    doing a small per-account job (bench/peers/), each from its start until its
                    consumer group committed every input end; CPU seconds from /proc
  b. healthstream   ONE `streamer worker` subprocess from its start until its consumer group has
                    committed the end offsets of all input partitions (polled with the admin
                    client); events/s per worker process, and the ratio to (a)
  c. latency        with that worker caught up, publish events at a fixed rate in real time; every
                    Nth is an NPS answer of 2 that must raise an `nps_detractor` alert at once.
                    Latency = alert arrival on `<prefix>alerts` - publish time, matched on
                    (account_id, raised_at) (each probe has a unique occurred_at). Baseline: the
                    same probes copied by a raw consume->produce relay, measured at the same time.

Targets: one worker >= 10,000 events/s and >= 15,000 events per CPU second, two worker
processes of one group >= 1.6x one, publish->alert p99 <= 300 ms at 2,000 events/s.
Everything the run creates (topics, the worker's data dir) is removed at the end unless
--keep; the local broker is started when it is not running and left running.

    .venv/bin/python bench/stream_throughput.py
    .venv/bin/python bench/stream_throughput.py --accounts 20 --latency-seconds 5   # quick run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from common import CoreUse, add_json, cpu_seconds, write_json
from machine import git_revision, load
from profile_summary import read_stacks, summarise

from streamer.contract.events import EVENT_FAMILY
from streamer.core.clock import DAY, HOUR, iso, to_ms
from streamer.partitioning import partition_of
from streamer.settings import FAMILIES, Settings
from streamer.sim import SimulationConfig, generate_events
from streamer.stream.topics import ensure_topics

BENCH_DIR = Path(__file__).resolve().parent
TARGET_RATE = 10_000  # events/s, one worker process (wall clock)
TARGET_CPU_RATE = 15_000  # events per CPU second, one worker process
TARGET_SCALE = 1.6  # two processes on two cores vs one
TARGET_P99_MS = 300.0  # publish -> alert at 2,000 events/s
PROBE_RULE = "nps_detractor"


# -- helpers ----------------------------------------------------------------------------------------


def streamer_command() -> list[str]:
    """The `streamer` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("streamer")
    if script.exists():
        return [str(script)]
    found = shutil.which("streamer")
    if found:
        return [found]
    return [sys.executable, "-c", "from streamer.cli import main; main()"]


def print_table(header: Sequence[str], rows: Iterable[Sequence[str]], note: bool = True) -> None:
    """The first column and (with `note`) the last, a free-text note, are left-aligned."""
    rows = [tuple(row) for row in rows]
    widths = [max(len(row[i]) for row in (tuple(header), *rows)) for i in range(len(header))]
    last = len(header) - 1 if note else 0

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i in (0, last) else c.rjust(w) for i, (c, w) in pairs)

    print()
    print(line(header).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row).rstrip())


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Run:
    """Names of one benchmark run: nothing here is shared with any other run."""

    bootstrap: str
    partitions: int
    # The Redis the worker's projection writes to: the local stack's when the run uses it. Without
    # it the worker used the default URL, where nothing may listen (a stack on other ports): every
    # projection write then failed and was retried with all it had staged, CPU the run measured.
    redis_url: str | None = None
    run_id: str = field(default_factory=lambda: f"{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}")

    @property
    def app_id(self) -> str:
        return f"bench-{self.run_id}"

    @property
    def prefix(self) -> str:
        return f"{self.app_id}."

    @property
    def run_dir(self) -> Path:
        return BENCH_DIR / "out" / f"stream-{self.run_id}"

    @property
    def settings(self) -> Settings:
        return Settings(
            kafka_bootstrap=self.bootstrap,
            topic_prefix=self.prefix,
            app_id=self.app_id,
            partitions=self.partitions,
            data_dir=self.run_dir / "worker",
        )

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def inputs(self) -> list[str]:
        return [self.topic(family) for family in FAMILIES]

    def input_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in self.inputs for p in range(self.partitions)]

    def env(
        self, app_id: str | None = None, data_dir: Path | None = None, src: Path | None = None
    ) -> dict[str, str]:
        """A worker's environment; `src`: run the healthstream source in that folder instead
        (a checkout of another revision, e.g. `git worktree add bench/out/base main`)."""
        env = {
            **os.environ,
            "HEALTHSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "HEALTHSTREAM_TOPIC_PREFIX": self.prefix,
            "HEALTHSTREAM_APP_ID": app_id or self.app_id,
            "HEALTHSTREAM_DATA_DIR": str(data_dir or self.run_dir / "worker"),
            "HEALTHSTREAM_PARTITIONS": str(self.partitions),
        }
        if self.redis_url and "HEALTHSTREAM_REDIS_URL" not in os.environ:
            env["HEALTHSTREAM_REDIS_URL"] = self.redis_url
        if src is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
        return env


async def wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str], timeout: float = 30.0) -> None:
    """Until every partition of `topics` has a leader (right after creation they may not)."""
    deadline = time.perf_counter() + timeout
    while True:
        described = await admin.describe_topics(topics)
        ready = {
            t["topic"]
            for t in described
            if not t["error_code"] and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
        }
        if ready >= set(topics) or time.perf_counter() > deadline:
            return
        await asyncio.sleep(0.2)


async def end_offsets(bootstrap: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def topic_totals(bootstrap: str, topics: list[str], partitions: int) -> dict[str, int]:
    ends = await end_offsets(bootstrap, [TopicPartition(t, p) for t in topics for p in range(partitions)])
    totals = dict.fromkeys(topics, 0)
    for tp, end in ends.items():
        totals[tp.topic] += end
    return totals


# -- publishing -------------------------------------------------------------------------------------


async def publish_history(run: Run, events: list[dict[str, Any]]) -> float:
    """Every event to its family's topic, keyed and partitioned by account_id; returns seconds."""
    producer = AIOKafkaProducer(
        bootstrap_servers=run.bootstrap,
        linger_ms=20,
        max_batch_size=512 * 1024,
        acks="all",
        enable_idempotence=True,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for event in events:
            account_id = event["account_id"]
            await producer.send(
                run.topic(EVENT_FAMILY[event["event_type"]]),
                value=orjson.dumps(event),
                key=account_id.encode(),
                partition=partition_of(account_id, run.partitions),
            )
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


# -- (a) raw ceiling --------------------------------------------------------------------------------


async def raw_ceiling(run: Run, ends: dict[TopicPartition, int], out_topic: str) -> tuple[int, float, float]:
    """Consume every input message once, produce its value to `out_topic`, commit per batch."""
    total = sum(ends.values())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=run.bootstrap,
        group_id=f"{run.app_id}-raw",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=run.bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all"
    )
    started, cpu = time.perf_counter(), time.process_time()
    await consumer.start()
    await producer.start()
    seen = 0
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    await producer.send(out_topic, value=record.value, key=record.key, partition=tp.partition)
                seen += len(records)
            if batches:
                await consumer.commit()
        await producer.flush()
        return seen, time.perf_counter() - started, time.process_time() - cpu
    finally:
        await producer.stop()
        await consumer.stop()


# -- (b) the worker ---------------------------------------------------------------------------------


class WorkerDied(RuntimeError):
    pass


async def start_worker(
    run: Run, log_path: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        return await asyncio.create_subprocess_exec(
            *streamer_command(),
            "worker",
            "--loglevel",
            "info",
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env or run.env(),
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it
        )


async def start_profiler(pid: int, out: Path, native: bool = False) -> asyncio.subprocess.Process | None:
    """py-spy sampling the worker `pid` until it gets SIGINT, into `out` as collapsed stacks
    (`--format raw`: a flame graph in speedscope or flamegraph.pl, summarised by
    `profile_summary.py`); CPU samples only, by function. `native`: with the C frames too (the
    compiled core's functions; py-spy then pauses the worker for each sample)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("  (py-spy is not installed in this venv: no flame graph)")
        return None
    return await asyncio.create_subprocess_exec(
        str(py_spy),
        "record",
        "--pid",
        str(pid),
        "--native" if native else "--nonblocking",
        "--rate",
        "100",
        "--format",
        "raw",
        "--function",
        "-o",
        str(out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def stop_profiler(profiler: asyncio.subprocess.Process | None, out: Path) -> None:
    if profiler is None:
        return
    with contextlib.suppress(ProcessLookupError):
        profiler.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(profiler.wait(), 60)
        print(f"  profile of the worker (collapsed stacks): {out}")
        if out.exists():
            print("\n".join(f"    {line}" for line in summarise(read_stacks(out)).lines(20)))
    except TimeoutError:
        profiler.kill()
        await profiler.wait()


async def stop_worker(
    process: asyncio.subprocess.Process, grace: float = 30.0, name: str = "the worker"
) -> str:
    """SIGTERM, then SIGKILL after `grace` seconds; says how it went."""
    if process.returncode is not None:
        return f"{name} had exited with code {process.returncode}"
    started = time.perf_counter()
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return f"{name} did not stop within {grace:.0f} s of SIGTERM: killed"
    return f"{name} stopped {time.perf_counter() - started:.1f} s after SIGTERM"


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- peers: the same small per-account work in Quix Streams and in faust's batch idiom --------------

PEERS_DIR = BENCH_DIR / "peers"
QUIX_VERSION = "3.28.1"


def quix_python() -> Path:
    """The Python of a separate virtualenv with Quix Streams (made once under bench/out/)."""
    venv = BENCH_DIR / "out" / f"quix-{QUIX_VERSION}-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        print(f"  installing quixstreams {QUIX_VERSION} into {venv} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"quixstreams=={QUIX_VERSION}"], check=True
        )
        (venv / ".installed").touch()
    return python


@dataclass(frozen=True)
class Peer:
    name: str  # --peers name
    label: str  # table row
    script: str

    def command(self, run: Run, out_topic: str, state_dir: Path) -> list[str]:
        python = str(quix_python()) if self.name == "quix" else sys.executable
        return [
            python,
            str(PEERS_DIR / self.script),
            "--bootstrap",
            run.bootstrap,
            "--group",
            self.group(run),
            "--out",
            out_topic,
            "--state-dir",
            str(state_dir),
            *run.inputs,
        ]

    def group(self, run: Run) -> str:
        return f"{run.app_id}-{self.name}"


PEERS = {
    peer.name: peer
    for peer in (
        Peer("quix", f"Quix Streams {QUIX_VERSION}, per-account state, one output per event", "quix_peer.py"),
        Peer(
            "faust-batch",
            "faust take_events, one table write + send per account per batch",
            "faust_batch_peer.py",
        ),
        Peer("faust-event", "faust per event, one table write + send per event", "faust_event_peer.py"),
    )
}


async def measure_peer(
    peer: Peer,
    run: Run,
    admin: AIOKafkaAdminClient,
    ends: dict[TopicPartition, int],
    args: argparse.Namespace,
) -> tuple[float, float, str]:
    """A peer from its start until its group committed every input end: (seconds, cpu s, how it stopped)."""
    out_topic = run.topic(f"bench-{peer.name}")
    await admin.create_topics([NewTopic(out_topic, run.partitions, 1)])
    await wait_for_leaders(admin, [out_topic])
    log_path = run.run_dir / f"{peer.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress(time.perf_counter())
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *peer.command(run, out_topic, run.run_dir / f"{peer.name}-state"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        await wait_committed(
            admin, peer.group(run), ends, [process], progress, timeout=args.timeout, stall=args.stall
        )
    except (WorkerDied, TimeoutError) as error:
        raise WorkerDied(f"peer {peer.name}: {error}\n{log_tail(log_path)}") from None
    finally:
        stopped = await stop_worker(process, name="it")
    assert progress.done_at is not None
    cpu = progress.cpu[-1][1] if progress.cpu else math.nan
    return progress.done_at - progress.started, cpu, stopped


@dataclass
class Progress:
    """Committed input offsets of the worker's consumer group over time."""

    started: float
    points: list[tuple[float, int]] = field(default_factory=list)  # (perf_counter, committed)
    done_at: float | None = None
    done_wall: float = math.inf  # time.time() when caught up: the workers' logs are in wall time
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (perf_counter, worker CPU s)
    use: CoreUse = field(default_factory=lambda: CoreUse(broker_pid()))  # from the phase's start
    cores: dict[str, float | None] = field(default_factory=dict)  # `use.cores()` when caught up

    @property
    def first_commit_at(self) -> float | None:
        return next((at for at, committed in self.points if committed > 0), None)


async def wait_committed(
    admin: AIOKafkaAdminClient,
    group: str,
    ends: dict[TopicPartition, int],
    processes: Sequence[asyncio.subprocess.Process],
    progress: Progress,
    *,
    timeout: float,
    stall: float,
    poll: float = 0.1,
) -> Progress:
    """Poll the group's committed offsets until every input partition is committed to its end;
    CPU seconds are the sum over `processes`."""
    wanted = {tp: end for tp, end in ends.items() if end > 0}
    last_change, last_value = time.perf_counter(), -1
    while True:
        for process in processes:
            if process.returncode is not None:
                raise WorkerDied(f"the worker exited with code {process.returncode}")
        try:
            offsets = await admin.list_consumer_group_offsets(group, partitions=list(wanted))
        except Exception:  # the group does not exist until the worker's first commit
            offsets = {}
        now = time.perf_counter()
        cpus = [cpu_seconds(process.pid) for process in processes]
        if all(cpu is not None for cpu in cpus):
            progress.cpu.append((now, sum(cpu for cpu in cpus if cpu is not None)))
        committed = {tp: max(0, meta.offset) for tp, meta in offsets.items() if tp in wanted}
        value = sum(min(committed.get(tp, 0), end) for tp, end in wanted.items())
        progress.points.append((now, value))
        if all(committed.get(tp, 0) >= end for tp, end in wanted.items()):
            progress.done_at, progress.done_wall = now, time.time()
            progress.cores = progress.use.cores()
            return progress
        if value != last_value:
            last_change, last_value = now, value
        if now - progress.started > timeout:
            raise TimeoutError(f"not caught up after {timeout:.0f} s ({value:,} of {sum(wanted.values()):,})")
        if now - last_change > stall:
            missing = {
                f"{tp.topic}[{tp.partition}]": (committed.get(tp, 0), end) for tp, end in wanted.items()
            }
            raise TimeoutError(f"no progress for {stall:.0f} s; (committed, end) per partition: {missing}")
        await asyncio.sleep(poll)


# -- (c) latency ------------------------------------------------------------------------------------


@dataclass
class LatencyResult:
    label: str
    sent: int
    latencies_ms: list[float]

    @property
    def missing(self) -> int:
        return self.sent - len(self.latencies_ms)

    def p(self, share: float) -> float:
        return percentile(sorted(self.latencies_ms), share)


class Probes:
    """Publish times of the probe events and the arrival times of what they caused."""

    def __init__(self) -> None:
        self.sent_by_alert: dict[tuple[str, str], float] = {}  # (account_id, raised_at) -> sent
        self.sent_by_id: dict[str, float] = {}  # event_id -> sent
        self.alert_latency: dict[tuple[str, str], float] = {}
        self.relay_latency: dict[str, float] = {}
        self.offsets_s: dict[tuple[str, str], float] = {}  # seconds into the publishing phase

    @property
    def complete(self) -> bool:
        return len(self.alert_latency) == len(self.sent_by_alert) and len(self.relay_latency) == len(
            self.sent_by_id
        )


async def assigned_at_end(bootstrap: str, topics: list[str], partitions: int) -> AIOKafkaConsumer:
    """A group-less consumer positioned at the current end of every partition of `topics`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)  # resolve now, before anything is published
    return consumer


async def read_alerts(consumer: AIOKafkaConsumer, probes: Probes) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=100)
        arrived = time.perf_counter()
        for records in batches.values():
            for record in records:
                alert = orjson.loads(record.value)
                if alert.get("rule") != PROBE_RULE:
                    continue
                key = (alert["account_id"], alert["raised_at"])
                sent = probes.sent_by_alert.get(key)
                if sent is not None and key not in probes.alert_latency:
                    probes.alert_latency[key] = (arrived - sent) * 1000


async def relay(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, out_topic: str) -> None:
    """The raw consume->produce loop of (a), live: copies whatever arrives on the inputs."""
    while True:
        batches = await consumer.getmany(timeout_ms=100)
        for tp, records in batches.items():
            for record in records:
                await producer.send(out_topic, value=record.value, key=record.key, partition=tp.partition)


async def read_relayed(consumer: AIOKafkaConsumer, probes: Probes) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=100)
        arrived = time.perf_counter()
        for records in batches.values():
            for record in records:
                event_id = orjson.loads(record.value)["event_id"]
                sent = probes.sent_by_id.get(event_id)
                if sent is not None and event_id not in probes.relay_latency:
                    probes.relay_latency[event_id] = (arrived - sent) * 1000


def usage_event(run: Run, number: int, account_id: str, at: int) -> dict[str, Any]:
    return {
        "event_id": f"{run.app_id}-{number}",
        "event_type": "usage.recorded",
        "account_id": account_id,
        "occurred_at": iso(at),
        "user_id": f"{account_id}-bench-user",
        "feature": "reports",
        "count": 1,
    }


def probe_event(run: Run, number: int, account_id: str, at: int) -> dict[str, Any]:
    return {
        "event_id": f"{run.app_id}-{number}",
        "event_type": "survey.answered",
        "account_id": account_id,
        "occurred_at": iso(at),
        "survey": "nps",
        "score": 2,
        "respondent_id": f"{account_id}-bench-respondent",
    }


async def send(producer: AIOKafkaProducer, run: Run, event: dict[str, Any]) -> None:
    account_id = event["account_id"]
    await producer.send(
        run.topic(EVENT_FAMILY[event["event_type"]]),
        value=orjson.dumps(event),
        key=account_id.encode(),
        partition=partition_of(account_id, run.partitions),
    )


async def measure_latency(
    run: Run,
    args: argparse.Namespace,
    admin: AIOKafkaAdminClient,
    worker: asyncio.subprocess.Process,
    accounts: list[str],
    history_end: int,
    relay_topic: str,
) -> tuple[LatencyResult, LatencyResult, Probes, int]:
    rng = random.Random(args.seed)
    base = (history_end // DAY + 1) * DAY + HOUR  # 01:00 the day after the history: no tick ahead
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, linger_ms=0, acks="all")
    await producer.start()
    consumers: list[AIOKafkaConsumer] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        # Warm-up: move every partition's stream time past midnight (the daily re-scoring of all
        # its accounts happens here), and wait until the worker has committed it.
        by_partition: dict[int, str] = {}
        for account_id in accounts:
            by_partition.setdefault(partition_of(account_id, run.partitions), account_id)
        for number, account_id in enumerate(by_partition.values()):
            await send(producer, run, usage_event(run, -1 - number, account_id, base - 1000))
        await producer.flush()
        ends = await end_offsets(run.bootstrap, run.input_partitions())
        warmup = Progress(time.perf_counter())
        await wait_committed(
            admin, run.app_id, ends, [worker], warmup, timeout=args.timeout, stall=args.stall
        )

        alerts = await assigned_at_end(run.bootstrap, [run.topic("alerts")], run.partitions)
        relay_in = await assigned_at_end(run.bootstrap, run.inputs, run.partitions)
        relayed = await assigned_at_end(run.bootstrap, [relay_topic], run.partitions)
        consumers += [alerts, relay_in, relayed]
        relay_out = AIOKafkaProducer(bootstrap_servers=run.bootstrap, linger_ms=5, acks="all")
        await relay_out.start()
        probes = Probes()
        tasks += [
            asyncio.create_task(read_alerts(alerts, probes)),
            asyncio.create_task(relay(relay_in, relay_out, relay_topic)),
            asyncio.create_task(read_relayed(relayed, probes)),
        ]
        try:
            total = int(args.rate * args.latency_seconds)
            started = time.perf_counter()
            at = base
            for number in range(total):
                due = started + number / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.perf_counter()
                at = max(at + 1, base + int((now - started) * 1000))  # unique, follows the wall clock
                account_id = rng.choice(accounts)
                if number % args.probe_every == 0:
                    event = probe_event(run, number, account_id, at)
                    key = (account_id, iso(at))
                    probes.sent_by_alert[key] = now
                    probes.offsets_s[key] = now - started
                    probes.sent_by_id[event["event_id"]] = now
                else:
                    event = usage_event(run, number, account_id, at)
                await send(producer, run, event)
            await producer.flush()
            publish_seconds = time.perf_counter() - started
            deadline = time.perf_counter() + args.drain
            while not probes.complete and time.perf_counter() < deadline:
                if worker.returncode is not None:
                    raise WorkerDied(f"the worker exited with code {worker.returncode}")
                await asyncio.sleep(0.1)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await relay_out.stop()
        achieved = int(total / publish_seconds) if publish_seconds else 0
        relay_result = LatencyResult(
            "raw relay (baseline)", len(probes.sent_by_id), list(probes.relay_latency.values())
        )
        worker_result = LatencyResult(
            "healthstream worker", len(probes.sent_by_alert), list(probes.alert_latency.values())
        )
        return relay_result, worker_result, probes, achieved
    finally:
        for consumer in consumers:
            await consumer.stop()
        await producer.stop()


# -- the run ----------------------------------------------------------------------------------------


def partition_loads(ends: dict[TopicPartition, int], partitions: int) -> list[int]:
    """Events per partition number over all input topics (fresh topics start at offset 0)."""
    loads = [0] * partitions
    for tp, end in ends.items():
        loads[tp.partition] += end
    return loads


def final_owners(logs: Sequence[Path], until: float = math.inf) -> dict[int, int]:
    """Partition -> index in `logs` of the worker that built its engine last ("partition engine
    ready" lines, by their timestamps) up to `until` (time.time()): who held it when the group
    caught up. Later lines are left out: the workers are stopped one after the other, and the
    last one takes over the partitions of those stopped before it."""
    last = datetime.fromtimestamp(until, UTC).isoformat(timespec="milliseconds") if until < math.inf else "~"
    latest: dict[int, tuple[str, int]] = {}
    for number, path in enumerate(logs):
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if '"partition engine ready"' not in line:
                    continue
                with contextlib.suppress(orjson.JSONDecodeError):
                    record = orjson.loads(line)
                    if isinstance(record.get("partition"), int) and str(record.get("ts", "")) <= last:
                        seen = (str(record.get("ts", "")), number)
                        latest[record["partition"]] = max(latest.get(record["partition"], seen), seen)
    return {partition: number for partition, (_, number) in latest.items()}


def two_process_bound(loads: Sequence[int]) -> tuple[float, float]:
    """(share of the events on the busier of two processes, the speed-up over one that allows)
    for the best split of whole partitions: exact up to 20 partitions, greedy beyond."""
    total = sum(loads)
    if total == 0:
        return 0.5, 2.0
    if len(loads) <= 20:
        busier = min(
            max(part, total - part)
            for mask in range(1 << len(loads))
            for part in [sum(n for i, n in enumerate(loads) if mask >> i & 1)]
        )
    else:
        sides = [0, 0]
        for n in sorted(loads, reverse=True):
            sides[sides.index(min(sides))] += n
        busier = max(sides)
    return busier / total, total / busier


def broker_pid() -> int | None:
    """The local stack's broker process (None when the run uses another broker)."""
    from streamer.local.kafka import running_pid
    from streamer.local.settings import StackSettings

    try:
        return running_pid(StackSettings.from_env())
    except Exception:  # no local stack, or its settings do not apply
        return None


def core_figures(progress: Progress) -> dict[str, float | None]:
    """Cores used from the phase's start until caught up: the workers', the broker's (None when
    not the local stack's), this bench's, the whole machine's, and the rest (anything else)."""
    assert progress.done_at is not None
    cpu = progress.cpu[-1][1] if progress.cpu else math.nan
    figures = dict(progress.cores)
    figures["workers"] = cpu / (progress.done_at - progress.started)
    known = sum(figures.get(name) or 0.0 for name in ("workers", "broker", "bench"))
    figures["rest"] = max(0.0, (figures.get("machine") or math.nan) - known)
    return figures


def core_note(figures: dict[str, float | None]) -> str:
    """Where the cores went while the workers caught up (`core_figures`), for the row's note."""
    parts = [
        f"{name} {value:.2f}"
        for name, value in ((n, figures.get(n)) for n in ("workers", "broker", "bench", "rest"))
        if value is not None
    ]
    return f"cores used: {', '.join(parts)} (machine {figures.get('machine') or 0:.2f} of {os.cpu_count()})"


async def bootstrap_servers(args: argparse.Namespace) -> tuple[str, str | None]:
    """The broker, and the local stack's Redis when the run uses the local stack."""
    if args.bootstrap:
        return str(args.bootstrap), None
    if os.environ.get("HEALTHSTREAM_KAFKA_BOOTSTRAP"):
        return os.environ["HEALTHSTREAM_KAFKA_BOOTSTRAP"], None
    from streamer.local.settings import StackSettings
    from streamer.local.stack import ensure_up

    info = await asyncio.to_thread(ensure_up, StackSettings.from_env())
    if info.started:
        print(f"started the local stack ({', '.join(info.started)}); it keeps running")
    return info.bootstrap, info.redis_url


async def cleanup(run: Run, admin: AIOKafkaAdminClient) -> None:
    names = [t for t in await admin.list_topics() if t.startswith((run.prefix, f"{run.app_id}-"))]
    if names:
        with contextlib.suppress(Exception):
            await admin.delete_topics(names)
    shutil.rmtree(run.run_dir, ignore_errors=True)


async def main(args: argparse.Namespace) -> int:
    bootstrap, redis_url = await bootstrap_servers(args)
    run = Run(bootstrap, args.partitions, redis_url)
    config = SimulationConfig(accounts=args.accounts, months=args.months, seed=args.seed)
    events = list(generate_events(config))
    accounts = sorted({event["account_id"] for event in events})
    history_end = max(to_ms(datetime.fromisoformat(event["occurred_at"])) for event in events)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, load {load()}, "
        f"revision {git_revision()}\n"
        f"broker {run.bootstrap}, worker's Redis "
        f"{os.environ.get('HEALTHSTREAM_REDIS_URL') or run.redis_url or 'default'}, prefix {run.prefix!r}, "
        f"app id {run.app_id!r}, "
        f"{run.partitions} partitions\n"
        f"history: {len(events):,} events of {len(accounts)} accounts x {args.months} months "
        f"(seed {args.seed})"
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=run.bootstrap, request_timeout_ms=15_000)
    await admin.start()
    worker: asyncio.subprocess.Process | None = None
    log_path = run.run_dir / "worker.log"
    # The figures `--json` writes: events/s and events per CPU second by row, the latency.
    summary: dict[str, Any] = {"load_start": load(), "events": len(events)}
    try:
        await ensure_topics(run.settings)
        raw_topic = run.topic("bench-raw")
        relay_topic = run.topic("bench-relay")
        await admin.create_topics([NewTopic(t, run.partitions, 1) for t in (raw_topic, relay_topic)])
        await wait_for_leaders(admin, [*run.inputs, raw_topic, relay_topic])
        seconds = await publish_history(run, events)
        ends = await end_offsets(run.bootstrap, run.input_partitions())
        total = sum(ends.values())
        print(f"published {total:,} events in {seconds:.1f} s ({total / seconds:,.0f}/s)", flush=True)
        loads = partition_loads(ends, run.partitions)
        busier, bound = two_process_bound(loads)
        print(
            "events per input partition (all topics): "
            + ", ".join(f"{p}: {n:,} ({n / total:.0%})" for p, n in enumerate(loads))
            + f"\n  an account's events stay on one partition, so two processes can at most be {bound:.2f}x "
            f"one here: the best split of whole partitions leaves {busier:.0%} on the busier process",
            flush=True,
        )

        count, raw_seconds, raw_cpu = await raw_ceiling(run, ends, raw_topic)
        raw_rate = count / raw_seconds
        print(f"  a. raw ceiling: {raw_seconds:.1f} s", flush=True)

        peer_rows = []
        for name in args.peers:
            peer = PEERS[name]
            peer_seconds, peer_cpu, stopped = await measure_peer(peer, run, admin, ends, args)
            print(f"  peer {name}: {peer_seconds:.1f} s ({stopped})", flush=True)
            peer_rows.append(
                (f"p. {peer.label}", total, peer_seconds, peer_cpu, "start to caught up (cpu: the peer)")
            )

        rows: list[tuple[str, int, float, float, str]] = []
        cores: dict[str, dict[str, float | None]] = {}  # row key -> cores used while catching up
        by_label: dict[str, tuple[float, float]] = {}  # label -> (events/s, events per cpu s)

        def add_row(label: str, key: str, n: int, seconds: float, cpu: float, note: str) -> None:
            rows.append((label, n, seconds, cpu, note))
            by_label[key] = (n / seconds if seconds > 0 else math.nan, n / cpu if cpu > 0 else math.nan)

        add_row(
            "a. raw consume->produce (aiokafka)",
            "raw",
            count,
            raw_seconds,
            raw_cpu,
            "consume 4 topics, produce, commit (cpu: this process)",
        )
        for label, n, sec, cpu, note in peer_rows:
            add_row(label, label, n, sec, cpu, note)

        async def workers(key: str, processes: int, src: Path | None) -> Progress:
            """`processes` workers of one group from their start until it committed every end."""
            app_id = f"{run.app_id}-{key}"
            started = []
            profilers: list[tuple[asyncio.subprocess.Process | None, Path]] = []
            progress = Progress(time.perf_counter())
            try:
                for number in range(processes):
                    env = run.env(app_id=app_id, data_dir=run.run_dir / f"{key}-{number}", src=src)
                    started.append(await start_worker(run, run.run_dir / f"{key}-{number}.log", env))
                    if args.profile and key == "two":  # each of the two workers, like row b.'s
                        flame = BENCH_DIR / "out" / f"profile-{run.run_id}-{key}-{number}.txt"
                        profilers.append((await start_profiler(started[-1].pid, flame, args.native), flame))
                await wait_committed(
                    admin, app_id, ends, started, progress, timeout=args.timeout, stall=args.stall
                )
            finally:
                for profiler, flame in profilers:
                    await stop_profiler(profiler, flame)
                for process in started:
                    await stop_worker(process)
            return progress

        def split_of(key: str, progress: Progress) -> tuple[dict[int, int], list[int]]:
            """Which of the two workers held each partition at the end, and each one's events."""
            logs = [run.run_dir / f"{key}-{number}.log" for number in range(2)]
            owners = final_owners(logs, progress.done_wall)
            return owners, [sum(loads[p] for p, o in owners.items() if o == number) for number in range(2)]

        def seconds_cpu(progress: Progress) -> tuple[float, float]:
            assert progress.done_at is not None
            return progress.done_at - progress.started, progress.cpu[-1][1] if progress.cpu else math.nan

        if args.baseline_src:
            base = await workers("previous", 1, args.baseline_src)
            seconds, cpu = seconds_cpu(base)
            print(f"  w. previous worker: {seconds:.1f} s", flush=True)
            add_row(
                f"w. previous `streamer worker` ({args.baseline_src.name}), 1 process",
                "previous",
                total,
                seconds,
                cpu,
                f"revision {git_revision(args.baseline_src)} (cpu: the worker)",
            )
        if args.two:
            two = await workers("two", 2, None)
            seconds, cpu = seconds_cpu(two)
            cores["two"] = core_figures(two)
            owners, sides = split_of("two", two)
            print(
                f"  b2. two workers: {seconds:.1f} s; partitions at the end "
                + "; ".join(
                    f"worker {number}: {sorted(p for p, o in owners.items() if o == number)} "
                    f"({sides[number] / total:.0%} of the events)"
                    for number in range(2)
                ),
                flush=True,
            )
            add_row(
                "b2. `streamer worker` x 2 processes, one group",
                "two",
                total,
                seconds,
                cpu,
                f"start to caught up (cpu: both workers); busier one ended with {max(sides) / total:.0%} "
                f"of the events; {core_note(cores['two'])}",
            )
            summary["two_busier_share"] = max(sides) / total
            if args.baseline_src:
                two_base = await workers("two-previous", 2, args.baseline_src)
                seconds, cpu = seconds_cpu(two_base)
                _, sides = split_of("two-previous", two_base)
                print(f"  w2. two previous workers: {seconds:.1f} s", flush=True)
                add_row(
                    f"w2. previous `streamer worker` ({args.baseline_src.name}) x 2 processes, one group",
                    "two-previous",
                    total,
                    seconds,
                    cpu,
                    f"revision {git_revision(args.baseline_src)}; busier one ended with "
                    f"{max(sides) / total:.0%} of the events",
                )

        progress = Progress(time.perf_counter())
        worker = await start_worker(run, log_path)
        flame = BENCH_DIR / "out" / f"profile-{run.run_id}.txt"
        profiler = await start_profiler(worker.pid, flame, args.native) if args.profile else None
        try:
            await wait_committed(
                admin, run.app_id, ends, [worker], progress, timeout=args.timeout, stall=args.stall
            )
        finally:
            await stop_profiler(profiler, flame)
        assert progress.done_at is not None
        wall = progress.done_at - progress.started
        print(f"  b. worker: {wall:.1f} s", flush=True)
        first_at, first_value = next(((at, v) for at, v in progress.points if v > 0), (progress.started, 0))
        steady = (total - first_value) / (progress.done_at - first_at) if progress.done_at > first_at else 0.0
        summary["startup_s"] = first_at - progress.started
        outputs = await topic_totals(
            run.bootstrap, [run.topic(name) for name in ("alerts", "health", "deadletter")], run.partitions
        )
        cpu_done = progress.cpu[-1][1] if progress.cpu else math.nan
        cores["one"] = core_figures(progress)
        cpu_first = next((c for at, c in progress.cpu if at >= first_at), math.nan)
        add_row(
            "b. `streamer worker`, 1 process, start to caught up",
            "one",
            total,
            wall,
            cpu_done,
            f"startup to first commit {first_at - progress.started:.1f} s (cpu: the worker); "
            + core_note(cores["one"]),
        )
        add_row(
            "   same, first commit to caught up",
            "one-steady",
            total - first_value,
            progress.done_at - first_at,
            cpu_done - cpu_first,
            ", ".join(f"{name.rsplit('.', 1)[-1]} {n:,}" for name, n in outputs.items()),
        )
        raw_rate = by_label["raw"][0]
        previous = by_label.get("previous")
        summary["rows"] = {
            key: {"events_per_s": rate, "events_per_cpu_s": cpu} for key, (rate, cpu) in by_label.items()
        }
        summary["two_bound"] = bound
        summary["cores"] = cores

        def versus_previous(key: str, index: int) -> str:
            # Two processes against two previous ones when both ran, else against one previous.
            base = by_label.get("two-previous") if key in ("two", "two-previous") else None
            base = base or previous
            if base is None or key not in ("one", "two", "previous", "two-previous"):
                return "-"
            return f"{by_label[key][index] / base[index]:.2f}"

        keys = list(by_label)
        print_table(
            (
                "measurement",
                "events",
                "seconds",
                "events/s",
                "vs (a)",
                "cpu s",
                "events/cpu s",
                "vs prev",
                "cpu vs prev",
                "",
            ),
            [
                (
                    label,
                    f"{n:,}",
                    f"{sec:.2f}",
                    f"{n / sec:,.0f}" if sec > 0 else "-",
                    f"{n / sec / raw_rate:.3f}" if sec > 0 else "-",
                    f"{cpu:.2f}",
                    f"{n / cpu:,.0f}" if cpu > 0 else "-",
                    versus_previous(key, 0),
                    versus_previous(key, 1),
                    note,
                )
                for key, (label, n, sec, cpu, note) in zip(keys, rows, strict=True)
            ],
        )
        one_rate, one_cpu = by_label["one"]

        def verdict(met: bool) -> str:
            return "MET" if met else "NOT MET"

        verdicts = [
            f">= {TARGET_RATE:,} events/s, one process: {verdict(one_rate >= TARGET_RATE)} "
            f"({one_rate:,.0f} start to caught up, {steady:,.0f} after the first commit)",
            f">= {TARGET_CPU_RATE:,} events per CPU second: {verdict(one_cpu >= TARGET_CPU_RATE)} "
            f"({one_cpu:,.0f})",
        ]
        if "two" in by_label:
            scale = by_label["two"][0] / one_rate
            verdicts.append(
                f"two processes >= {TARGET_SCALE:g}x one: {verdict(scale >= TARGET_SCALE)} ({scale:.2f}x; "
                f"at most {bound:.2f}x on this stream's partitions)"
            )
        print("\ntargets:\n  " + "\n  ".join(verdicts))

        if args.latency_seconds > 0:
            print(
                f"\nc. latency: {args.rate:g} events/s for {args.latency_seconds:g} s, "
                f"every {args.probe_every}th an NPS 2 answer (-> {PROBE_RULE} alert)",
                flush=True,
            )
            baseline, worker_latency, probes, achieved = await measure_latency(
                run, args, admin, worker, accounts, history_end, relay_topic
            )
            print(f"published at {achieved:,} events/s")
            latency_rows = []
            for result in (baseline, worker_latency):
                latency_rows.append(
                    (
                        result.label,
                        f"{result.sent:,}",
                        f"{len(result.latencies_ms):,}",
                        *(f"{result.p(share):,.0f}" for share in (0.5, 0.9, 0.99)),
                        f"{max(result.latencies_ms, default=math.nan):,.0f}",
                        f"{result.p(0.5) / baseline.p(0.5):.1f}" if baseline.latencies_ms else "-",
                        f"{result.p(0.99) / baseline.p(0.99):.1f}" if baseline.latencies_ms else "-",
                    )
                )
            print_table(
                ("path", "probes", "arrived", "p50 ms", "p90 ms", "p99 ms", "max ms", "p50 vs", "p99 vs"),
                latency_rows,
                note=False,
            )
            slow = sorted(probes.alert_latency.items(), key=lambda item: -item[1])[:5]
            if slow:
                print(
                    "slowest alerts (seconds into the phase: ms): "
                    + ", ".join(f"{probes.offsets_s[key]:.1f}: {ms:,.0f}" for key, ms in slow)
                )
                windows: dict[int, list[float]] = {}
                for key, ms in probes.alert_latency.items():
                    windows.setdefault(int(probes.offsets_s[key] // 2), []).append(ms)
                print(
                    "alert latency by 2 s of the phase, p50/max ms: "
                    + " ".join(
                        f"{percentile(sorted(v), 0.5):.0f}/{max(v):.0f}" for _, v in sorted(windows.items())
                    )
                )
            p99 = worker_latency.p(0.99)
            summary["latency"] = {
                "rate": achieved,
                "worker_p50_ms": worker_latency.p(0.5),
                "worker_p99_ms": p99,
                "relay_p50_ms": baseline.p(0.5),
                "relay_p99_ms": baseline.p(0.99),
                "missing": worker_latency.missing,
            }
            print(
                f"target: publish -> alert p99 <= {TARGET_P99_MS:g} ms at 2,000 events/s: "
                f"{'MET' if p99 <= TARGET_P99_MS and achieved >= 1900 else 'NOT MET'} "
                f"(p99 {p99:,.0f} ms at {achieved:,} events/s)"
            )
            if worker_latency.missing:
                print(f"{worker_latency.missing} probes raised no {PROBE_RULE} alert within {args.drain:g} s")
    except (WorkerDied, TimeoutError) as error:
        print(f"\nFAILED: {error}\n--- last lines of {log_path} ---\n{log_tail(log_path)}", file=sys.stderr)
        return 1
    finally:
        if worker is not None:
            print(await stop_worker(worker))
        print(f"load average now {load()} (other work on the machine slows every number here)")
        write_json(args.json, summary)
        if args.keep:
            print(f"kept topics {run.prefix}* and {run.run_dir}")
        else:
            await cleanup(run, admin)
        await admin.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Stream throughput and publish->alert latency of one worker on the local broker."
    )
    add = parser.add_argument
    add(
        "--bootstrap",
        help="Kafka bootstrap servers (default: HEALTHSTREAM_KAFKA_BOOTSTRAP, else the local stack)",
    )
    add("--partitions", type=int, default=4, help="partitions of the run's topics (default: %(default)s)")
    add("--accounts", type=int, default=100, help="accounts in the history (default: %(default)s)")
    add("--months", type=int, default=12, help="months of history (default: %(default)s)")
    add("--seed", type=int, default=11, help="simulation and probe seed (default: %(default)s)")
    add("--rate", type=float, default=2000, help="events/s in the latency phase (default: %(default)s)")
    add(
        "--latency-seconds",
        type=float,
        default=20,
        help="length of the latency phase, 0 skips it (default: %(default)s)",
    )
    add(
        "--probe-every",
        type=int,
        default=10,
        help="every Nth latency event is a probe (default: %(default)s)",
    )
    add("--drain", type=float, default=15, help="seconds to wait for the last alerts (default: %(default)s)")
    add(
        "--timeout",
        type=float,
        default=900,
        help="give up on the worker after this long (default: %(default)s)",
    )
    add(
        "--stall",
        type=float,
        default=60,
        help="give up when its offsets stop moving this long (default: %(default)s)",
    )
    add(
        "--peers",
        default="quix,faust-batch,faust-event",
        help="comma-separated peers measured on the same history before the worker: "
        f"{', '.join(PEERS)}; '' for none (default: %(default)s; quix installs quixstreams "
        "into its own virtualenv under bench/out/ the first time)",
    )
    add(
        "--baseline-src",
        type=Path,
        help="also measure the worker of the healthstream source in this folder (another revision, "
        "e.g. `git worktree add bench/out/base main`), as row w. and the 'vs prev' columns",
    )
    add("--no-two", dest="two", action="store_false", help="skip the two-process row b2.")
    add(
        "--profile",
        action="store_true",
        help="py-spy profile of the one-process worker and of each of the two (collapsed stacks in "
        "bench/out/, summarised)",
    )
    add(
        "--native",
        action="store_true",
        help="with --profile: sample the C frames too (the compiled core's functions by name)",
    )
    add("--keep", action="store_true", help="keep the run's topics and worker data dir")
    add_json(parser)
    args = parser.parse_args(argv)
    args.peers = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = [name for name in args.peers if name not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    if args.rate <= 0 or args.probe_every < 1 or args.partitions < 1:
        parser.error("--rate, --probe-every and --partitions must be positive")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
