"""The outputs of `streamer offline`, written under temporary names in `--out` and renamed into
place together once the run is done: a run that failed or was stopped left its partial files
beside the previous run's (the alerts of one run, the accounts and portfolio of another)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import click

_HELD = {signal.SIGINT, signal.SIGTERM}  # wait while the outputs are renamed: all or none


class Staging:
    """A folder `.offline-out-*` in `out_dir` holding the new outputs (`path(name)`) until
    `commit` renames them into `out_dir`; leaving removes it, committed or not. Entering fails
    with one line when `out_dir` lets no file be made in it."""

    def __init__(self, out_dir: Path, names: Sequence[str]) -> None:
        self.out_dir = out_dir
        self.names = tuple(names)
        self._folder: Path | None = None  # made when entered
        self.committed = False

    def __enter__(self) -> Staging:
        try:
            self._folder = Path(tempfile.mkdtemp(prefix=".offline-out-", dir=self.out_dir))
        except OSError as exc:
            raise click.ClickException(
                f"cannot write in the folder {click.format_filename(self.out_dir)} "
                f"({exc.strerror or exc}): the outputs are written there under temporary names "
                "and renamed into place"
            ) from None
        return self

    def path(self, name: str) -> Path:
        """Where the output `name` is written until it is committed."""
        if self._folder is None:
            raise RuntimeError("Staging.path before entering")
        return self._folder / name

    def commit(self) -> None:
        """Rename every output into place, Ctrl-C and SIGTERM held back until all are."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        try:
            for name in self.names:
                os.replace(self.path(name), self.out_dir / name)
            self.committed = True
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
