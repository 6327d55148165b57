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


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_a_seed_the_simulation_cannot_take_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, seed: str
) -> None:
    """It started the stack and deleted the previous demo's topics, then failed with a traceback
    (`seed must be 0..2^64-1`)."""

    def no_stack(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the demo started the stack before checking --seed")

    monkeypatch.setattr(streamer.local.stack, "ensure_up", no_stack)
    result = CliRunner().invoke(demo, ["--seed", seed])
    assert result.exit_code == 2, result.output
    assert (
        f"Invalid value for '--seed': {seed} is not in the range 0<=x<=18446744073709551615" in result.output
    )


def test_a_view_port_of_0_is_refused_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system picks a port 0 listener's port: the demo printed `http://127.0.0.1:0/` while
    its view listened elsewhere (`--port` refuses 0 already)."""

    def no_stack(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the demo started the stack before checking the dashboard's port")

    monkeypatch.setattr(streamer.local.stack, "ensure_up", no_stack)
    monkeypatch.setenv("HEALTHSTREAM_VIEW_PORT", "0")
    result = CliRunner().invoke(demo, [])
    assert result.exit_code == 2, result.output
    assert "HEALTHSTREAM_VIEW_PORT=0: the demo's dashboard needs a port of its own" in result.output
