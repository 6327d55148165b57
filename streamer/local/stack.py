"""The stack as a whole: ensure_up(), stop() and status() of the local Kafka broker and Redis."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from streamer.local import kafka, proc, tools
from streamer.local import redis as redis_service
from streamer.local.errors import StackError
from streamer.local.settings import (
    ENV_CONTROLLER_PORT,
    ENV_KAFKA_PORT,
    ENV_REDIS_PORT,
    ENV_STACK_DIR,
    HOST,
    StackSettings,
    make_folder,
)
from streamer.local.tools import Echo, Which, echo_stderr

SERVICES = ("kafka", "redis")
_LABELS = {"kafka": "Kafka", "redis": "Redis"}
_STATE_FILE = "stack.json"


LOCAL_SESSION_TIMEOUT_S = 10.0
LOCAL_HEARTBEAT_INTERVAL_S = 1.0


@dataclass(frozen=True)
class StackInfo:
    """A running stack: where to connect, its pids, and which services this call started."""

    bootstrap: str
    redis_url: str
    kafka_pid: int
    redis_pid: int
    stack_dir: Path
    started: tuple[str, ...] = ()

    def env(self) -> dict[str, str]:
        """The app's connection variables, e.g. for a subprocess running `streamer worker`.

        On the local single-broker stack a stopped worker's partitions move to the others after
        `LOCAL_SESSION_TIMEOUT_S` instead of faust's 60 s (the heartbeat follows)."""
        return {
            "HEALTHSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",  # whatever a shell set for a cluster
            "HEALTHSTREAM_REDIS_URL": self.redis_url,
            "HEALTHSTREAM_SESSION_TIMEOUT_S": f"{LOCAL_SESSION_TIMEOUT_S:g}",
            "HEALTHSTREAM_HEARTBEAT_INTERVAL_S": f"{LOCAL_HEARTBEAT_INTERVAL_S:g}",
        }


@dataclass(frozen=True)
class ServiceStatus:
    """One service: our process (pid when alive) and whether its address answers."""

    name: str
    address: str
    pid: int | None
    answering: bool
    logs: tuple[Path, ...]

    @property
    def up(self) -> bool:
        return self.pid is not None and self.answering

    @property
    def state(self) -> str:
        if self.up:
            return "up"
        if self.pid is not None:
            return "starting"  # or hung: alive but not answering
        return "port in use by another process" if self.answering else "down"


@dataclass(frozen=True)
class StackStatus:
    stack_dir: Path
    services: tuple[ServiceStatus, ...]

    @property
    def all_up(self) -> bool:
        return all(service.up for service in self.services)

    def __getitem__(self, name: str) -> ServiceStatus:
        return next(service for service in self.services if service.name == name)


def _settings(settings: StackSettings | None) -> StackSettings:
    return StackSettings.from_env() if settings is None else settings


def _state_path(settings: StackSettings) -> Path:
    return settings.stack_dir / _STATE_FILE


def _ports(settings: StackSettings) -> dict[str, int]:
    return {
        "kafka_port": settings.kafka_port,
        "controller_port": settings.controller_port,
        "redis_port": settings.redis_port,
    }


