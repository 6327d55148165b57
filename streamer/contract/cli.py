"""`streamer schemas export|check`: keep `schemas/` equal to the pydantic models."""

from __future__ import annotations

from pathlib import Path

import click

from streamer.contract.schemas import SCHEMA_DIR, differences, export


@click.group("schemas")
def schemas() -> None:
    """JSON Schema of the event contract and the output records."""


@schemas.command("export")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=SCHEMA_DIR,
    show_default=True,
    help="Where to write the schema files.",
)
def export_command(directory: Path) -> None:
    """Write one schema file per event family and output record."""
    try:
        written = export(directory)
    except OSError as exc:
        raise click.ClickException(
            f"cannot write the schemas to {directory}: {exc.strerror or exc}"
        ) from None
    for path in written:
        click.echo(f"wrote {path}")


@schemas.command("check")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=SCHEMA_DIR,
    show_default=True,
    help="Where the committed schema files are.",
)
def check_command(directory: Path) -> None:
    """Fail when the schema files and the models disagree (run `streamer schemas export`)."""
    if not directory.is_dir():  # not 7 "missing" files and advice to create them here
        raise click.ClickException(
            f"{directory}: no such folder; the schema files are in the repository's schemas/ "
            "(run this from the repository's root, or give --dir)"
        )
    problems = differences(directory)
    if problems:
        raise click.ClickException(
            "\n".join(problems) + "\nrun `streamer schemas export` and commit the result"
        )
    click.echo(f"schemas in {directory} match the models")
