"""Suite-wide fixtures: one private Redis for the session (for the projection and view tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of our own, started on first use and stopped at the end of the session;
    tests keep apart by key prefix (see the `prefix` fixtures)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
