"""Fixtures: a clean key prefix per test and a client of the suite's private Redis (`redis_server`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.fixtures import RedisServer


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client that answers in text (a test of bytes makes its own)."""
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    yield redis
    await redis.aclose()
