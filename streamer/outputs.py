"""Output paths a command checks before it works: none of them is one of its inputs, and each
can be written. Found out only when it writes, a bad output path cost a long run its results,
and an output naming the input replaced the input."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import click


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (the same resolved path, or one file by its inode)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):  # a symlink loop, a name too long: not shown to be the same
        return False


def _refuse_overwriting(outputs: Iterable[Path], inputs: Iterable[Path | None]) -> None:
    """A one-line error when an output would be written over an input."""
    sources = [path for path in inputs if path is not None]
    for output in outputs:
        for source in sources:
            if same_file(output, source):
                raise click.ClickException(
                    f"{click.format_filename(output)} is also an input ({click.format_filename(source)}): "
                    "writing it would replace what is read; choose another path"
                )


def _make_folder(folder: Path) -> None:
    """Create `folder` (and its parents); a one-line error when it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"cannot create the folder {click.format_filename(folder)}: {exc.strerror or exc}"
        ) from None


def _check_writable(path: Path) -> None:
    """A one-line error when `path` (a file, created if absent) cannot be written; nothing is
    left behind that was not there."""
    try:
        existed = path.exists()  # raises too: a name too long for the file system
        with path.open("ab"):
            pass
    except OSError as exc:
        raise click.ClickException(
            f"cannot write {click.format_filename(path)}: {exc.strerror or exc}"
        ) from None
    if not existed:
        path.unlink(missing_ok=True)


def prepare(outputs: Sequence[Path | None], inputs: Iterable[Path | None] = ()) -> None:
    """Before the work: refuse an output that is one of `inputs`, create each output's folder
    and try writing each output (None: an output not asked for)."""
    asked = [path for path in outputs if path is not None]
    _refuse_overwriting(asked, inputs)
    for path in asked:
        _make_folder(path.parent)
        _check_writable(path)
