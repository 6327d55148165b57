"""Optional parts of the package: their dependencies come with an extra (`pip install
'healthstream[backtest]'`), and a command that needs one says so in one line when it is missing.

The worker and the view need none of them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import click

MISSING_EXTRA = 1


@contextlib.contextmanager
def needs_extra(command: str, extra: str) -> Iterator[None]:
    """Import the optional modules of `command` inside this block."""
    try:
        yield
    except ModuleNotFoundError as error:
        click.echo(
            f"streamer {command}: needs the [{extra}] extra ({error.name} is not installed); "
            f"install it with: pip install 'healthstream[{extra}]'",
            err=True,
        )
        sys.exit(MISSING_EXTRA)
