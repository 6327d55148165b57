"""CLI stub (being built)."""

import click


@click.command("view")
def view() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
