"""Test helpers shared across the suite: free ports, waiting on a condition, stopping a subprocess,
a headless Chromium's command line, a private redis-server, and the stream's test doubles (a
faust-like message and event, a sink, a consumer view, a journaled table) that the scorer and
checkpoint tests share.

Imported as `tests.fixtures` (the project root is on pytest's path).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from streamer.local.settings import StackSettings
from streamer.local.stack import ensure_up, stop
from streamer.local.tools import ensure_command
from streamer.stream.membership import Doubt


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on right now, sorted."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def wait_until(what: str, check: Callable[[], bool], deadline_s: float = 90.0, every: float = 0.2) -> None:
    """Poll `check` until it holds; the deadline only bounds a hang (it fails naming `what`)."""
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {deadline_s:.0f} s waiting for {what}"
        time.sleep(every)


async def wait_until_async(
    what: str, check: Callable[[], bool], deadline_s: float = 30.0, every: float = 0.01
) -> None:
    """`wait_until` inside an event loop: yields to it between polls, so background tasks run."""
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {deadline_s:.0f} s waiting for {what}"
        await asyncio.sleep(every)


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL when it has not exited within `grace_s`; returns once it is gone."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """`stop_process` for a process started with `start_new_session=True`, then every process
    left in its group: Chromium's helpers outlive the browser for a moment and kept writing to
    its profile while the test removed it ("Directory not empty: 'Default'")."""
    stop_process(proc, grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_chromium(argv: Sequence[str], timeout_s: float) -> tuple[int, bytes, bytes]:
    """Run a headless Chromium to its end: (exit code, stdout, stderr), with no helper left."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        stop_group(proc)
    return proc.returncode, out, err


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
)


def chromium_argv(binary: str, profile: Path, *options: str) -> list[str]:
    """A headless Chromium's command line for the browser tests: the flags they share, the
    profile folder `profile` (give each run a fresh one in a short path: Chromium's singleton
    socket must fit a Unix socket path, which pytest's tmp_path may not), then `options` (flags,
    then the URL)."""
    return [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *options]


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def isolated_stack(stack_dir: Path) -> Iterator[StackSettings]:
    """A local Kafka + Redis of its own (its own folder and free loopback ports, the session's
    cached Kafka jars) for a run that stops and starts the broker without touching anyone else's
    stack; stopped when the block ends."""
    shared = StackSettings.from_env()  # only for the jars already downloaded
    kafka_port, controller_port, redis_port = free_ports(3)
    settings = StackSettings.from_env(
        stack_dir=stack_dir,
        cache_dir=shared.cache_dir,
        kafka_port=kafka_port,
        controller_port=controller_port,
        redis_port=redis_port,
    )
    ensure_up(settings, echo=_quiet)
    try:
        yield settings
    finally:
        stop(settings, echo=_quiet)


