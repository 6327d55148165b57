"""`streamer view` start-up failures: one line, no traceback, and no "on http://..." banner, which
is printed only once the view listens."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from streamer.cli import main


def run(*args: str) -> Result:
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    return CliRunner().invoke(main, ["view", *args], env=clean)


def only_line(result: Result) -> str:
    assert "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "healthstream view of" not in result.output, result.output  # no banner: it never listened
    return result.stderr.strip().splitlines()[-1]


def test_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--host", "127.0.0.1", "--port", str(port))
    assert result.exit_code == 1, result.output
    assert only_line(result) == (
        f"Error: cannot listen on http://127.0.0.1:{port}/: the port is in use (another view?); "
        "choose --port / HEALTHSTREAM_VIEW_PORT"
    )


def test_a_host_that_is_no_address() -> None:
    result = run("--host", "999.1.1.1", "--port", "0")
    assert result.exit_code == 1, result.output
    line = only_line(result)
    assert line.startswith(
        "Error: cannot listen on http://999.1.1.1:0/: the host is not an address of this machine ("
    )
    assert line.endswith("); choose --host / HEALTHSTREAM_VIEW_HOST")


def test_a_redis_url_without_a_scheme_is_a_usage_error() -> None:
    result = run("--redis-url", "notaurl", "--port", "0")
    assert result.exit_code == 2, result.output
    line = only_line(result)
    assert line.startswith("Error: --redis-url 'notaurl' is not a Redis URL (Redis URL must specify")


def test_a_redis_url_option_redis_py_would_misread_is_refused_as_the_variable_is() -> None:
    """The option bypassed the variable's check: `redis:///0` went to localhost:6379."""
    result = run("--redis-url", "redis://:s3cret@/0", "--port", "0")
    assert result.exit_code == 2, result.output
    line = only_line(result)
    refused = "Error: --redis-url 'redis://:***@/0' is not a Redis URL (no host: give redis://HOST"
    assert line.startswith(refused), line


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("x..y", "label empty or too long"),
        ("x" * 64, "label too long"),
        ("a\x00b", "embedded null character"),
    ],
)
def test_a_host_that_is_no_host_name(host: str, why: str) -> None:
    """The idna codec refuses it before any socket (a UnicodeError, not an OSError): it was a
    traceback."""
    result = run("--host", host, "--port", "0")
    assert result.exit_code == 1, result.output
    assert only_line(result) == (
        f"Error: cannot listen on http://{host}:0/: the host is not an address of this machine "
        f"(not a host name: {why}); choose --host / HEALTHSTREAM_VIEW_HOST"
    )


@pytest.mark.parametrize(
    ("host", "shown"), [("::1", "[::1]"), ("[::1]", "[::1]"), ("127.0.0.1", "127.0.0.1")]
)
def test_an_ipv6_address_is_shown_in_brackets(monkeypatch: pytest.MonkeyPatch, host: str, shown: str) -> None:
    """In the banner and in the error, the view's address is a URL: http://[::1]:8123/."""
    listened: list[tuple[str, int]] = []

    def listens(
        app: web.Application, *, host: str, port: int, print: Callable[[str], None], **_: Any
    ) -> None:
        listened.append((host, port))
        print("aiohttp's own banner")

    monkeypatch.setattr(web, "run_app", listens)
    result = run("--host", host, "--port", "8123")
    assert result.exit_code == 0, result.output
    assert listened == [(host, 8123)]
    assert f" on http://{shown}:8123/ (Redis " in result.stderr

    def taken(app: web.Application, **_: Any) -> None:
        raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))

    monkeypatch.setattr(web, "run_app", taken)
    result = run("--host", host, "--port", "8123")
    assert only_line(result).startswith(f"Error: cannot listen on http://{shown}:8123/: the port is in use")
