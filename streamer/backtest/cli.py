"""CLI stub (being built)."""

import click


@click.command("backtest")
def backtest() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
