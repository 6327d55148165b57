"""`streamer view --port 0` listens on a port the system chooses: the banner names that port."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from streamer.cli import main
from streamer.view.cli import bound_port


def test_the_banner_names_the_port_the_system_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """It printed `on http://127.0.0.1:0/`, an address nothing can open."""

    def listens(app: web.Application, *, print: Callable[[str], None], **_: Any) -> None:
        print("======== Running on http://127.0.0.1:41234 ========\n(Press CTRL+C to quit)")  # aiohttp's

    monkeypatch.setattr(web, "run_app", listens)
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    result = CliRunner().invoke(main, ["view", "--port", "0"], env=clean)
    assert result.exit_code == 0, result.output
    assert " on http://127.0.0.1:41234/ (Redis " in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("message", "port"),
    [
        ("======== Running on http://[::1]:8123 ========\n(Press CTRL+C to quit)", 8123),
        ("======== Running on http://0.0.0.0:5, http://[::]:5 ========", 5),
        ("aiohttp's own banner", 8000),  # none named: the port asked for
    ],
)
def test_the_bound_port_is_read_from_aiohttps_line(message: str, port: int) -> None:
    assert bound_port(message, 8000) == port
