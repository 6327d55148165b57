"""A value in Redis the view cannot read (anyone who may write Redis may have put it there) is a
503 naming the error, never a 500 with a traceback; `/healthz` and `/metrics` still answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from projection.scored import scored
from redis.asyncio import Redis

from streamer.projection.keys import Keys
from tests.fixtures import RedisServer
from tests.view.test_http import project, start


@pytest.fixture
async def view(redis_server: RedisServer, prefix: str) -> AsyncIterator[TestClient[Any, Any]]:
    await project(redis_server.url, prefix, scored())
    client = await start(redis_server.url, prefix)
    yield client
    await client.close()


async def plant(url: str, command: str, *args: str) -> None:
    redis = Redis.from_url(url)
    try:
        await redis.execute_command(command, *args)
    finally:
        await redis.aclose()


@pytest.mark.parametrize(
    ("command", "key", "rest", "routes"),
    [
        ("SADD", "partitions", ("abc",), ("/api/accounts", "/api/portfolio", "/api/months")),
        ("HSET", "summaries", (next(iter(scored().last)), "notjson"), ("/api/accounts",)),
    ],
)
async def test_a_value_the_view_cannot_read_is_a_503_naming_the_error(
    view: TestClient[Any, Any],
    redis_server: RedisServer,
    prefix: str,
    command: str,
    key: str,
    rest: tuple[str, ...],
    routes: tuple[str, ...],
) -> None:
    """`SADD <prefix>partitions abc` and `HSET <prefix>summaries acct-1 notjson` made these routes
    answer 500 and log a traceback, for as long as the value stayed."""
    await plant(redis_server.url, command, getattr(Keys(prefix), key), *rest)
    for route in routes:
        response = await view.get(route)
        body = await response.json()
        assert response.status == 503, (route, body)
        assert body["error"].startswith("the projection holds a value the view cannot read ("), body
    health = await view.get("/healthz")
    assert health.status in (200, 503)
    assert (await view.get("/metrics")).status == 200


async def test_a_key_of_another_type_is_a_503_saying_redis_refused_the_read(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    """A string planted where the list rows' hash belongs: Redis answers WRONGTYPE, which the
    view reported as "unreachable", sending whoever read it to look at the network."""
    await plant(redis_server.url, "DEL", Keys(prefix).summaries)
    await plant(redis_server.url, "SET", Keys(prefix).summaries, "planted")
    response = await view.get("/api/accounts")
    body = await response.json()
    assert response.status == 503, body
    assert body["error"].startswith("the projection store (Redis) refused the read: WRONGTYPE"), body
