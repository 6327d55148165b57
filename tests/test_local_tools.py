"""Installing a missing tool with apt-get: two installs at once wait for each other.

On a fresh machine the suite's two processes each install what their tests need (chromium, kcat)
and met on dpkg's lock: the second apt-get failed at once, and its tests with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.local.proc import Held, held_lock, is_alive
from streamer.local.tools import apt_install

LOCK = "/var/lib/dpkg/lock-frontend"


@contextlib.contextmanager
def dpkg_locked_for(seconds: float) -> Iterator[threading.Event]:
    """Hold dpkg's frontend lock (as an install does) for `seconds`, from another thread; the
    event is set once it is released."""
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.lockf(fd, fcntl.LOCK_EX)  # waits for an install already running
    released = threading.Event()

    def release() -> None:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)
        released.set()

    timer = threading.Timer(seconds, release)
    timer.start()
    try:
        yield released
    finally:
        timer.join()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None or not os.path.exists(LOCK),
    reason="needs root and Debian's apt-get",
)
def test_an_install_waits_for_a_running_one_instead_of_failing() -> None:
    said: list[str] = []
    with dpkg_locked_for(2.0) as released:
        apt_install("apt", echo=said.append)  # installed already: nothing is downloaded
        # Checked inside the lock's block: leaving it waits for the release whatever happened.
        assert released.is_set(), "apt_install returned while dpkg was still locked"
    assert not any("failed" in line for line in said), said  # it waited; no failure and retry


def test_a_held_lock_refuses_a_second_holder_with_the_first_ones_pid_and_frees_on_exit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "demo.lock"
    with held_lock(path), pytest.raises(Held, match=rf"^pid {os.getpid()}$"), held_lock(path):
        pass
    with held_lock(path):  # released at the end of the block
        pass


def test_a_held_lock_is_free_again_when_its_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    code = (
        "import pathlib, time; from streamer.local.proc import held_lock\n"
        f"with held_lock(pathlib.Path({str(path)!r})):\n"
        "    print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(Held, match=rf"^pid {holder.pid}$"), held_lock(path):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with held_lock(path):  # the kernel released it with the process; the pid in the file is stale
        pass


def test_a_held_lock_passed_to_a_child_outlives_its_killed_holder(tmp_path: Path) -> None:
    """The demo's worker and view inherit its lock: a demo killed by SIGKILL leaves them running,
    and a second demo must still be refused until they end."""
    path = tmp_path / "demo.lock"
    code = (
        "import os, pathlib, subprocess, time; from streamer.local.proc import held_lock\n"
        f"with held_lock(pathlib.Path({str(path)!r})) as lock:\n"
        "    child = subprocess.Popen(['sleep', '60'], pass_fds=(lock.fd,))\n"
        "    lock.name(os.getpid(), child.pid)\n"
        "    print(child.pid, flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    child = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait(timeout=30)
        with pytest.raises(Held, match=rf"^pids {holder.pid}, {child}$"), held_lock(path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 30  # bounds a hang only: the child is gone once reaped by init
    while True:
        try:
            with held_lock(path):
                break
        except Held:
            assert time.monotonic() < deadline, "the lock outlived the child"
            time.sleep(0.1)


def _main_thread_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_a_process_whose_main_thread_ended_is_alive_while_another_thread_runs(tmp_path: Path) -> None:
    """A process's main thread shows as a zombie once it has ended, while its other threads may still
    run and hold its files: the demo test took a worker for gone and found the demo's lock still
    held, and `streamer local down` could report a broker stopped with its threads still exiting."""
    path, release = tmp_path / "demo.lock", tmp_path / "release"
    code = (
        "import ctypes, pathlib, threading, time; from streamer.local.proc import held_lock\n"
        f"lock = held_lock(pathlib.Path({str(path)!r})); lock.__enter__()\n"
        "def hold():\n"
        "    deadline = time.monotonic() + 60  # bounds a hang only\n"
        f"    while not pathlib.Path({str(release)!r}).exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
        "threading.Thread(target=hold).start()\n"
        "ctypes.CDLL(None).pthread_exit(None)  # the main thread ends, the process runs on\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60  # bounds a hang only
        while _main_thread_state(holder.pid) != "Z":
            assert holder.poll() is None and time.monotonic() < deadline, "the main thread never ended"
            time.sleep(0.05)
        assert is_alive(holder.pid)
        with pytest.raises(Held), held_lock(path):  # its running thread holds the process's files
            pass
        release.touch()
        while is_alive(holder.pid):
            assert time.monotonic() < deadline, "the process never ended"
            time.sleep(0.05)
        with held_lock(path):  # gone: its lock is free
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
