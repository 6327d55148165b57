"""Fixtures: a clean key prefix per test (the private Redis is the suite's `redis_server`)."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"
