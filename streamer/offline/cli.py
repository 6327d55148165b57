"""CLI stub."""

import click


@click.command("offline")
def offline() -> None:
    """Not built yet."""
