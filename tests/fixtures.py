"""Test helpers shared across the suite: free ports, stopping a subprocess, a private redis-server.

Imported as `tests.fixtures` (the project root is on pytest's path).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from streamer.local.tools import ensure_command


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


class RedisServer:
    """A `redis-server` of our own on a free port, without persistence (like the local stack's),
    which a test may stop and start again: a restart starts empty."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.binary = shutil.which("redis-server") or ensure_command("redis-server", "redis-server")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and return once it answers PING (10 s at most)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
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
