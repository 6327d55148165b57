"""The `streamer` command line: one group, one subcommand module per job."""

from __future__ import annotations

import sys
from typing import Any

import click
from pydantic import ValidationError

from streamer import __version__

USAGE_ERROR = 2


class Commands(click.Group):
    """The group: a bad HEALTHSTREAM_* setting ends any command with one line and exit code 2."""

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


def _register() -> None:
    """Attach the subcommands; each lives next to the code it drives."""
    from streamer.backtest.cli import backtest
    from streamer.contract.cli import schemas
    from streamer.demo import demo
    from streamer.importer.cli import import_tables
    from streamer.local.cli import local
    from streamer.notify.cli import notify
    from streamer.offline.cli import offline
    from streamer.sim.cli import simulate
    from streamer.stream.cli import alerts, replay, worker
    from streamer.view.cli import view

    for command in (
        demo,
        schemas,
        local,
        offline,
        simulate,
        worker,
        replay,
        alerts,
        notify,
        view,
        backtest,
        import_tables,
    ):
        main.add_command(command)


_register()


if __name__ == "__main__":
    main()
