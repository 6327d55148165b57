"""A URL is shown with its password as ***, wherever redis-py would read one."""

from __future__ import annotations

import pytest

from streamer.redacted import without_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (
            "rediss://:s3cret@cache:6380/0?ssl_ca_certs=/ca.pem",
            "rediss://:***@cache:6380/0?ssl_ca_certs=/ca.pem",
        ),
        ("redis://ops:p%40ss@cache/1", "redis://ops:***@cache/1"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("redis://127.0.0.1:6379/0?password=s3cret", "redis://127.0.0.1:6379/0?password=***"),
        (
            "unix:///run/redis.sock?db=2&password=s3&cret=x&socket_timeout=5",
            "unix:///run/redis.sock?db=2&password=***&cret=x&socket_timeout=5",
        ),
        ("redis://:a@cache/0?password=b&flag", "redis://:***@cache/0?password=***&flag"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert without_password(url) == shown
