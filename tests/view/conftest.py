"""Fixtures: a private Redis for the session (shared with tests/projection's helper)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("view-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"view-{uuid.uuid4().hex[:10]}"
