"""The Redis server of the local stack: loopback process with its own folder, and a PING probe."""

from __future__ import annotations

import os
from pathlib import Path

from streamer.local import proc
from streamer.local.settings import HOST, StackSettings
from streamer.local.tools import Echo, echo_stderr

MARKER = "redis-server"


def pid_path(settings: StackSettings) -> Path:
    return settings.redis_dir / "redis.pid"


def log_paths(settings: StackSettings) -> list[Path]:
    """Redis's own log file and the process's stdout/stderr."""
    return [settings.redis_dir / "redis.log", settings.redis_dir / "redis.out"]


def running_pid(settings: StackSettings) -> int | None:
    return proc.running_pid(pid_path(settings), MARKER)


def argv(settings: StackSettings, redis_server: str) -> list[str]:
    """redis-server in the foreground of its detached session: no persistence, loopback only."""
    return [
        redis_server,
        "--bind",
        HOST,
        "--port",
        str(settings.redis_port),
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--dir",
        str(settings.redis_dir / "data"),
        "--logfile",
        str(settings.redis_dir / "redis.log"),
        "--save",
        "",
        "--appendonly",
        "no",
    ]


def start(settings: StackSettings, redis_server: str, *, echo: Echo = echo_stderr) -> int:
    """Start redis-server detached (pid in redis.pid, log in redis.log)."""
    (settings.redis_dir / "data").mkdir(parents=True, exist_ok=True)
    pid = proc.spawn_detached(
        argv(settings, redis_server),
        cwd=settings.redis_dir,
        log_path=settings.redis_dir / "redis.out",
        pid_path=pid_path(settings),
        env=os.environ,
    )
    echo(f"started Redis on {HOST}:{settings.redis_port} (pid {pid})")
    return pid


def probe(url: str, timeout: float = 2.0) -> bool:
    """True when Redis at url answers PING."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
