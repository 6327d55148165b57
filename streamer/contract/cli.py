"""`streamer schemas export|check`: keep `schemas/` equal to the pydantic models."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from streamer.contract.schemas import FILES, SCHEMA_DIR, differences, export


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
    stale = _stale_files(directory)
    problems = differences(directory) + stale
    if problems:
        raise click.ClickException("\n".join(problems) + f"\n{_advice(directory, bool(stale))}")
    click.echo(f"schemas in {directory} match the models")


def _stale_files(directory: Path) -> list[str]:
    """A JSON file in `directory` that no model writes (a schema of a record since removed or
    renamed): it passed the check, and consumers went on validating against it."""
    try:
        extra = sorted(path for path in directory.glob("*.json") if path.name not in FILES)
    except OSError as exc:
        return [f"{directory} cannot be listed ({exc.strerror or exc})"]
    return [f"{path} is stale: no model has this schema; remove it" for path in extra]


def _advice(directory: Path, stale: bool) -> str:
    """What to run, with the --dir the check was given (the folder export writes by default is
    another one); export leaves stale files where they are."""
    given = "" if directory == SCHEMA_DIR else f" --dir {shlex.quote(str(directory))}"
    remove = ", remove the stale files" if stale else ""
    return f"run `streamer schemas export{given}`{remove} and commit the result"
