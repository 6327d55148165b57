"""The `streamer` command line: one group, one subcommand module per job."""

from __future__ import annotations

import click

from streamer import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streamer")
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
        view,
        backtest,
        import_tables,
    ):
        main.add_command(command)


_register()


if __name__ == "__main__":
    main()