def _recorded(settings: StackSettings) -> StackSettings:
    """The settings with the ports the running stack was started with (from stack.json)."""
    try:
        ports = json.loads(_state_path(settings).read_text())
        return dataclasses.replace(
            settings,
            kafka_port=int(ports["kafka_port"]),
            controller_port=int(ports["controller_port"]),
            redis_port=int(ports["redis_port"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return settings


def _pids(settings: StackSettings) -> dict[str, int | None]:
    return {"kafka": kafka.running_pid(settings), "redis": redis_service.running_pid(settings)}


def _logs(settings: StackSettings, name: str) -> list[Path]:
    return kafka.log_paths(settings) if name == "kafka" else redis_service.log_paths(settings)


def _require_free(port: int, what: str, env_var: str) -> None:
    if proc.port_open(HOST, port):
        raise StackError(
            f"{HOST}:{port} ({what}) is already in use by a process this stack did not start "
            f"(another Kafka/Redis, the system redis-server service, docker compose?). "
            f"Stop it, or choose another port with {env_var}=<port>."
        )


def _wait_ready(
    settings: StackSettings,
    pids: dict[str, int],
    started: Iterable[str],
    timeout: float,
    echo: Echo,
) -> None:
    checks: dict[str, Callable[[], bool]] = {
        "kafka": lambda: kafka.probe(settings.bootstrap),
        "redis": lambda: redis_service.probe(settings.redis_url),
    }
    announce = set(started)
    if announce:
        names = " and ".join(_LABELS[name] for name in sorted(announce))
        echo(f"waiting for {names} to answer ...")
    begin = time.monotonic()
    pending = list(SERVICES)
    while pending:
        for name in list(pending):
            if not proc.is_alive(pids[name]):
                raise StackError(
                    f"{_LABELS[name]} (pid {pids[name]}) exited while starting.\n"
                    + proc.log_tails(_logs(settings, name))
                )
            if checks[name]():
                pending.remove(name)
                if name in announce:
                    echo(f"{_LABELS[name]} is ready ({time.monotonic() - begin:.1f}s)")
        if pending and time.monotonic() - begin > timeout:
            names = " and ".join(_LABELS[name] for name in pending)
            tails = "\n".join(proc.log_tails(_logs(settings, name)) for name in pending)
            raise StackError(f"{names} did not answer within {timeout:.0f}s.\n{tails}")
        if pending:
            time.sleep(0.25)


def ensure_up(
    settings: StackSettings | None = None,
    *,
    which: Which = shutil.which,
    echo: Echo = echo_stderr,
    timeout: float | None = None,
) -> StackInfo:
    """Start whatever of Kafka and Redis is not running and wait until both answer.

    Idempotent: a running stack is left alone (StackInfo.started is then empty). Raises
    MissingToolError when java (or mvn, before the first download) is missing, StackError when
    a service does not come up in time (with the tail of its log); services this call started
    are stopped again in that case.
    """
    settings = _settings(settings)
    needed = [tools.JAVA] if kafka.jars_ready(settings) else [tools.JAVA, tools.MAVEN]
    found = tools.require(needed, which=which)
    make_folder(settings.stack_dir, ENV_STACK_DIR)
    with proc.file_lock(settings.stack_dir / ".lock"):
        pids = _pids(settings)
        if any(pid is not None for pid in pids.values()):
            recorded = _recorded(settings)
            if _ports(recorded) != _ports(settings):
                raise StackError(
                    f"the stack in {settings.stack_dir} already runs with ports {_ports(recorded)}"
                    f", not {_ports(settings)}; run `streamer local down` first or use another "
                    "HEALTHSTREAM_STACK_DIR"
                )
        if pids["redis"] is None:
            redis_server = tools.ensure_command("redis-server", "redis-server", which=which, echo=echo)
            _require_free(settings.redis_port, "Redis", ENV_REDIS_PORT)
        if pids["kafka"] is None:
            kafka.ensure_jars(settings, found.get("mvn") or which("mvn"), echo=echo)
            _require_free(settings.kafka_port, "Kafka", ENV_KAFKA_PORT)
            _require_free(settings.controller_port, "Kafka controller", ENV_CONTROLLER_PORT)
            config = kafka.prepare(settings, found["java"], echo=echo)
        started: list[str] = []
        try:
            if pids["redis"] is None:
                pids["redis"] = redis_service.start(settings, redis_server, echo=echo)
                started.append("redis")
            if pids["kafka"] is None:
                pids["kafka"] = kafka.start(settings, found["java"], config, echo=echo)
                started.append("kafka")
            _state_path(settings).write_text(json.dumps(_ports(settings)) + "\n")
            running = {name: pid for name, pid in pids.items() if pid is not None}
            limit = settings.timeout if timeout is None else timeout
            _wait_ready(settings, running, started, limit, echo)
        except BaseException as error:
            for name in started:
                _stop_one(settings, name, timeout=10.0, echo=lambda _: None)
            if started and isinstance(error, StackError):
                names = ", ".join(_LABELS[name] for name in started)
                raise StackError(f"{error}\n(stopped {names} again)") from error
            raise
        return StackInfo(
            bootstrap=settings.bootstrap,
            redis_url=settings.redis_url,
            kafka_pid=running["kafka"],
            redis_pid=running["redis"],
            stack_dir=settings.stack_dir,
            started=tuple(started),
        )


def _pid_path(settings: StackSettings, name: str) -> Path:
    return kafka.pid_path(settings) if name == "kafka" else redis_service.pid_path(settings)


def _stop_one(settings: StackSettings, name: str, *, timeout: float, echo: Echo) -> bool:
    pid = _pids(settings)[name]
    if pid is None:
        _pid_path(settings, name).unlink(missing_ok=True)
        return False
    echo(f"stopping {_LABELS[name]} (pid {pid}) ...")
    begin = time.monotonic()
    graceful = proc.terminate(pid, timeout)
    how = "" if graceful else f", killed after {timeout:.0f}s"
    echo(f"stopped {_LABELS[name]} ({time.monotonic() - begin:.1f}s{how})")
    _pid_path(settings, name).unlink(missing_ok=True)
    return True


def stop(
    settings: StackSettings | None = None,
    *,
    services: Iterable[str] | None = None,
    echo: Echo = echo_stderr,
    timeout: float = 30.0,
) -> list[str]:
    """Stop the services (default: both; SIGTERM, then SIGKILL after timeout seconds).

    Idempotent; returns the names of the services that were running and are now stopped.
    """
    settings = _settings(settings)
    wanted = set(SERVICES if services is None else services)
    if unknown := wanted - set(SERVICES):
        raise StackError(f"unknown service(s) {sorted(unknown)}; known: {list(SERVICES)}")
    stopped: list[str] = []
    if not settings.stack_dir.is_dir():
        return stopped
    with proc.file_lock(settings.stack_dir / ".lock"):
        for name in SERVICES:  # Kafka first: clients of the stack lose the broker before Redis
            if name in wanted and _stop_one(settings, name, timeout=timeout, echo=echo):
                stopped.append(name)
        if all(pid is None for pid in _pids(settings).values()):
            _state_path(settings).unlink(missing_ok=True)
    return stopped


def status(settings: StackSettings | None = None) -> StackStatus:
    """Each service's pid (when our process is alive) and whether its address answers."""
    settings = _settings(settings)
    pids = _pids(settings)
    if any(pid is not None for pid in pids.values()):
        settings = _recorded(settings)
    return StackStatus(
        stack_dir=settings.stack_dir,
        services=(
            ServiceStatus(
                name="kafka",
                address=settings.bootstrap,
                pid=pids["kafka"],
                answering=kafka.probe(settings.bootstrap),
                logs=tuple(kafka.log_paths(settings)),
            ),
            ServiceStatus(
                name="redis",
                address=settings.redis_url,
                pid=pids["redis"],
                answering=redis_service.probe(settings.redis_url),
                logs=tuple(redis_service.log_paths(settings)),
            ),
        ),
    )
