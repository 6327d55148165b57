"""CLI stub."""

import click


@click.command("schemas")
def schemas() -> None:
    """Not built yet."""
