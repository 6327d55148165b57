"""Reading CSV tables (gzip when named .gz): rows with their line numbers, bad rows with file:line."""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, cast

Progress = Callable[[str, int, float], None]
"""Called now and then with (file name, rows read, share of the file read 0..1)."""

PROGRESS_ROWS = 50_000


class BadRow(ValueError):
    """A row that cannot be imported: `file:line: what is wrong with which value`."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        super().__init__(f"{file}:{line}: {problem}")
        self.file, self.line, self.problem = file, line, problem


class TableError(ValueError):
    """A table that cannot be read at all (missing file, missing column)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV row: its values by the columns asked for, and where it came from."""

    file: str
    line: int
    values: tuple[str, ...]

    def bad(self, problem: str) -> BadRow:
        return BadRow(self.file, self.line, problem)


def _open_text(path: Path) -> tuple[IO[str], IO[bytes]]:
    """(text stream, raw byte stream whose position tells the progress)."""
    raw = path.open("rb")
    stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if path.name.endswith(".gz") else raw
    return io.TextIOWrapper(stream, encoding="utf-8", newline=""), raw


def read_rows(
    path: Path,
    columns: Sequence[str],
    progress: Progress | None = None,
    on_bad: Callable[[BadRow], None] | None = None,
) -> Iterator[Row]:
    """The values of `columns` of every data row of `path`, with 1-based line numbers (header = 1).

    Raises TableError when the file or a column is missing. A row with too few fields goes to
    `on_bad` (which raises it, or counts it and the reading goes on); raised when None.
    """
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    size = max(1, os.path.getsize(path))
    text, raw = _open_text(path)
    with text, raw:
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            raise TableError(f"{path}: empty file, expected a header row") from None
        except (UnicodeDecodeError, OSError, csv.Error) as exc:
            raise TableError(f"{path}: cannot read it as CSV: {exc}") from None
        missing = [column for column in columns if column not in header]
        if missing:
            raise TableError(
                f"{path.name}: no column {', '.join(map(repr, missing))} (columns: {', '.join(header)}); "
                "map the right one with --column or a mapping file"
            )
        indexes = [header.index(column) for column in columns]
        width = max(indexes) + 1
        name = path.name
        line = 1
        try:
            for line, fields in enumerate(reader, start=2):
                if len(fields) < width:
                    if not fields:
                        continue
                    short = BadRow(name, line, f"{len(fields)} fields, expected {len(header)}")
                    if on_bad is None:
                        raise short
                    on_bad(short)
                    continue
                yield Row(name, line, tuple(fields[i] for i in indexes))
                if progress is not None and (line - 1) % PROGRESS_ROWS == 0:
                    progress(name, line - 1, min(0.99, raw.tell() / size))  # 1.0: the end
        except (UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile) as exc:
            raise TableError(f"{name}:{line + 1}: cannot read further: {exc}") from None
        if progress is not None:
            progress(name, line - 1, 1.0)


# -- values ------------------------------------------------------------------------------------


def parse_day(row: Row, column: str, text: str) -> datetime:
    """A date (or a date and time, UTC when it has no zone) as an aware datetime."""
    try:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    except ValueError:
        pass
    return parse_time(row, column, text, what="a date")


def parse_time(row: Row, column: str, text: str, what: str = "a timestamp") -> datetime:
    """`YYYY-MM-DD HH:MM:SS` (UTC when without zone) or RFC 3339, as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise row.bad(f"{column} {text!r} is not {what} (expected YYYY-MM-DD[ HH:MM:SS], UTC)") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_amount(row: Row, column: str, text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise row.bad(f"{column} {text!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise row.bad(f"{column} {text!r} must be a number >= 0")
    return amount


def parse_count(row: Row, column: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        try:
            exact = Decimal(text)
        except InvalidOperation:
            exact = Decimal("NaN")
        if not exact.is_finite() or exact != exact.to_integral_value():
            raise row.bad(f"{column} {text!r} is not a whole number") from None
        value = int(exact)
    if value < minimum:
        raise row.bad(f"{column} {text!r} must be >= {minimum}")
    return value
