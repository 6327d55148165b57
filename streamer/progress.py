"""Progress of a long command on stderr: a bar on a terminal, a line now and then in a log file."""

from __future__ import annotations

import sys
import time
from types import TracebackType

import click

REPORT_EVERY = 200_000  # items between progress lines when stderr is not a terminal


class Progress:
    """A progress bar on a terminal; elsewhere (a log file), a line every `REPORT_EVERY` items
    ("1,400,000 lines scored, 35% of the file, 42 s"). Nothing with `quiet`.

    `size` is what `position` counts up to (bytes of a file, or items); `done` names the items
    counted and `share` what the percentage is of.
    """

    def __init__(
        self, size: int, label: str, quiet: bool, done: str = "lines scored", share: str = "of the file"
    ) -> None:
        self.size = max(1, size)
        self.done, self.share = done, share
        self.lines_only = not quiet and not sys.stderr.isatty()
        self.bar = click.progressbar(
            length=size, label=label, file=sys.stderr, hidden=quiet, show_eta=True, show_pos=False
        )
        self.position = 0
        self.next_report = REPORT_EVERY
        self.started = time.perf_counter()

    def __enter__(self) -> Progress:
        self.bar.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.update(0, self.size)
        self.bar.__exit__(kind, exc, trace)

    def update(self, items: int, position: int, cpu: float | None = None) -> None:
        """`items` counted so far (0: unknown), `position` towards `size`, `cpu` seconds spent
        (all processes)."""
        if position > self.position:
            self.bar.update(position - self.position)
            self.position = position
        if self.lines_only and items >= self.next_report:
            elapsed = time.perf_counter() - self.started
            percent = 100 * self.position / self.size
            spent = f", {cpu:,.0f} CPU s" if cpu is not None else ""
            click.echo(
                f"  {items:,} {self.done}, {percent:.0f}% {self.share}, {elapsed:,.0f} s{spent}", err=True
            )
            self.next_report = (items // REPORT_EVERY + 1) * REPORT_EVERY
