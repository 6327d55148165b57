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
from streamer.local.errors import MissingToolError, StackError
from streamer.local.settings import (
    ENV_CACHE_DIR,
    ENV_STACK_DIR,
    HOST,
    StackSettings,
    make_folder,
    refuse_character,
)
from streamer.local.tools import Echo, echo_stderr

POM = Path(__file__).with_name("pom.xml")
LOG4J = Path(__file__).with_name("log4j.properties")
MAIN_CLASS = "kafka.Kafka"
NODE_ID = 1
_MARKER = ".complete"

# The optional SASL_SSL listener (StackSettings.secure_port), for tests of secured clients: one
# user, known to both mechanisms, and a self-signed certificate for 127.0.0.1 that a client
# trusts through ca_path(). No authorizer: an authenticated client may do anything.
LOCAL_SASL_USER = "healthstream"
LOCAL_SASL_PASSWORD = "healthstream-local"
SECURE_LISTENER = "SASL_SSL"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256")
_KEYSTORE_PASSWORD = "healthstream-local-tls"
_KEY_ALIAS = "broker"
_PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"


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
    make_folder(target, ENV_CACHE_DIR)
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


def tls_dir(settings: StackSettings) -> Path:
    """The SASL_SSL listener's keystore and certificate (made once by prepare())."""
    return settings.kafka_dir / "tls"


def keystore_path(settings: StackSettings) -> Path:
    """The PKCS12 keystore with the SASL_SSL listener's key and self-signed certificate."""
    return tls_dir(settings) / "broker.p12"


def ca_path(settings: StackSettings) -> Path:
    """PEM of the SASL_SSL listener's self-signed certificate: the CA file its clients trust."""
    return tls_dir(settings) / "ca.pem"


def _secure_listener(settings: StackSettings) -> dict[str, str]:
    """TLS and SASL (PLAIN and SCRAM-SHA-256) of the SASL_SSL listener, scoped to it."""
    prefix = f"listener.name.{SECURE_LISTENER.lower()}."
    plain = f'{_PLAIN_LOGIN} required user_{LOCAL_SASL_USER}="{LOCAL_SASL_PASSWORD}";'
    return {
        f"{prefix}ssl.keystore.type": "PKCS12",
        f"{prefix}ssl.keystore.location": str(keystore_path(settings)),
        f"{prefix}ssl.keystore.password": _KEYSTORE_PASSWORD,
        f"{prefix}sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        f"{prefix}plain.sasl.jaas.config": plain,
        # SCRAM users live in the cluster metadata, added when the storage is formatted
        f"{prefix}scram-sha-256.sasl.jaas.config": f"{_SCRAM_LOGIN} required;",
    }


def server_properties(settings: StackSettings) -> str:
    """Single combined broker+controller KRaft node on loopback (PLAINTEXT between its roles),
    with a SASL_SSL listener for clients besides when `settings.secure_port` is set."""
    kafka, controller, secure = settings.kafka_port, settings.controller_port, settings.secure_port
    listeners = [f"PLAINTEXT://{HOST}:{kafka}", f"CONTROLLER://{HOST}:{controller}"]
    advertised = [f"PLAINTEXT://{HOST}:{kafka}"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if secure is not None:
        listeners.append(f"{SECURE_LISTENER}://{HOST}:{secure}")
        advertised.append(f"{SECURE_LISTENER}://{HOST}:{secure}")
        protocols.append(f"{SECURE_LISTENER}:{SECURE_LISTENER}")
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller}",
        "listeners": ",".join(listeners),
        "advertised.listeners": ",".join(advertised),
        "listener.security.protocol.map": ",".join(protocols),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": log_dirs(settings),
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
    if secure is not None:
        lines.update(_secure_listener(settings))
    header = "# written by `streamer local up` on every start; edit streamer/local/kafka.py\n"
    return header + "".join(f"{escaped(key, key=True)}={escaped(value)}\n" for key, value in lines.items())


def log_dirs(settings: StackSettings) -> str:
    """The broker's one data folder. log.dirs is a comma-separated list with no escape for a
    comma: a stack folder with one made Kafka take its tail as a relative folder and stop."""
    data = settings.kafka_dir / "data"
    refuse_character(data, f"{ENV_STACK_DIR} or --stack-dir", ",")
    return str(data)


