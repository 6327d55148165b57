"""The command line imports a subcommand's module only when that subcommand runs."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from streamer.cli import SUBCOMMANDS, main


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_listed_subcommand_resolves_to_its_command(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_the_worker_command_imports_none_of_the_other_commands_modules() -> None:
    code = (
        "import sys\n"
        "import click\n"
        "from streamer.cli import main\n"
        "main.get_command(click.Context(main), 'worker')\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert "streamer.stream.cli" in loaded
    unused = {
        "streamer.backtest.cli",
        "streamer.importer.cli",
        "streamer.view.cli",
        "streamer.demo",
        "streamer.notify.cli",
    }
    assert not unused & loaded, f"the worker's start-up imports {sorted(unused & loaded)}"
