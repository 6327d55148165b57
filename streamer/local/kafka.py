"""The Kafka broker of the local stack: jars via Maven, KRaft config and storage, process, probe."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from streamer.local import proc
from streamer.local.errors import StackError
from streamer.local.settings import HOST, StackSettings
from streamer.local.tools import Echo, echo_stderr

POM = Path(__file__).with_name("pom.xml")
LOG4J = Path(__file__).with_name("log4j.properties")
MAIN_CLASS = "kafka.Kafka"
NODE_ID = 1
_MARKER = ".complete"


def version() -> str:
    """The Kafka version pinned in pom.xml (property kafka.version)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise StackError(f"{POM} has no <kafka.version> property")
    return (node.text or "").strip()


def home(settings: StackSettings) -> Path:
    """<cache>/kafka-VERSION: libs/ holds the jars, .complete marks a finished download."""
    return settings.cache_dir / f"kafka-{version()}"


def libs_dir(settings: StackSettings) -> Path:
    return home(settings) / "libs"


def jars_ready(settings: StackSettings) -> bool:
    return (home(settings) / _MARKER).is_file()


def ensure_jars(settings: StackSettings, mvn: str | None, *, echo: Echo = echo_stderr) -> Path:
    """Download the broker's jars with Maven into the cache once; return the libs folder."""
    libs = libs_dir(settings)
    if jars_ready(settings):
        return libs
    if mvn is None:
        raise StackError("mvn is needed to download the Kafka jars (apt-get install maven)")
    target = home(settings)
    target.mkdir(parents=True, exist_ok=True)
    with proc.file_lock(target.with_name(target.name + ".lock")):
        if jars_ready(settings):  # another process finished it while we waited
            return libs
        partial = target / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        pom = target / "pom.xml"  # run Maven on a copy so nothing is written into the package
        shutil.copyfile(POM, pom)
        echo(f"downloading the Kafka {version()} jars with Maven into {libs} (once, minutes) ...")
        started = time.monotonic()
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={partial}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        jars = sorted(partial.glob("*.jar"))
        if result.returncode != 0 or not jars:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
            raise StackError(f"Maven could not download the Kafka jars:\n{output}")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        (target / _MARKER).write_text("".join(f"{jar.name}\n" for jar in jars))
        echo(f"downloaded {len(jars)} jars in {time.monotonic() - started:.1f}s")
    return libs


def pid_path(settings: StackSettings) -> Path:
    return settings.kafka_dir / "kafka.pid"


def log_paths(settings: StackSettings) -> list[Path]:
    """The broker's log4j log and the JVM's own stdout/stderr."""
    return [settings.kafka_dir / "logs" / "server.log", settings.kafka_dir / "kafka.out"]


def running_pid(settings: StackSettings) -> int | None:
    return proc.running_pid(pid_path(settings), MAIN_CLASS)


def server_properties(settings: StackSettings) -> str:
    """Single combined broker+controller KRaft node on loopback."""
    kafka, controller = settings.kafka_port, settings.controller_port
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller}",
        "listeners": f"PLAINTEXT://{HOST}:{kafka},CONTROLLER://{HOST}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{kafka}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(settings.kafka_dir / "data"),
        "num.partitions": "4",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        # fewer internal partitions than the default 50: the first consumer group and the
        # first transaction start in a fraction of a second on a laptop
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "168",
        "log.segment.bytes": str(256 * 1024 * 1024),
    }
    header = "# written by `streamer local up` on every start; edit streamer/local/kafka.py\n"
    return header + "".join(f"{key}={value}\n" for key, value in lines.items())


def _cluster_id(settings: StackSettings) -> str:
    """Generated once per stack folder and kept in cluster.id (Kafka's base64url UUID form)."""
    path = settings.kafka_dir / "cluster.id"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            break
    path.write_text(cluster_id + "\n")
    return cluster_id


def _java_argv(settings: StackSettings, java: str, main: str, *args: str) -> list[str]:
    return [
        java,
        f"-Xmx{settings.kafka_heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-Djava.net.preferIPv4Stack=true",
        f"-Dkafka.logs.dir={settings.kafka_dir / 'logs'}",
        f"-Dlog4j.configuration=file:{LOG4J}",
        "-cp",
        f"{libs_dir(settings)}/*",
        main,
        *args,
    ]


def prepare(settings: StackSettings, java: str, *, echo: Echo = echo_stderr) -> Path:
    """Write server.properties and format the KRaft storage on first use; return the config."""
    for sub in ("", "logs", "data"):
        (settings.kafka_dir / sub).mkdir(parents=True, exist_ok=True)
    config = settings.kafka_dir / "server.properties"
    config.write_text(server_properties(settings))
    if not (settings.kafka_dir / "data" / "meta.properties").is_file():
        echo("formatting the KRaft storage (once) ...")
        argv = _java_argv(settings, java, "kafka.tools.StorageTool", "format", "-t", _cluster_id(settings))
        result = subprocess.run([*argv, "-c", str(config)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(
                f"formatting the Kafka storage failed:\n{(result.stdout + result.stderr).strip()}"
            )
    return config


def start(settings: StackSettings, java: str, config: Path, *, echo: Echo = echo_stderr) -> int:
    """Start the broker on a prepare()d config, detached (output to kafka.out, pid in kafka.pid)."""
    pid = proc.spawn_detached(
        _java_argv(settings, java, MAIN_CLASS, str(config)),
        cwd=settings.kafka_dir,
        log_path=settings.kafka_dir / "kafka.out",
        pid_path=pid_path(settings),
        env=os.environ,
    )
    echo(f"started Kafka {version()} on {settings.bootstrap} (pid {pid})")
    return pid


async def _metadata(bootstrap: str, timeout: float) -> bool:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout * 1000),
        connections_max_idle_ms=int(timeout * 1000) + 1000,
    )
    try:
        async with asyncio.timeout(timeout):
            await client.bootstrap()
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()


def probe(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request and lists at least one broker."""
    host, _, port = bootstrap.rpartition(":")
    if not proc.port_open(host, int(port), min(timeout, 1.0)):
        return False
    return _run(_metadata(bootstrap, timeout))


def _run(coro: Coroutine[Any, Any, bool]) -> bool:
    """asyncio.run, also from code already inside an event loop (then in a worker thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
