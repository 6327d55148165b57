"""Detached background processes: start, pid files, liveness, stop, ports, log tails, locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from streamer.local.errors import StackError

# Runs in a throw-away interpreter: starts the real program in its own session with output to a
# log file, prints its pid and exits, so the program is re-parented to init and never becomes a
# zombie of (or dies with) the caller, be it the CLI or a pytest session.
_LAUNCHER = """\
import os, subprocess, sys
cwd, log = sys.argv[1], sys.argv[2]
with open(log, "ab", buffering=0) as out:
    child = subprocess.Popen(sys.argv[3:], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
sys.stdout.write(str(child.pid))
sys.stdout.flush()
os._exit(0)
"""


def spawn_detached(
    argv: Sequence[str], *, cwd: Path, log_path: Path, pid_path: Path, env: Mapping[str, str]
) -> int:
    """Start argv in the background (own session, stdout/err appended to log_path); return pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(cwd), str(log_path), *argv],
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=60,
        check=False,
    )
    if launched.returncode != 0 or not launched.stdout.strip().isdigit():
        raise StackError(f"could not start {argv[0]}:\n{launched.stderr.strip()}")
    pid = int(launched.stdout)
    pid_path.write_text(f"{pid}\n")
    return pid


def read_pid(pid_path: Path) -> int | None:
    try:
        return int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


def _thread_state(stat_path: str) -> str | None:
    try:
        stat = Path(stat_path).read_text()
    except OSError:  # that thread is gone
        return None
    return next(iter(stat.rsplit(")", 1)[-1].split()), None)


def _is_zombie(pid: int) -> bool:
    """Every thread of pid has ended and only its exit status waits to be reaped. A process's main
    thread shows as a zombie as soon as it has ended itself, while the process's other threads
    (a JVM's, a worker's) may still be exiting and holding its files, locks and ports."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:  # no /proc here, or pid has just gone: not a zombie
        return False
    return all(_thread_state(f"/proc/{pid}/task/{tid}/stat") in {"Z", "X", None} for tid in threads)


def is_alive(pid: int) -> bool:
    """True while pid exists and one of its threads has not ended (reaps it when it is our own
    child)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def running_pid(pid_path: Path, marker: str) -> int | None:
    """The pid in pid_path if that process is alive and (where /proc exists) its command
    line contains marker, so a recycled pid is not mistaken for the service."""
    pid = read_pid(pid_path)
    if pid is None or not is_alive(pid):
        return None
    cmdline = _cmdline(pid)
    if cmdline is not None and marker not in cmdline:
        return None
    return pid


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        # our services lead their own session: signal the whole group
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.1)
    return not is_alive(pid)


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to timeout, then SIGKILL. True when it exited on SIGTERM alone."""
    if not is_alive(pid):
        return True
    _signal(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return True
    _signal(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10):
        raise StackError(f"process {pid} survived SIGKILL")
    return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a text file, or '' when it does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def log_tails(paths: Sequence[Path], lines: int = 40) -> str:
    """Tails of the non-empty logs, each under a header with its path (for error messages)."""
    parts = [f"--- {path} ---\n{text}" for path in paths if (text := tail(path, lines))]
    return "\n".join(parts) if parts else "(no log output)"


class Held(Exception):
    """Another process holds a lock taken with `held_lock`; the message names the holders' pids."""


@contextlib.contextmanager
def held_lock(path: Path) -> Iterator[HeldLock]:
    """An exclusive advisory lock held for the block, or Held at once when another process has
    it. The kernel frees it when every process holding its descriptor has ended, even by
    SIGKILL, so a stale file never blocks; children given `HeldLock.fd` (`pass_fds`) hold it on
    while they live. The file names the holders' pids (`HeldLock.name`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pids = handle.read().split()
            named = pids and all(pid.isdigit() for pid in pids)
            raise Held(
                f"pid{'s' if len(pids) > 1 else ''} {', '.join(pids)}" if named else "a process"
            ) from None
        lock = HeldLock(handle)
        try:
            lock.name(os.getpid())
            yield lock
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


class HeldLock:
    """A lock `held_lock` holds: its descriptor, and the pids written in its file."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle
        self.fd = handle.fileno()

    def name(self, *pids: int) -> None:
        """Write these pids as the lock's holders (the first: the process that took it)."""
        self._handle.seek(0)
        self._handle.truncate(0)
        self._handle.write(" ".join(map(str, pids)))
        self._handle.flush()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two `up`/`down` runs on one folder do not interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
