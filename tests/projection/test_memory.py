"""Whether Redis can keep the projection: its eviction policy and memory limit, read from a real
redis-server, and the one-line problem an operator is told."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from streamer.projection.memory import MemoryWatch, StoreMemory, Trouble, read_memory
from tests.fixtures import RedisServer

MIB = 1 << 20


@pytest.mark.parametrize(
    ("policy", "limit", "used", "trouble"),
    [
        ("noeviction", 0, 900 * MIB, None),  # no limit: nothing is evicted or refused
        ("allkeys-lru", 0, 900 * MIB, None),
        ("allkeys-lru", 100 * MIB, 1 * MIB, Trouble.evicts),
        ("allkeys-lfu", 100 * MIB, 1 * MIB, Trouble.evicts),
        ("allkeys-random", 100 * MIB, 1 * MIB, Trouble.evicts),
        ("volatile-lru", 100 * MIB, 1 * MIB, None),  # evicts only keys with a TTL: not ours
        ("noeviction", 100 * MIB, 89 * MIB, None),
        ("noeviction", 100 * MIB, 90 * MIB, Trouble.nearly_full),
        ("volatile-ttl", 100 * MIB, 100 * MIB, Trouble.nearly_full),
    ],
)
def test_trouble_by_policy_and_use(policy: str, limit: int, used: int, trouble: Trouble | None) -> None:
    memory = StoreMemory(used=used, limit=limit, policy=policy, evicted_keys=0)
    assert memory.trouble is trouble
    assert (memory.problem() is None) is (trouble is None)


def test_problems_say_what_to_do() -> None:
    evicts = StoreMemory(used=MIB, limit=64 * MIB, policy="allkeys-lru", evicted_keys=3).problem()
    assert evicts == (
        "Redis evicts keys at its memory limit (maxmemory-policy allkeys-lru, maxmemory 64.0 MiB): "
        "projected accounts and alerts can disappear without a word; set maxmemory-policy to "
        "noeviction (or a volatile-* policy)"
    )
    full = StoreMemory(used=60 * MIB, limit=64 * MIB, policy="noeviction", evicted_keys=0).problem()
    assert full is not None and full.startswith("Redis uses 94% of its memory limit (60.0 MiB of 64.0 MiB)")
    assert full.endswith("raise maxmemory")


@pytest.fixture
async def own_redis(tmp_path: Any) -> AsyncIterator[Redis]:
    """A redis-server of the test's own: its settings are changed."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()
        server.stop()


async def test_read_from_a_real_redis(own_redis: Redis) -> None:
    found = await read_memory(own_redis)
    assert found.limit == 0 and found.policy == "noeviction" and found.used > 0 and found.trouble is None
    await own_redis.config_set("maxmemory", 512 * MIB)
    await own_redis.config_set("maxmemory-policy", "allkeys-lru")
    found = await read_memory(own_redis)
    assert (found.limit, found.policy, found.trouble) == (512 * MIB, "allkeys-lru", Trouble.evicts)


async def test_the_watch_logs_when_the_trouble_starts_and_ends_not_at_every_check(
    own_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamer.projection.memory")
    watch = MemoryWatch(own_redis)
    await watch.check()
    assert not caplog.records
    await own_redis.config_set("maxmemory", 512 * MIB)
    await own_redis.config_set("maxmemory-policy", "allkeys-lfu")
    for _ in range(3):
        await watch.check()
    [error] = caplog.records
    assert error.levelno == logging.ERROR
    assert error.getMessage() == "projection store cannot keep the projection"
    assert error.__dict__["trouble"] == "evicts" and "allkeys-lfu" in error.__dict__["problem"]
    await own_redis.config_set("maxmemory-policy", "noeviction")
    await watch.check()
    assert [record.getMessage() for record in caplog.records][1:] == ["projection store memory fine again"]


async def test_the_watch_never_raises_when_redis_is_away(tmp_path: Any) -> None:
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        await MemoryWatch(client).check()
    finally:
        await client.aclose()