# How a .properties file writes a character that is not printable ASCII, or a control one
_CONTROL = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}


def escaped(text: str, *, key: bool = False) -> str:
    """`text` written so that Java's Properties.load reads it back as it is. That reads the
    file as ISO-8859-1: a stack folder named café put Kafka's data in a sibling cafÃ© (and the
    next start found no storage in café and failed to format it again), so every character past
    printable ASCII is written as \\uXXXX (UTF-16 units). A backslash starts an escape, a line
    break ends the entry and leading blanks are dropped; in a key `=`, `:` and blanks end it and
    a `#` or `!` first makes the line a comment."""
    out: list[str] = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char in _CONTROL:
            out.append(_CONTROL[char])
        elif char == " " and (key or index == 0):
            out.append("\\ ")
        elif key and char in "=:#!":
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:
            units = char.encode("utf-16-be")
            out.extend(f"\\u{units[at] << 8 | units[at + 1]:04X}" for at in range(0, len(units), 2))
    return "".join(out)


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


def find_keytool(java: str) -> str:
    """keytool of the JDK that runs the broker (it sits next to java), else the one on PATH."""
    located = Path(shutil.which(java) or java)
    for folder in (located.resolve().parent, located.parent):
        candidate = folder / "keytool"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("keytool")
    if found is None:
        raise MissingToolError("keytool (part of the JDK) is needed for the SASL_SSL listener's certificate")
    return found


def _run_keytool(keytool: str, *args: str) -> None:
    result = subprocess.run(
        [keytool, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False
    )
    if result.returncode != 0:
        raise StackError(f"keytool {args[0]} failed:\n{(result.stdout + result.stderr).strip()}")


def ensure_tls(settings: StackSettings, java: str, *, echo: Echo = echo_stderr) -> Path:
    """Make the SASL_SSL listener's self-signed certificate (CN and SAN 127.0.0.1, SAN localhost)
    in a PKCS12 keystore, and the certificate as PEM for clients, once; return the PEM's path."""
    if keystore_path(settings).is_file() and ca_path(settings).is_file():
        return ca_path(settings)
    echo("making a self-signed certificate for the SASL_SSL listener (once) ...")
    keytool = find_keytool(java)
    partial = tls_dir(settings).with_name("tls.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    store = partial / keystore_path(settings).name
    common = ["-alias", _KEY_ALIAS, "-keystore", str(store), "-storetype", "PKCS12"]
    common += ["-storepass", _KEYSTORE_PASSWORD]
    key = ["-keyalg", "RSA", "-keysize", "2048", "-validity", "3650", "-dname", f"CN={HOST}"]
    _run_keytool(keytool, "-genkeypair", *common, *key, "-ext", f"SAN=ip:{HOST},dns:localhost")
    _run_keytool(keytool, "-exportcert", "-rfc", *common, "-file", str(partial / ca_path(settings).name))
    shutil.rmtree(tls_dir(settings), ignore_errors=True)
    partial.rename(tls_dir(settings))
    return ca_path(settings)


def _scram_users(settings: StackSettings) -> list[str]:
    """StorageTool arguments that add the SASL_SSL listener's SCRAM user to fresh storage."""
    if settings.secure_port is None:
        return []
    return ["--add-scram", f"SCRAM-SHA-256=[name={LOCAL_SASL_USER},password={LOCAL_SASL_PASSWORD}]"]


def prepare(settings: StackSettings, java: str, *, echo: Echo = echo_stderr) -> Path:
    """Write server.properties and format the KRaft storage on first use; return the config.

    With `settings.secure_port`, also the SASL_SSL listener's certificate (ensure_tls); its SCRAM
    user is created with the storage, so storage formatted without that port has only PLAIN."""
    for sub in ("", "logs", "data"):
        (settings.kafka_dir / sub).mkdir(parents=True, exist_ok=True)
    if settings.secure_port is not None:
        ensure_tls(settings, java, echo=echo)
    config = settings.kafka_dir / "server.properties"
    config.write_text(server_properties(settings))
    if not (settings.kafka_dir / "data" / "meta.properties").is_file():
        echo("formatting the KRaft storage (once) ...")
        argv = _java_argv(settings, java, "kafka.tools.StorageTool", "format", "-t", _cluster_id(settings))
        argv += ["-c", str(config), *_scram_users(settings)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
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
