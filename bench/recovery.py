"""Recovery through the real broker: a worker that lost its local store rebuilds its partitions.

Needs the local stack (`streamer local up`; the HEALTHSTREAM_* variables it prints). For the code
of this checkout, and of a baseline checkout (`--baseline DIR`), each with its own topics and
consumer group:

  1. `streamer replay` publishes the usage-light portfolio of `bench/wide_portfolio.py` (at
     `--rate` events/s: a live-like stream of small batches), and a
     worker scores it until every input offset is committed; then it stops (SIGTERM, so the
     group does not wait for its session timeout: that wait, 10 s on the local stack, comes on
     top after a SIGKILL);
  2. after `--settle` seconds (the broker's log cleaner runs every 15 s), the changelog records
     still on the broker are counted (what a recovery reads) against those written;
  3. a second worker starts with an empty data directory (the store lost) and the time and CPU
     seconds until it logged every partition engine ready are measured (faust reading the
     changelogs into its store, then our decode and rebuild), minus an idle worker's start-up
     measured the same way on empty topics.

    .venv/bin/python bench/recovery.py --accounts 10000 --months 1 [--baseline DIR]

With `--clone N` it measures recovery at a portfolio size no worker could score in the time
(100k accounts): for each checkout, in processes running that checkout's code (so each writes
and reads its own state format), `bench/wide_portfolio.py`'s measure step scores N usage-light
accounts, their final records are cloned to `--accounts` accounts and written `--history` times
each to a fresh accounts changelog (as a worker writes it over time), with the partition and
peer-reference records. Then:

  a. cold recovery: a worker with an empty data directory starts and restores every partition
     (time to every partition engine ready, minus an idle worker's start-up);
  b. failover: that worker is SIGKILLed (no goodbye to the group) and its store is lost; a new
     worker with an empty data directory starts at once. Time and CPU seconds from the kill until
     the new worker has every partition engine ready: the group waiting out the dead member's
     session timeout (HEALTHSTREAM_SESSION_TIMEOUT_S, 10 s on the local stack), the new
     worker's start-up and the changelog read, decode and rebuild.

    .venv/bin/python bench/recovery.py --clone 2000 --accounts 100000 --history 6 [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from common import (  # noqa: E402
    Row,
    add_baseline,
    add_json,
    add_portfolio,
    checkouts,
    cpu_seconds,
    parser,
    print_checkouts,
    print_table,
    rss,
    write_json,
)
from wide_portfolio import portfolio  # noqa: E402

PARTITIONS = 4
DEADLINE_S = 3600.0  # bounds a hang only
STOP_S = 600.0  # bounds a worker's stop after SIGTERM (then it is killed)
PROFILE = False  # --profile


class Deployment:
    """One copy of the system for one checkout: its own topics, consumer group and scratch folder."""

    def __init__(self, source: Path, scratch: Path) -> None:
        tag = uuid.uuid4().hex[:6]
        self.source, self.scratch = source, scratch
        scratch.mkdir()
        self.prefix, self.app_id = f"rb{tag}.", f"hs-rb-{tag}"
        self.env = dict(
            os.environ,
            PYTHONPATH=str(source),
            HEALTHSTREAM_TOPIC_PREFIX=self.prefix,
            HEALTHSTREAM_APP_ID=self.app_id,
            HEALTHSTREAM_PARTITIONS=str(PARTITIONS),
            HEALTHSTREAM_STORE="rocksdb://",
        )
        self.bootstrap = self.env.get("HEALTHSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")

    def command(self, *args: str, code: str = "from streamer.cli import main; main()") -> list[str]:
        """`python -c CODE ARGS` with this checkout's code. Run it with cwd=source: `python -c`
        puts the working directory first on sys.path, before PYTHONPATH, so from this checkout
        the baseline would import this checkout's code."""
        return [sys.executable, "-c", code, *args]

    def worker(self, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.scratch / f"{name}.log"
        env = dict(self.env, HEALTHSTREAM_DATA_DIR=str(self.scratch / f"{name}-data"))
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.command("worker"), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.source
            )
        return proc, log

    def replay(self, events: Path, rate: float | None) -> None:
        pace = ["--rate", str(rate)] if rate else []
        subprocess.run(
            self.command("replay", str(events), "--quiet", *pace), env=self.env, check=True, cwd=self.source
        )

    def create_topics(self) -> None:
        """The input, output and changelog topics, as the worker and `streamer replay` create them."""
        code = "import asyncio; from streamer.settings import Settings; " + (
            "from streamer.stream.topics import ensure_topics; asyncio.run(ensure_topics(Settings()))"
        )
        subprocess.run(self.command(code=code), env=self.env, check=True, cwd=self.source)

    def lag(self) -> int:
        return asyncio.run(_lag(self.bootstrap, self.app_id, self.prefix))

    def changelog_records(self) -> int:
        return asyncio.run(_count(self.bootstrap, f"{self.app_id}-accounts-changelog"))


