"""Ports and folders of the local stack: CLI options, then HEALTHSTREAM_* env vars, defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streamer.local.errors import StackError

HOST = "127.0.0.1"

ENV_KAFKA_PORT = "HEALTHSTREAM_KAFKA_PORT"
ENV_CONTROLLER_PORT = "HEALTHSTREAM_KAFKA_CONTROLLER_PORT"
ENV_REDIS_PORT = "HEALTHSTREAM_REDIS_PORT"
ENV_STACK_DIR = "HEALTHSTREAM_STACK_DIR"
ENV_CACHE_DIR = "HEALTHSTREAM_CACHE_DIR"

DEFAULT_KAFKA_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_REDIS_PORT = 6379
DEFAULT_TIMEOUT = 120.0


def local_bootstrap(kafka_port: int) -> str:
    """Bootstrap address of the local stack's broker on `kafka_port`."""
    return f"{HOST}:{kafka_port}"


def local_redis_url(redis_port: int) -> str:
    """URL of the local stack's Redis (database 0) on `redis_port`."""
    return f"redis://{HOST}:{redis_port}/0"


def repo_root() -> Path | None:
    """The checkout this package runs from (editable install), or None when installed elsewhere."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / ".git").exists():
        return root
    return None


def _base_dir() -> Path:
    return repo_root() or Path.cwd()


def _port(value: int | None, environ: Mapping[str, str], name: str, default: int) -> int:
    if value is None:
        raw = environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise StackError(f"{name}={raw!r} is not a port number") from None
    if not 0 < value < 65536:
        raise StackError(f"port {value} ({name}) is outside 1-65535")
    return value


def _optional_port(value: int | None, name: str) -> int | None:
    """A port given only as an argument (no environment variable); None stays None."""
    if value is not None and not 0 < value < 65536:
        raise StackError(f"port {value} ({name}) is outside 1-65535")
    return value


def _dir(value: Path | str | None, environ: Mapping[str, str], name: str, default: Path) -> Path:
    given = "--" + name.removeprefix("HEALTHSTREAM_").lower().replace("_", "-")  # the option's name
    if value is None:
        value, given = environ.get(name, "").strip() or default, name
    path = Path(value).expanduser().resolve()
    refuse_character(path, given, UNHELD_BY[name])  # before anything is made or downloaded in it
    return _folder_or_fail(path, given)


# A character no escape lets each folder hold, and where it ends up: Kafka's log.dirs (inside
# the stack folder) is a comma-separated list, and the broker took the part after a comma as a
# relative folder and stopped with a stack dump; the broker's classpath is
# <cache>/kafka-VERSION/libs/*, and with a ':' in it the jars were downloaded, then the broker
# could not find its main class.
UNHELD = {
    ",": "a comma, which Kafka's log.dirs (a comma-separated list) cannot hold",
    os.pathsep: (
        f"a {os.pathsep!r}, which separates the entries of Java's classpath (the broker's jars are in it)"
    ),
}
UNHELD_BY = {ENV_STACK_DIR: ",", ENV_CACHE_DIR: os.pathsep}


def refuse_character(path: Path, given: str, character: str) -> None:
    """A one-line error naming where the folder was `given` when `path` has `character`, which
    the file it ends up in cannot hold (`UNHELD`)."""
    if character in str(path):
        raise StackError(f"{given}: {path} has {UNHELD[character]}: name a folder without one")


def _folder_or_fail(path: Path, given: str) -> Path:
    """`path`, when it is a folder or can be created as one; else a one-line error naming where
    it was `given` (the variable or the option): a file in its place, or in place of one of its
    parents, failed later in `mkdir` with a traceback."""
    for place in (path, *path.parents):
        try:
            if not place.exists():
                continue
            if place.is_dir():
                return path
        except OSError as error:  # a name too long, a folder that cannot be looked into
            raise StackError(f"{given}: cannot use the folder {path}: {error.strerror or error}") from None
        what = "is a file" if place == path else f"is inside {place}, which is a file"
        raise StackError(f"{given}: {path} {what}, not a folder: name a folder")
    return path


def make_folder(folder: Path, variable: str) -> None:
    """Create `folder` (and its parents); a StackError naming `variable`, which chose it, when it
    cannot be (no permission, a read-only file system): it was an OSError traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StackError(
            f"cannot create the folder {folder} ({variable}): {error.strerror or error}"
        ) from None


@dataclass(frozen=True)
class StackSettings:
    """Where the stack keeps its state and which loopback ports it listens on."""

    stack_dir: Path
    cache_dir: Path
    kafka_port: int = DEFAULT_KAFKA_PORT
    controller_port: int = DEFAULT_CONTROLLER_PORT
    redis_port: int = DEFAULT_REDIS_PORT
    kafka_heap: str = "512m"
    timeout: float = DEFAULT_TIMEOUT
    # A second broker listener, SASL_SSL, for tests of secured clients (streamer.local.kafka);
    # None, the default: the stack has only its PLAINTEXT listener
    secure_port: int | None = None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        stack_dir: Path | str | None = None,
        cache_dir: Path | str | None = None,
        kafka_port: int | None = None,
        controller_port: int | None = None,
        redis_port: int | None = None,
        timeout: float | None = None,
        secure_port: int | None = None,
    ) -> StackSettings:
        """Explicit arguments win over the HEALTHSTREAM_* variables, which win over defaults."""
        env = os.environ if environ is None else environ
        base = _base_dir()
        settings = cls(
            stack_dir=_dir(stack_dir, env, ENV_STACK_DIR, base / ".local" / "stack"),
            cache_dir=_dir(cache_dir, env, ENV_CACHE_DIR, base / ".cache"),
            kafka_port=_port(kafka_port, env, ENV_KAFKA_PORT, DEFAULT_KAFKA_PORT),
            controller_port=_port(controller_port, env, ENV_CONTROLLER_PORT, DEFAULT_CONTROLLER_PORT),
            redis_port=_port(redis_port, env, ENV_REDIS_PORT, DEFAULT_REDIS_PORT),
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            secure_port=_optional_port(secure_port, "secure_port"),
        )
        ports = (settings.kafka_port, settings.controller_port, settings.redis_port)
        if len(set(ports)) != len(ports):
            raise StackError(f"the Kafka, Kafka controller and Redis ports must differ: {ports}")
        if settings.secure_port in ports:
            raise StackError(
                f"the SASL_SSL port {settings.secure_port} must differ from the other ports {ports}"
            )
        return settings

    @property
    def bootstrap(self) -> str:
        return local_bootstrap(self.kafka_port)

    @property
    def secure_bootstrap(self) -> str | None:
        """Bootstrap address of the SASL_SSL listener, None when the stack has none."""
        return None if self.secure_port is None else local_bootstrap(self.secure_port)

    @property
    def redis_url(self) -> str:
        return local_redis_url(self.redis_port)

    @property
    def kafka_dir(self) -> Path:
        return self.stack_dir / "kafka"

    @property
    def redis_dir(self) -> Path:
        return self.stack_dir / "redis"
