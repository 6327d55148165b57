"""CLI stub."""

import click


@click.command("simulate")
def simulate() -> None:
    """Not built yet."""
