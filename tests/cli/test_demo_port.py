"""`streamer demo` refuses a dashboard port in use before it starts anything."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

import streamer.local.stack
from streamer.demo import demo


def test_a_dashboard_port_in_use_ends_the_demo_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The view's error went to .local/demo/view.log while the demo printed the address, which
    then served whatever else held the port."""

    def no_stack(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the demo started the stack before checking the dashboard's port")

    monkeypatch.setattr(streamer.local.stack, "ensure_up", no_stack)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = CliRunner().invoke(demo, ["--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"the dashboard cannot listen on port {port}: the port is in use" in result.output
    assert "Traceback" not in result.output
