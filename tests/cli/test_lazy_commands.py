"""The command line imports a subcommand's module only when that subcommand runs."""

from __future__ import annotations

import importlib
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


SUBCOMMAND_MODULES = {target.partition(":")[0] for target, _ in SUBCOMMANDS.values()}


def test_the_command_list_imports_none_of_the_commands_modules() -> None:
    code = (
        "import sys\n"
        "from streamer.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "worker" in out and "Run a stream worker" in out
    loaded = set(out.rsplit("MODULES", 1)[1].split())
    assert not SUBCOMMAND_MODULES & loaded, f"`streamer --help` imports {sorted(SUBCOMMAND_MODULES & loaded)}"


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_command_list_is_clicks_own_listing_of_the_imported_commands(width: int) -> None:
    def listing(imported: bool) -> str:
        group = type(main)(name=main.name, help=main.help)
        for name, (target, _) in SUBCOMMANDS.items():
            if imported:
                module, _, attribute = target.partition(":")
                group.add_command(getattr(importlib.import_module(module), attribute), name)
        formatter = click.HelpFormatter(width=width)
        if imported:  # click's own listing: it asks every command
            click.Group.format_commands(group, click.Context(group), formatter)
        else:
            group.format_commands(click.Context(group), formatter)
        return formatter.getvalue()

    lazy = listing(imported=False)
    assert "worker" in lazy
    assert lazy == listing(imported=True)


def test_a_commands_help_imports_neither_the_settings_nor_faust() -> None:
    """`streamer worker --help` paid ~0.2 CPU s for pydantic-settings before any command ran."""
    code = (
        "import sys\n"
        "from streamer.cli import main\n"
        "try:\n"
        "    main(['worker', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = set(out.rsplit("MODULES", 1)[1].split())
    heavy = {
        "pydantic_settings",
        "streamer.settings",
        "faust",
        "streamer.core.config",
        "streamer.offline.runner",
    }
    assert not heavy & loaded, f"`streamer worker --help` imports {sorted(heavy & loaded)}"


def test_python_dash_m_streamer_is_the_streamer_command() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "streamer", "offline", "--help"], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("Usage: streamer offline [OPTIONS] EVENTS")
