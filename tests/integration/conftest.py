"""Integration fixtures: `stack` brings the local Kafka broker and Redis up once per run;
`chromium` is the browser tests' headless Chromium."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.local.proc import file_lock
from streamer.local.settings import StackSettings
from streamer.local.stack import StackInfo, ensure_up, stop
from streamer.local.tools import ensure_command


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[StackInfo]:
    """The running local stack (bootstrap, redis_url, ...), started through the same API as
    `streamer local up` and configured by the same HEALTHSTREAM_* variables.

    Services that were already running before the run are left running; the ones the run
    started are stopped at its end. Under `pytest -n N` each worker process has a session of its
    own: they share one stack, and the last of them to finish stops what any of them started.
    """
    settings = StackSettings.from_env()
    # The run's temporary folder: the workers' common parent under -n, the session's own without
    base = tmp_path_factory.getbasetemp()
    users = (base if worker_id == "master" else base.parent) / "stack-users.json"
    lock = users.with_suffix(".lock")
    with file_lock(lock):
        info = ensure_up(settings)
        count, started = _read_users(users)
        _write_users(users, count + 1, sorted({*started, *info.started}))
    yield info
    with file_lock(lock):
        count, started = _read_users(users)
        last = count == 1
        _write_users(users, count - 1, [] if last else started)
        if last and started:
            stop(settings, services=started)


def _read_users(path: Path) -> tuple[int, list[str]]:
    """How many worker processes use the stack now, and the services any of them started."""
    if not path.exists():
        return 0, []
    state = json.loads(path.read_text())
    return int(state["count"]), [str(name) for name in state["started"]]


def _write_users(path: Path, count: int, started: list[str]) -> None:
    path.write_text(json.dumps({"count": count, "started": started}))


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Chromium binary (installed on first use when the machine has none; one worker
    process of a `pytest -n N` run installs it while the others wait)."""
    with file_lock(tmp_path_factory.getbasetemp().parent / "chromium.lock"):
        return shutil.which("chromium") or ensure_command("chromium", "chromium")