class RedisServer:
    """A `redis-server` of our own on a free port, without persistence (like the local stack's),
    which a test may stop and start again: a restart starts empty."""

    def __init__(
        self, folder: Path, *, password: str | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        """`password`: clients must AUTH; `tls` (certificate, key PEM files): it takes only TLS
        clients, which trust that certificate (its URL is `rediss://`)."""
        self.folder = folder
        self.port = free_port()
        self.binary = shutil.which("redis-server") or ensure_command("redis-server", "redis-server")
        self.proc: subprocess.Popen[bytes] | None = None
        self.password = password
        self.tls = tls

    @property
    def url(self) -> str:
        auth = "" if self.password is None else f":{self.password}@"
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[0]}"

    def start(self) -> None:
        """Start it and return once it answers PING (10 s at most)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.tls is None:
            argv += ["--port", str(self.port)]
        else:
            certificate, key = (str(path) for path in self.tls)
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", certificate]
            argv += ["--tls-key-file", key, "--tls-ca-cert-file", certificate, "--tls-auth-clients", "no"]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        with (self.folder / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen([*argv, "--dir", str(self.folder)], stdout=log, stderr=log)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    assert self.proc.poll() is None, (self.folder / "redis.log").read_text()
                    assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


# -- the stream's test doubles -------------------------------------------------------------------

TP = tuple[str, int]


@dataclass
class Message:
    """A consumed Kafka message as faust hands it over (the fields the worker reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes = b""
    timestamp: float = 0.0
    generation_id: int | None = None
    follows: int | None = None  # the input lane's (`InputRecord.follows`)
    origin: bytes | None = None  # its origin header (a re-routed copy)


class FakeEvent:
    """A faust-like event: its message and how often it was acknowledged (weak-referenceable).

    Each ack is noted in `acks` as (topic, offset) and in `journal` as "ack topic@offset"."""

    def __init__(
        self, message: Message, acks: list[tuple[str, int]] | None = None, journal: list[str] | None = None
    ) -> None:
        self.message = message
        self.acked = 0
        self._acks = acks if acks is not None else []
        self._journal = journal if journal is not None else []

    def ack(self) -> None:
        self.acked += 1
        self._acks.append((self.message.topic, self.message.offset))
        self._journal.append(f"ack {self.message.topic}@{self.message.offset}")


class JournaledTable(dict[str, bytes]):
    """A table (a dict) that notes each write in a journal as "write key"."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self._journal = journal

    def __setitem__(self, key: str, value: bytes) -> None:
        self._journal.append(f"write {key}")
        super().__setitem__(key, value)


class JournaledChangelogs:
    """The tables' changelogs: each wait for the broker's acknowledgements is noted in the journal."""

    def __init__(self, journal: list[str]) -> None:
        self._journal = journal

    async def written(self) -> None:
        self._journal.append("changelog written")

    def forget(self) -> None:
        self._journal.append("changelog forgotten")


class FakeSink:
    """The worker's outputs as lists; each flush is counted and noted in the journal."""

    def __init__(self, journal: list[str] | None = None) -> None:
        self.journal = journal if journal is not None else []
        self.alerts: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any]] = []
        self.dead_letters: list[dict[str, Any]] = []
        self.reroutes: list[tuple[str, bytes, bytes, int]] = []
        self.origins: list[bytes] = []  # the origin header of each re-routed copy
        self.flushes = 0
        self._flushed = (0, 0, 0, 0)  # how many of each the last flush took (`discard`)

    def alert(self, alert: dict[str, Any]) -> None:
        self.alerts.append(alert)

    def snapshot(self, snapshot: dict[str, Any]) -> None:
        self.snapshots.append(snapshot)

    def dead_letter(self, record: dict[str, Any]) -> None:
        self.dead_letters.append(record)

    def reroute(self, topic: str, key: bytes, value: bytes, partition: int, origin: bytes) -> None:
        self.reroutes.append((topic, key, value, partition))
        self.origins.append(origin)

    async def flush(self) -> None:
        self.flushes += 1
        self.journal.append("flush")
        self._flushed = self._queued()

    async def discard(self) -> None:
        """The outputs since the last flush go, as the real sink's undelivered ones do."""
        alerts, snapshots, dead_letters, reroutes = self._flushed
        del self.alerts[alerts:], self.snapshots[snapshots:], self.dead_letters[dead_letters:]
        del self.reroutes[reroutes:], self.origins[reroutes:]
        self.journal.append("discard")

    def _queued(self) -> tuple[int, int, int, int]:
        return len(self.alerts), len(self.snapshots), len(self.dead_letters), len(self.reroutes)


