"""Integration fixtures: `stack` brings the local Kafka broker and Redis up once per session;
`chromium` is the browser tests' headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from streamer.local.settings import StackSettings
from streamer.local.stack import StackInfo, ensure_up, stop
from streamer.local.tools import ensure_command


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """The running local stack (bootstrap, redis_url, ...), started through the same API as
    `streamer local up` and configured by the same HEALTHSTREAM_* variables.

    Services that were already running before the session are left running; the ones this
    session started are stopped at its end.
    """
    settings = StackSettings.from_env()
    info = ensure_up(settings)
    yield info
    if info.started:
        stop(settings, services=info.started)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary (installed on first use when the machine has none)."""
    return shutil.which("chromium") or ensure_command("chromium", "chromium")
