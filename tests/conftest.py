"""Suite-wide fixtures: one private Redis for the session (for the projection and view tests).

The suite does not read the developer's own runtime settings: the HEALTHSTREAM_* variables of
the shell that runs pytest (a session timeout, a topic prefix, a view token, ...) are removed for
the run, before any test module is imported (some build their settings at import), so a test
that expects a default gets it and a subprocess inherits none. Kept: the variables that say
where the local stack lives (its ports, folder and download cache), which the integration tests
start the stack with, and HEALTHSTREAM_PURE_CORE (which scoring core runs; the header says).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator, Mapping

import pytest

from streamer.local.settings import (
    ENV_CACHE_DIR,
    ENV_CONTROLLER_PORT,
    ENV_KAFKA_PORT,
    ENV_REDIS_PORT,
    ENV_STACK_DIR,
)
from streamer.native import ENV_PURE_CORE
from tests.fixtures import RedisServer

STACK_LOCATION = {ENV_KAFKA_PORT, ENV_CONTROLLER_PORT, ENV_REDIS_PORT, ENV_STACK_DIR, ENV_CACHE_DIR}
# Which scoring core runs (compiled or pure Python) changes no answer: `make test` sets it for
# its pure-Python pass, and the worker subprocesses of the integration tests inherit it.
KEPT = STACK_LOCATION | {ENV_PURE_CORE}


def developer_settings(environ: Mapping[str, str]) -> list[str]:
    """The HEALTHSTREAM_* variables of `environ` that change what the code does (not where the
    local stack lives)."""
    return sorted(name for name in environ if name.startswith("HEALTHSTREAM_") and name not in KEPT)


for _name in developer_settings(os.environ):
    del os.environ[_name]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, then the other integration tests, then the rest (stable otherwise):
    `make test` runs the suite in two processes (`pytest -n 2`), where a long test started last
    would run alone at the end while the other process has nothing left."""

    def order(item: pytest.Item) -> tuple[bool, bool]:
        return item.get_closest_marker("slow") is None, item.get_closest_marker("integration") is None

    items.sort(key=order)


def pytest_report_header() -> str:
    from streamer.native import running

    return running()  # "core: compiled (mypyc)" or "core: pure Python (why)"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of our own, started on first use and stopped at the end of the session;
    tests keep apart by key prefix (see the `prefix` fixtures)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    """`streamer offline` run in this process (through click's test runner) slows the garbage
    collector for the rest of the process (`streamer.collector`): undone after each test."""
    thresholds = gc.get_threshold()
    yield
    if gc.get_threshold() != thresholds or gc.get_freeze_count():
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _pytests(handler: logging.Handler) -> bool:
    return type(handler).__module__.startswith("_pytest")


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A command run in this process through click's test runner (`streamer view`, ...) sets up
    logging for the whole process (`streamer.logs.configure_logging`: the root's handlers and
    level, `mode.timers`, a filter on aiokafka's group coordinator): undone after each test, so
    what a later test's `caplog` sees does not depend on which test ran before it."""
    root = logging.getLogger()
    timers = logging.getLogger("mode.timers")
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    saved = (
        root.level,
        [h for h in root.handlers if not _pytests(h)],
        timers.level,
        list(coordinator.filters),
    )
    yield
    level, handlers, timers_level, filters = saved
    root.setLevel(level)
    root.handlers[:] = [h for h in root.handlers if _pytests(h)] + handlers  # pytest's own stay
    timers.setLevel(timers_level)
    coordinator.filters[:] = filters
