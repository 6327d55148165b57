"""Installing a missing tool with apt-get: two installs at once wait for each other.

On a fresh machine the suite's two processes each install what their tests need (chromium, kcat)
and met on dpkg's lock: the second apt-get failed at once, and its tests with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import time
from collections.abc import Iterator

import pytest

from streamer.local.tools import apt_install

LOCK = "/var/lib/dpkg/lock-frontend"


@contextlib.contextmanager
def dpkg_locked_for(seconds: float) -> Iterator[None]:
    """Hold dpkg's frontend lock (as an install does) for `seconds`, from another thread."""
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.lockf(fd, fcntl.LOCK_EX)  # waits for an install already running
    release = threading.Timer(seconds, lambda: (fcntl.lockf(fd, fcntl.LOCK_UN), os.close(fd)))
    release.start()
    try:
        yield
    finally:
        release.join()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None or not os.path.exists(LOCK),
    reason="needs root and Debian's apt-get",
)
def test_an_install_waits_for_a_running_one_instead_of_failing() -> None:
    with dpkg_locked_for(2.0):
        started = time.monotonic()
        apt_install("apt", echo=lambda _: None)  # installed already: nothing is downloaded
    assert time.monotonic() - started >= 1.5  # it waited for the lock, then succeeded
