"""CLI stub."""

import click


@click.command("local")
def local() -> None:
    """Not built yet."""
