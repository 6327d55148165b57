"""The `streamer` command line: one group, one subcommand module per job."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click
from click.utils import make_default_short_help
from pydantic import ValidationError

from streamer import __version__
from streamer.foreign_env import SET_ASIDE, set_aside_warnings
from streamer.variables import unknown_variables

USAGE_ERROR = 2


# Each subcommand lives next to the code it drives and is imported only when it runs (or for
# `streamer COMMAND --help`): a worker's start-up paid ~0.2 CPU s importing the backtest, the
# importer, the view and the demo it never uses. Beside each, the first line of its help, which
# `streamer --help` lists without importing any of them (it imported all twelve modules: about
# 0.5 CPU s); tests/cli/test_lazy_commands.py checks the lines against the commands.
SUBCOMMANDS = {
    "alerts": ("streamer.stream.cli:alerts", "Watch the alerts topic."),
    "backtest": (
        "streamer.backtest.cli:backtest",
        "Replay EVENTS (JSON lines, optionally .gz) and report how well the health score predicted churn.",
    ),
    "demo": (
        "streamer.demo:demo",
        "Run the local stack, a worker, the dashboard and a simulated event stream; print alerts.",
    ),
    "import": (
        "streamer.importer.cli:import_tables",
        "Convert warehouse-style tables in FOLDER into contract events (sorted by event time).",
    ),
    "local": (
        "streamer.local.cli:local",
        "Run Kafka (single KRaft node) and Redis on 127.0.0.1 for development and tests.",
    ),
    "notify": ("streamer.notify.cli:notify", "Deliver alerts from the alerts topic to HTTP webhooks."),
    "offline": (
        "streamer.offline.cli:offline",
        "Score EVENTS (JSON lines, optionally .gz) through the same core as the stream agents.",
    ),
    "replay": (
        "streamer.stream.cli:replay",
        "Publish EVENTS (JSON lines, optionally .gz) to the input topics, keyed by account_id.",
    ),
    "schemas": ("streamer.contract.cli:schemas", "JSON Schema of the event contract and the output records."),
    "simulate": (
        "streamer.sim.cli:simulate",
        "Simulate a SaaS customer portfolio and write its contract events.",
    ),
    "view": (
        "streamer.view.cli:view",
        "Serve live state from the workers' Redis projection: JSON API, dashboard at /, /metrics.",
    ),
    "worker": (
        "streamer.stream.cli:worker",
        "Run a stream worker: score events from the input topics, publish snapshots and alerts.",
    ),
}


class Commands(click.Group):
    """The group: subcommands imported on use (`SUBCOMMANDS`); a bad HEALTHSTREAM_* setting ends
    any command with one line and exit code 2, and one that nothing reads (a misspelt name) is
    named in a warning."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in SUBCOMMANDS:
            return found
        module, _, name = SUBCOMMANDS[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module), name)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise RuntimeError(
                f"SUBCOMMANDS[{cmd_name!r}] names {command!r}: fix the table in streamer/cli.py"
            )
        self.add_command(command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing of the commands and their first help lines, from `SUBCOMMANDS` for
        those not imported yet (click's own imports every command to ask it)."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None and name in SUBCOMMANDS:
                summary = make_default_short_help(SUBCOMMANDS[name][1], limit).strip()
            else:
                command = command or self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                summary = command.get_short_help_str(limit)
            rows.append((name, summary))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        for warning in [*set_aside_warnings(SET_ASIDE), *unknown_variables(os.environ)]:
            click.echo(f"streamer: warning: {warning}", err=True)
        try:
            return super().invoke(ctx)
        except ValidationError as error:
            from streamer.settings import settings_problem  # pydantic-settings: ~0.2 CPU s to import

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