async def _lag(bootstrap: str, group: str, prefix: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        tps = [
            TopicPartition(f"{prefix}{family}", p)
            for family in ("subscriptions", "usage", "tickets", "surveys")
            for p in range(PARTITIONS)
        ]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group)
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()


async def _count(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        count = 0

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            for batch in (await consumer.getmany(*tps, timeout_ms=1000, max_records=10_000)).values():
                count += len(batch)
        return count
    finally:
        await consumer.stop()


def wait(what: str, check: Any, deadline_s: float = DEADLINE_S, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every_s)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a worker and wait for it; on a loaded machine (load average 40 on 2 cores) a
    worker that just recovered 100k accounts took over 120 s to stop, which ended the whole run
    before it printed anything: wait up to STOP_S, then kill it."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        print(f"worker {proc.pid} still running {STOP_S:.0f} s after SIGTERM: killed", file=sys.stderr)
        proc.kill()
        proc.wait()


def ready_partitions(log: Path, after: int = 0) -> set[int]:
    """The partitions whose engine the worker logged ready (beyond byte `after` of its log)."""
    ready = set()
    with log.open("rb") as lines:
        lines.seek(after)
        text = lines.read().decode(errors="replace")
    for line in text.splitlines():
        if "partition engine ready" in line:
            try:
                ready.add(int(json.loads(line)["partition"]))
            except (ValueError, KeyError):
                continue
    return ready


def start_until_ready(
    deployment: Deployment, name: str, kill: bool = False, since: float | None = None
) -> dict[str, float]:
    """Start a worker on an empty data directory; seconds (from `since`, a `time.monotonic()`,
    else from its start) and CPU seconds until every partition engine is ready, and its RSS then.
    Then stop it (SIGTERM), or with `kill` SIGKILL it (the instant is returned as `killed_at`)."""
    started = time.monotonic() if since is None else since
    proc, log = deployment.worker(name)
    spy = None
    if PROFILE and name == "second":  # py-spy's collapsed stacks of the recovery, for a flame graph
        out = BENCH_DIR / "out" / f"recovery-{deployment.source.name}.txt"
        out.parent.mkdir(exist_ok=True)
        py_spy = Path(sys.executable).parent / "py-spy"
        spy = subprocess.Popen(
            [
                str(py_spy),
                "record",
                "--pid",
                str(proc.pid),
                "--format",
                "raw",
                "-o",
                str(out),
                "--rate",
                "50",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    figures: dict[str, float] = {}
    try:
        wait(f"{name} to open every partition ({log})", lambda: len(ready_partitions(log)) == PARTITIONS)
        figures = {"seconds": time.monotonic() - started, "cpu": cpu_seconds(proc.pid), "rss": rss(proc.pid)}
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        if kill and figures and proc.poll() is None:
            figures["killed_at"] = time.monotonic()
            proc.kill()
            proc.wait()
        else:
            stop(proc)
    return figures


def settled(pid: int, quiet_s: float = 6.0, cpu_share: float = 0.1) -> Callable[[], bool]:
    """A check that is true once process `pid` used under `cpu_share` of a core for `quiet_s`
    seconds in a row (a standby copy has caught up with its changelogs)."""
    history: list[tuple[float, float]] = []

    def check() -> bool:
        now, cpu = time.monotonic(), cpu_seconds(pid) or 0.0
        history.append((now, cpu))
        old = [(t, c) for t, c in history if now - t >= quiet_s]
        if not old:
            return False
        t, c = old[-1]
        return (cpu - c) / (now - t) < cpu_share

    return check


def standby_failover(deployment: Deployment) -> dict[str, float]:
    """With a standby replica: worker A holds every partition, worker B joins (half the
    partitions active, standby copies of A's); once B is idle, A is SIGKILLed. Seconds and B's CPU
    seconds from the kill until B logged every partition engine ready again."""
    a, a_log = deployment.worker("standby-a")
    b: subprocess.Popen[bytes] | None = None
    try:
        wait("A to open every partition", lambda: len(ready_partitions(a_log)) == PARTITIONS)
        b, b_log = deployment.worker("standby-b")
        wait("B to open its share", lambda: bool(ready_partitions(b_log)))
        wait("B's standby copies to catch up", settled(b.pid), every_s=1.0)
        mark = b_log.stat().st_size
        killed, cpu = time.monotonic(), cpu_seconds(b.pid) or 0.0
        a.kill()
        a.wait()
        wait("B to open every partition", lambda: len(ready_partitions(b_log, mark)) == PARTITIONS)
        return {"seconds": time.monotonic() - killed, "cpu": (cpu_seconds(b.pid) or 0.0) - cpu}
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        if b is not None:
            stop(b)


def measure_recovery(
    source: Path,
    accounts: int,
    settle_s: float,
    fill: Callable[[Deployment], dict[str, Any]],
    per_100k_seconds: bool = False,
    failover: bool = False,
    standby: bool = False,
) -> dict[str, Any]:
    """An idle worker's start-up on empty topics; then `fill` writes a changelog into a fresh
    deployment (and returns figures of its own), the log cleaner gets `settle_s`, the records
    still on the broker are counted and a worker with an empty data directory recovers them.
    Recovery is measured beyond the idle start-up."""
    with tempfile.TemporaryDirectory(prefix="hs-recovery-") as scratch:
        empty = start_until_ready(Deployment(source, Path(scratch) / "idle"), "idle")
        deployment = Deployment(source, Path(scratch) / "run")
        filled = fill(deployment)
        time.sleep(settle_s)
        records = deployment.changelog_records()
        recovered = start_until_ready(deployment, "second", kill=failover)
        if failover:
            failed_over = start_until_ready(deployment, "third", since=recovered["killed_at"])
        if standby:  # the same changelogs and group (the last worker left it), new data dirs
            deployment.env["HEALTHSTREAM_STANDBY_REPLICAS"] = "1"
            with_standby = standby_failover(deployment)
    seconds, cpu = recovered["seconds"] - empty["seconds"], recovered["cpu"] - empty["cpu"]
    figures = {
        "accounts": accounts,
        **filled,
        "changelog_records": records,
        "records_per_account": records / accounts,
        "idle_start_s": empty["seconds"],
        "idle_start_cpu": empty["cpu"],
        "recovery_s": seconds,
        "recovery_cpu": cpu,
        "recovery_cpu_per_100k": cpu * 100_000 / accounts,
    }
    if per_100k_seconds:
        figures["recovery_s_per_100k"] = seconds * 100_000 / accounts
    if failover:
        figures |= {
            "failover_s": failed_over["seconds"],
            "failover_cpu": failed_over["cpu"],
        }
    if standby:
        figures |= {
            "standby_failover_s": with_standby["seconds"],
            "standby_failover_cpu": with_standby["cpu"],
        }
    return figures | {"rss_per_account": (recovered["rss"] - empty["rss"]) / accounts}


def measure(source: Path, events: Path, accounts: int, settle_s: float, rate: float | None) -> dict[str, Any]:
    """Recovery after a worker scored `events` (published at `rate`) and stopped."""

    def score(deployment: Deployment) -> dict[str, Any]:
        first, _ = deployment.worker("first")
        started = time.monotonic()
        deployment.replay(events, rate)
        wait("the first worker to commit everything", lambda: deployment.lag() == 0, every_s=2.0)
        scored_s = time.monotonic() - started
        scored_cpu = cpu_seconds(first.pid)
        stop(first)
        return {"scored_s": scored_s, "scored_cpu": scored_cpu}

    return measure_recovery(source, accounts, settle_s, score)


def synthesize(records_path: Path, accounts: int, history: int, out: Path) -> None:
    """Changelog records for `accounts` accounts, each written `history` times (rounds over all
    accounts, the last one the final state), cloned from the final records `bench/wide_portfolio.py`
    wrote for fewer accounts (each clone gets an account id of its own). Runs in a process with
    the code of the checkout measured (see `clone_changelog`), so the records are in its own
    state format, as its workers would have written them."""
    from streamer.partitioning import partition_of
    from streamer.state import codec

    base: list[bytes] = []
    clocks: dict[int, tuple[bytes, bytes]] = {}
    with records_path.open("rb") as source:
        while header := source.read(20):
            partition, stream_time, next_tick = struct.unpack("<iqq", header)
            while True:
                key_length, length = struct.unpack("<HI", source.read(6))
                if not key_length:
                    break
                source.read(key_length)
                base.append(source.read(length))
            (length,) = struct.unpack("<I", source.read(4))
            peers = source.read(length)
            from streamer.core.engine import Clock
            from streamer.state.partition import PartitionRecord

            record = codec.encode_partition(PartitionRecord(Clock(stream_time, next_tick)))
            clocks[partition] = (record, peers)
    finals: list[tuple[int, bytes, bytes]] = []
    for index in range(accounts):
        account, offsets = codec.decode_account_record(base[index % len(base)])
        account.account_id = f"clone-{index:07d}"
        finals.append(
            (
                partition_of(account.account_id, PARTITIONS),
                json.dumps(account.account_id).encode(),
                codec.encode_account(account, offsets),
            )
        )
    with out.open("wb") as sink:
        for _ in range(history):
            for partition, key, value in finals:
                sink.write(struct.pack("<iHI", partition, len(key), len(value)) + key + value)
        for partition, (record, peers) in clocks.items():
            for key, value in ((f"clock-{partition}", record), (f"peers-{partition}", peers)):
                if value:
                    raw = json.dumps(key).encode()
                    sink.write(struct.pack("<iHI", -1 - partition, len(raw), len(value)) + raw + value)


async def _publish(bootstrap: str, app_id: str, path: Path) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, max_batch_size=1024 * 1024)
    await producer.start()
    count = 0
    try:
        with path.open("rb") as source:
            while header := source.read(10):
                partition, key_length, length = struct.unpack("<iHI", header)
                key, value = source.read(key_length), source.read(length)
                table, partition = ("accounts", partition) if partition >= 0 else ("clocks", -1 - partition)
                await producer.send(f"{app_id}-{table}-changelog", key=key, value=value, partition=partition)
                count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


def in_checkout(source: Path, *args: str) -> None:
    """This script (or `bench/wide_portfolio.py`) with the code of `source` (`PYTHONPATH`; a
    script's own folder, not the working directory, comes first on its `sys.path`)."""
    env = dict(os.environ, PYTHONPATH=str(source))
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{args[0]} {args[1]} with {source} failed:\n{done.stderr[-3000:]}")


def clone_changelog(source: Path, scored: int, accounts: int, history: int, seed: int, out: Path) -> None:
    """The changelog of `synthesize`, written by the code of `source`: `scored` accounts of the
    usage-light portfolio (1 month) scored with the worker's batches, then cloned."""
    events, _ = portfolio(scored, 1, seed)
    records = out.with_suffix(".records")
    in_checkout(source, str(BENCH_DIR / "wide_portfolio.py"), "--measure", str(events), str(records), "4000")
    in_checkout(source, __file__, "--synthesize", str(records), str(accounts), str(history), str(out))
    records.unlink()


def measure_changelog(
    source: Path, records: Path, accounts: int, settle_s: float, standby: bool = False
) -> dict[str, Any]:
    """Recovery from a changelog written as by a worker over time (see `synthesize`), then a
    failover after a SIGKILL."""

    def publish(deployment: Deployment) -> dict[str, Any]:
        deployment.create_topics()
        started = time.monotonic()
        written = asyncio.run(_publish(deployment.bootstrap, deployment.app_id, records))
        print(
            f"{source}: {written:,} changelog records in {time.monotonic() - started:.0f} s", file=sys.stderr
        )
        return {"changelog_written": written}

    return measure_recovery(
        source, accounts, settle_s, publish, per_100k_seconds=True, failover=True, standby=standby
    )


ROWS: tuple[Row, ...] = (
    ("first worker: seconds to score everything", "scored_s", "{:,.1f}"),
    ("first worker: CPU seconds", "scored_cpu", "{:,.1f}"),
    ("accounts changelog records on the broker", "changelog_records", "{:,}"),
    ("... per account", "records_per_account", "{:,.1f}"),
    ("idle worker start-up: seconds", "idle_start_s", "{:,.1f}"),
    ("idle worker start-up: CPU seconds", "idle_start_cpu", "{:,.1f}"),
    ("recovery: seconds (beyond an idle start)", "recovery_s", "{:,.1f}"),
    ("recovery: CPU seconds (beyond an idle start)", "recovery_cpu", "{:,.1f}"),
    ("recovery: CPU seconds per 100k accounts", "recovery_cpu_per_100k", "{:,.0f}"),
    ("recovered worker: RSS per account", "rss_per_account", "{:,.0f}"),
)

CHANGELOG_ROWS: tuple[Row, ...] = (
    ("accounts changelog records written", "changelog_written", "{:,}"),
    ("accounts changelog records on the broker", "changelog_records", "{:,}"),
    ("... per account", "records_per_account", "{:,.1f}"),
    ("idle worker start-up: seconds", "idle_start_s", "{:,.1f}"),
    ("idle worker start-up: CPU seconds", "idle_start_cpu", "{:,.1f}"),
    ("recovery: seconds (beyond an idle start)", "recovery_s", "{:,.1f}"),
    ("recovery: seconds per 100k accounts", "recovery_s_per_100k", "{:,.0f}"),
    ("recovery: CPU seconds (beyond an idle start)", "recovery_cpu", "{:,.1f}"),
    ("recovery: CPU seconds per 100k accounts", "recovery_cpu_per_100k", "{:,.0f}"),
    ("recovered worker: RSS per account", "rss_per_account", "{:,.0f}"),
    ("failover after SIGKILL: seconds to all ready", "failover_s", "{:,.1f}"),
    ("failover: CPU seconds of the new worker", "failover_cpu", "{:,.1f}"),
)

STANDBY_ROWS: tuple[Row, ...] = (
    ("with a standby replica: seconds to all ready", "standby_failover_s", "{:,.1f}"),
    ("with a standby replica: CPU seconds of B", "standby_failover_cpu", "{:,.1f}"),
)


def main() -> None:
    options = parser(__doc__)
    add_portfolio(options, accounts=2000, months=1, seed=11)
    options.add_argument("--settle", type=float, default=40.0, help="seconds for the log cleaner")
    add_baseline(options)
    add_json(options)
    options.add_argument(
        "--clone",
        type=int,
        metavar="N",
        help="instead of scoring the whole portfolio, score N accounts of it (1 month) and write a "
        "changelog as a worker would have over time: --accounts accounts cloned from those, each "
        "--history times, in each checkout's own state format; then a failover after a SIGKILL",
    )
    options.add_argument(
        "--standby",
        action="store_true",
        help="with --clone: then a failover with a standby replica (on the same changelogs, two "
        "workers with HEALTHSTREAM_STANDBY_REPLICAS=1 and empty data directories; the one that "
        "holds every partition is SIGKILLed once the other's standby copies caught up)",
    )
    options.add_argument("--synthesize", nargs=4, help=argparse.SUPPRESS)
    options.add_argument("--history", type=int, default=10, help="records per account (with --clone)")
    options.add_argument(
        "--rate",
        type=float,
        help="publish at this many events/s: a worker that keeps up writes small batches, so many "
        "changelog records per account (a live stream); without it, a backfill in large batches",
    )
    options.add_argument("--profile", action="store_true", help="py-spy the recovering worker (bench/out/)")
    args = options.parse_args()
    if args.synthesize:  # in a child with a checkout's code (see `clone_changelog`)
        records, accounts, history, out = args.synthesize
        synthesize(Path(records), int(accounts), int(history), Path(out))
        return
    global PROFILE
    PROFILE = args.profile
    sources = checkouts(args.baseline)
    if args.clone:
        results = {}
        with tempfile.TemporaryDirectory(prefix="hs-changelog-") as scratch:
            for name, source in sources.items():
                synthetic = Path(scratch) / f"changelog-{len(results)}.bin"
                clone_changelog(source, args.clone, args.accounts, args.history, args.seed, synthetic)
                results[name] = measure_changelog(source, synthetic, args.accounts, args.settle, args.standby)
                synthetic.unlink()
        print(
            f"recovery: {args.accounts:,} accounts cloned from {args.clone:,} scored usage-light accounts "
            f"(1 month, seed {args.seed}), {args.history} records each, {PARTITIONS} partitions"
        )
        report(results, args.baseline, CHANGELOG_ROWS + (STANDBY_ROWS if args.standby else ()))
        write_json(args.json, {"columns": results})
        return
    events, count = portfolio(args.accounts, args.months, args.seed)
    results = {
        name: measure(source, events, args.accounts, args.settle, args.rate)
        for name, source in sources.items()
    }
    print(f"recovery: {events.name}: {count:,} events, {args.accounts:,} accounts, {PARTITIONS} partitions")
    report(results, args.baseline, ROWS)
    write_json(args.json, {"columns": results})


def report(results: dict[str, dict[str, Any]], base: Path | None, rows: Iterable[Row]) -> None:
    print_checkouts(base)
    print_table(results, rows, label_width=46)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