class FakeOffsets:
    """The consumer's view, set by the test: owned partitions, fetcher highwaters (unset: None),
    broker end offsets (owned inputs start empty at 0; `open` adds records of transactions not yet
    committed to the log ends), restart offsets (unset: 0) and start
    offsets (unset: 0). Seeks and end-offset questions are recorded."""

    def __init__(self, owned: set[TP], generation: int | None) -> None:
        self.generation_id = generation
        self.rebalancing = False
        self.owned = set(owned)
        self.highwaters: dict[TP, int] = {}
        self.ends: dict[TP, int] = {tp: 0 for tp in self.owned}
        self.open: dict[TP, int] = {}  # records of transactions not yet committed, after `ends`
        self.restarts: dict[TP, int | None] = {}  # None: the broker could not be asked
        self.starts: dict[TP, int] = {}  # the broker's first offsets (unset: 0)
        self.seeks: list[tuple[str, int, int]] = []
        self.read: dict[TP, tuple[int, int]] = {}  # `read_position` (unset: unknown)
        self.empty: list[tuple[str, int, int, int]] = []  # acknowledged as empty
        self.end_offsets_calls = 0
        self.asked_ends: list[TP] = []
        self.asked_log_ends: list[TP] = []
        self.started_over: list[TP] = []  # `start_over`: the topic was created again
        self.commits: list[tuple[str, int, int]] = []  # `commit_start`: the group's offset set
        self.configured: list[str] = []  # `created_again`: topics given the input settings
        self.membership: Doubt | None = None  # `member_problem`: None while the lease holds

    def generation(self) -> int | None:
        return self.generation_id

    def settled(self) -> bool:
        return not self.rebalancing

    def member_problem(self) -> Doubt | None:
        return self.membership

    def assigned(self) -> set[TP]:
        return set(self.owned)

    def highwater(self, topic: str, partition: int) -> int | None:
        return self.highwaters.get((topic, partition))

    async def end_offsets(self, tps: Sequence[TP]) -> dict[TP, int]:
        self.end_offsets_calls += 1
        self.asked_ends += tps
        return {tp: self.ends[tp] for tp in tps if tp in self.ends}

    async def log_ends(self, tps: Sequence[TP]) -> dict[TP, int]:
        self.asked_log_ends += tps
        return {tp: self.ends[tp] + self.open.get(tp, 0) for tp in tps if tp in self.ends}

    async def restart_offsets(self, tps: Sequence[TP]) -> dict[TP, int]:
        found = {tp: self.restarts.get(tp, 0) for tp in tps}
        return {tp: offset for tp, offset in found.items() if offset is not None}

    async def start_offsets(self, tps: Sequence[TP]) -> dict[TP, int]:
        return {tp: self.starts.get(tp, 0) for tp in tps}

    async def created_again(self, topic: str) -> None:
        self.configured.append(topic)

    def start_over(self, topic: str, partition: int, start: int | None = None) -> None:
        self.started_over.append((topic, partition))

    async def commit_start(self, topic: str, partition: int, offset: int) -> None:
        self.commits.append((topic, partition, offset))

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self.seeks.append((topic, partition, offset))
        self.read.pop((topic, partition), None)

    def read_position(self, topic: str, partition: int) -> tuple[int, int] | None:
        return self.read.get((topic, partition))

    def acknowledge_passed(self, topic: str, partition: int, start: int, stop: int) -> None:
        self.empty.append((topic, partition, start, stop))


async def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's configs as the broker describes them (its overrides and defaults)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [(_, _, _, _, entries)] = response.resources
        return {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()


async def until_topic_configs(
    bootstrap: str, topic: str, applied: Callable[[dict[str, str]], bool], timeout: float = 60.0
) -> None:
    """Until the broker describes `topic` with configs for which `applied` holds: it takes an
    AlterConfigs on after answering it (seen under load: a record over the new limit was still
    taken). The timeout bounds a hang only."""
    deadline = time.monotonic() + timeout
    while not applied(await topic_configs(bootstrap, topic)):
        assert time.monotonic() < deadline, f"the broker did not take the new configs of {topic}"
        await asyncio.sleep(0.2)


# -- reading topics back -------------------------------------------------------------------------


async def topic_partitions(consumer: Any, topic: str) -> list[Any]:
    """The partitions of `topic` as a started aiokafka consumer sees them (waits a moment for
    the metadata of a fresh topic)."""
    from aiokafka import TopicPartition

    for _ in range(50):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise AssertionError(f"topic {topic} does not exist")


async def read_records(options: dict[str, Any], topic: str) -> list[Any]:
    """Every record of `topic`, from the beginning to its current end, read by a client with
    `options` (bootstrap_servers, and TLS/SASL on a secured listener)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA, two days) and its key, as PEM files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    certificate, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return certificate, key
