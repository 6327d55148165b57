"""The view across a restart of Redis: the connections it pooled before died with it, and a read
on one is tried once more on a new connection; a Redis that stays down is still reported at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from projection.scored import scored

from tests.fixtures import RedisServer
from tests.view.test_http import project, start

BURST = 10


@dataclass
class Restartable:
    server: RedisServer
    view: TestClient[Any, Any]
    prefix: str


@pytest.fixture
async def restartable(tmp_path: Path, prefix: str) -> AsyncIterator[Restartable]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    await project(server.url, prefix, scored())
    view = await start(server.url, prefix)
    try:
        yield Restartable(server, view, prefix)
    finally:
        await view.close()
        server.stop()


async def statuses(view: TestClient[Any, Any], path: str) -> list[int]:
    """The statuses of a burst of requests at once (each on its own pooled connection)."""

    async def one() -> int:
        response = await view.get(path)
        await response.read()
        return response.status

    return list(await asyncio.gather(*(one() for _ in range(BURST))))


async def test_after_a_restart_of_redis_the_pooled_connections_do_not_answer_503(
    restartable: Restartable,
) -> None:
    """Redis restarted while the view was idle: every pooled connection was dead, and each
    answered one 503 ("down" on /healthz) though Redis was up."""
    server, view = restartable.server, restartable.view
    assert await statuses(view, "/api/accounts?limit=5") == [200] * BURST  # fills the pool
    server.stop()
    server.start()  # empty: written again, as the workers re-stage
    await project(server.url, restartable.prefix, scored())
    assert await statuses(view, "/healthz") == [200] * BURST
    assert await statuses(view, "/api/accounts?limit=5") == [200] * BURST


async def test_a_redis_that_stays_down_is_reported_at_once(restartable: Restartable) -> None:
    server, view = restartable.server, restartable.view
    assert await statuses(view, "/healthz") == [200] * BURST
    server.stop()
    started = time.monotonic()
    assert await statuses(view, "/healthz") == [503] * BURST
    assert time.monotonic() - started < 2.0
