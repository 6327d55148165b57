"""The `streamer` command line: one group, one subcommand module per job."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click
from pydantic import ValidationError

from streamer import __version__

USAGE_ERROR = 2


# Each subcommand lives next to the code it drives and is imported only when it runs (or for
# `--help`): a worker's start-up paid ~0.2 CPU s importing the backtest, the importer, the view
# and the demo it never uses.
SUBCOMMANDS = {
    "alerts": "streamer.stream.cli:alerts",
    "backtest": "streamer.backtest.cli:backtest",
    "demo": "streamer.demo:demo",
    "import": "streamer.importer.cli:import_tables",
    "local": "streamer.local.cli:local",
    "notify": "streamer.notify.cli:notify",
    "offline": "streamer.offline.cli:offline",
    "replay": "streamer.stream.cli:replay",
    "schemas": "streamer.contract.cli:schemas",
    "simulate": "streamer.sim.cli:simulate",
    "view": "streamer.view.cli:view",
    "worker": "streamer.stream.cli:worker",
}


class Commands(click.Group):
    """The group: subcommands imported on use (`SUBCOMMANDS`); a bad HEALTHSTREAM_* setting ends
    any command with one line and exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in SUBCOMMANDS:
            return found
        module, _, name = SUBCOMMANDS[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), name)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise RuntimeError(
                f"SUBCOMMANDS[{cmd_name!r}] names {command!r}: fix the table in streamer/cli.py"
            )
        self.add_command(command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from streamer.settings import settings_problem

        try:
            return super().invoke(ctx)
        except ValidationError as error:
            problem = settings_problem(error)
            if problem is None:
                raise
            click.echo(f"streamer: {problem}", err=True)
            sys.exit(USAGE_ERROR)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from streamer.native import running

    click.echo(f"streamer, version {__version__}\n{running()}")
    ctx.exit()


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and which scoring core runs (compiled or pure Python), and exit.",
)
def main() -> None:
    """healthstream: streaming customer-health scores, MRR and at-risk alerts.

    Events in (subscriptions, usage, tickets, surveys), per-account state, a health
    score and alerts out. Run `streamer COMMAND --help` for each command.
    """


if __name__ == "__main__":
    main()
