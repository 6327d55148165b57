"""Reading CSV tables (gzip when named .gz): rows with their line numbers, bad rows with file:line."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import stat
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, cast

Progress = Callable[[str, int, float], None]
"""Called now and then with (file name, rows read, share of the file read 0..1)."""

PROGRESS_ROWS = 50_000

# Characters in a physical line, and in a row that runs over several lines (a quoted newline),
# beyond which it is a bad row: a gzip of 2 MB holding one line of 2 GB was read whole (a
# MemoryError), as `streamer offline` caps its lines at 1 MiB.
MAX_LINE = 1 << 20


class BadRow(ValueError):
    """A row that cannot be imported: `file:line: what is wrong with which value`; `row`: its
    values as far as they could be read (None when the CSV reader refused the row); `named`:
    the rows it may hold, to tell which accounts it names (`row`, or one per physical line of a
    record the reader refused or that runs over several lines: a stray quote swallows rows)."""

    def __init__(
        self, file: str, line: int, problem: str, row: Row | None = None, named: tuple[Row, ...] = ()
    ) -> None:
        super().__init__(f"{file}:{line}: {problem}")
        self.file, self.line, self.problem, self.row = file, line, problem, row
        self.named = named or ((row,) if row is not None else ())


class TableError(ValueError):
    """A table that cannot be read at all (missing file, missing column)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV row: its values by the columns asked for, and where it came from."""

    file: str
    line: int
    values: tuple[str, ...]

    def bad(self, problem: str) -> BadRow:
        return BadRow(self.file, self.line, problem, self)


GZIP_MAGIC = b"\x1f\x8b"


def _rereadable(path: Path) -> bool:
    """Whether `path` can be read again to say more about an error: a regular file, not a pipe
    (read once: opening it again waits for another writer)."""
    return path.is_file()


def _starts_as_gzip(path: Path) -> bool:
    """Whether the file begins with gzip's signature (a .csv that is gzipped, or a .gz whose
    stream was read up to data after its end)."""
    if not _rereadable(path):
        return False
    try:
        with path.open("rb") as raw:
            return raw.read(2) == GZIP_MAGIC
    except OSError:
        return False


def _open_bytes(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(byte stream of the table, raw file whose position tells the progress)."""
    raw = path.open("rb")
    stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if path.name.endswith(".gz") else raw
    return stream, raw


def _open_text(path: Path) -> tuple[IO[str], IO[bytes]]:
    """(text stream, raw file); a byte order mark at the start is dropped (spreadsheets write one)."""
    stream, raw = _open_bytes(path)
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""), raw


def _first_line_not_utf8(path: Path) -> tuple[int, UnicodeDecodeError] | None:
    """The line holding the first byte that is not UTF-8, and the error there: the text stream
    decodes ahead of the CSV reader, so its error does not say which line. None, too, for a
    pipe, which cannot be read again."""
    if not _rereadable(path):
        return None
    stream, raw = _open_bytes(path)
    with stream, raw:
        number, decoder = 1, _utf8()
        for piece, end in _line_pieces(stream):
            try:
                decoder.decode(piece, final=end)
            except UnicodeDecodeError as exc:
                return number, exc
            if end:
                number, decoder = number + 1, _utf8()
    return None


def _utf8() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")()


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _line_pieces(stream: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """The bytes of `stream` in pieces of at most `MAX_LINE`, each with whether a line ends after
    it: at LF, CR LF or CR alone, the line ends the CSV reader's text stream counts (lines ended
    by CR alone were all line 1)."""
    after_cr = False
    while piece := stream.readline(MAX_LINE):  # a line of 2 GB was read whole
        if after_cr and piece.startswith(b"\n"):  # the end of a CR LF cut between two pieces
            piece = piece[1:]
        after_cr = piece.endswith(b"\r")
        *ended, rest = _LINE_END.split(piece)
        yield from ((line, True) for line in ended)
        if rest:
            yield rest, False


# What a table that cannot be read any further raises (gzip, zlib or the file itself).
READ_ERRORS = (EOFError, OSError, zlib.error)


def _read_problem(exc: Exception, path: Path) -> str:
    """Why a table cannot be read further, in the words `streamer offline` uses for events files
    (and, for a damaged gzip file, what is damaged)."""
    if isinstance(exc, EOFError):
        return "the gzip stream ends early (truncated file?)"
    message = str(exc)
    if isinstance(exc, gzip.BadGzipFile) and message.startswith("Not a gzipped file"):
        if _starts_as_gzip(path):  # a first stream was read: what follows it is no gzip stream
            return "the gzip file is damaged: data after the end of its gzip stream (trailing garbage)"
        return "not a gzip file (name it .csv, or gzip it)"
    if isinstance(exc, gzip.BadGzipFile) and message.startswith("CRC check failed"):
        return "the gzip file is damaged: its CRC check failed (the data is not what was compressed)"
    if isinstance(exc, gzip.BadGzipFile) and message.startswith("Incorrect length"):
        return "the gzip file is damaged: its length check failed (the data is not what was compressed)"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"the gzip file is damaged: {message}"
    if isinstance(exc, OSError):
        return exc.strerror or message
    return message


def _not_utf8(exc: UnicodeDecodeError) -> str:
    byte = exc.object[exc.start : exc.start + 1]
    return f"not UTF-8 ({exc.reason}: byte {byte!r} at column {exc.start + 1})"


def _not_utf8_further(path: Path, start: int, exc: UnicodeDecodeError) -> str:
    if not path.name.endswith(".gz") and _starts_as_gzip(path):
        return f"{path.name}: cannot read it as CSV: it looks gzipped (it starts as gzip does): name it .gz"
    found = _first_line_not_utf8(path)
    line, exc = found if found is not None else (start, exc)
    return f"{path.name}:{line}: cannot read further: {_not_utf8(exc)}"


def _header(reader: Iterator[list[str]], path: Path) -> list[str]:
    try:
        return next(reader)
    except (LineTooLong, RowTooLong):
        raise TableError(
            f"{path.name}:1: cannot read it as CSV: the header is longer than {MAX_LINE:,} characters "
            "(the importer's limit)"
        ) from None
    except StopIteration:
        raise TableError(f"{path}: empty file, expected a header row") from None
    except UnicodeDecodeError as exc:  # the text stream reads ahead: maybe a later line
        raise TableError(_not_utf8_further(path, 1, exc)) from None
    except (*READ_ERRORS, csv.Error) as exc:
        raise TableError(f"{path}: cannot read it as CSV: {_read_problem(exc, path)}") from None


def _csv_problem(exc: csv.Error) -> str:
    if "field limit" in str(exc):
        return f"a field is longer than {csv.field_size_limit():,} characters (the CSV reader's limit)"
    return f"not valid CSV: {exc}"


_QUOTES = re.compile('"+')


def _quote_opened(path: Path, start: int, end: int) -> int:
    """The line of the quoted field still open on line `end` in the record from line `start`:
    inside it every quote is doubled, so it opens at the last odd run of quotes before (`start`
    for a pipe, which cannot be read again)."""
    opened = start
    if not _rereadable(path):
        return opened
    text, raw = _open_text(path)
    with text, raw:
        for number, line in enumerate(_lines(text), start=1):
            if number > end:
                break
            if number >= start and '"' in line and any(len(run) % 2 for run in _QUOTES.findall(line)):
                opened = number
    return opened


def _lines(text: IO[str]) -> Iterator[str]:
    """The physical lines of `text`, a line over `MAX_LINE` characters as an empty one (it was
    a bad row of its own: no record that runs over lines holds one)."""
    while line := text.readline(MAX_LINE + 2):
        if _too_long(line):
            _drain(text, line)
            line = ""
        yield line


def _too_long(line: str) -> bool:
    """Whether `line` (read with a size of `MAX_LINE` + 2) holds more than `MAX_LINE` characters
    before its line end."""
    return len(line) > MAX_LINE and len(line.rstrip("\r\n")) > MAX_LINE


def _drain(text: IO[str], piece: str) -> None:
    """Read on to the end of the line of which `piece` is the start, in bounded pieces."""
    while piece and not piece.endswith(("\n", "\r")):
        piece = text.readline(MAX_LINE)


def _row_too_long(path: Path, start: int, end: int) -> str:
    """A record over lines past `MAX_LINE` characters: where the next one starts is lost."""
    return (
        f"{path.name}:{start}: a row runs over lines {start}-{end} (inside quoted fields) and past "
        f"{MAX_LINE:,} characters, the importer's limit: is a quote not closed? Close it or remove "
        "the stray '\"'"
    )


def _never_closed(path: Path, start: int, end: int, at_end: bool) -> str:
    """A quoted field that runs to the end of the file, or past the reader's limit over lines:
    what follows cannot be told from its text."""
    if at_end:
        opened = _quote_opened(path, start, end)
        how = "is never closed, so the rest of the file would be its text"
    else:
        opened = _quote_opened(path, start, end - 1)
        how = f"is not closed within the CSV reader's {csv.field_size_limit():,} characters (line {end})"
    fix = "close it or remove the stray '\"'"
    return f"{path.name}:{opened}: a quoted field opens on this line and {how}: {fix}"


def _spans(tap: _Tap, start: int) -> str:
    """For a bad record over several lines: where it ends (a stray quote swallows lines)."""
    end = tap.lines
    if end == start:
        return ""
    return f" (the row runs inside a quoted field to line {end}): lines {start}-{end} read as one row"


class LineTooLong(Exception):
    """A physical line over `MAX_LINE` characters (read to its end in bounded pieces and left
    out); `first`: it starts a record, so the next one starts after it; `head`: its fields up to
    the one the limit cut, each whole (the others empty), to tell which account it names."""

    def __init__(self, first: bool, head: str = "") -> None:
        super().__init__(f"a line of more than {MAX_LINE:,} characters")
        self.first = first
        self.head = head


class RowTooLong(Exception):
    """A record that runs over lines (in a quoted field) past `MAX_LINE` characters."""


class _Tap:
    """The lines of `text` for the CSV reader, each also kept in `kept` (which `record()` empties
    at each record): the physical lines of a record, to read the accounts of one the reader
    refuses. `lines`: the physical lines read, those left out too (the reader's `line_num`
    does not count a line refused here). A line or a record over `MAX_LINE` characters raises
    LineTooLong or RowTooLong, after which the tap goes on (a generator would have ended)."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text
        self.kept: list[str] = []
        self.lines = 0
        self.size = 0  # characters of the record being read

    def record(self) -> None:
        """A record starts."""
        self.kept.clear()
        self.size = 0

    def __iter__(self) -> _Tap:
        return self

    def __next__(self) -> str:
        line = self.text.readline(MAX_LINE + 2)
        if not line:
            raise StopIteration
        self.lines += 1
        if _too_long(line):
            _drain(self.text, line)
            whole = line.rsplit(",", 1)[0] if "," in line else ""  # the cut field left out
            raise LineTooLong(first=not self.kept, head=whole)
        self.size += len(line)
        if self.kept and self.size > MAX_LINE:  # a line on its own is bounded above
            raise RowTooLong()
        self.kept.append(line)
        return line


def _line_fields(line: str) -> list[str]:
    """One physical line's fields read on their own (leniently: a quote it opens ends with it)."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error:  # a field over the reader's limit
        return line.split(",")


def _line_rows(name: str, start: int, lines: list[str], indexes: list[int]) -> tuple[Row, ...]:
    """Each physical line of a bad record read as a row of its own, for the account it names."""
    rows = []
    for offset, line in enumerate(lines):
        fields = _line_fields(line)
        rows.append(Row(name, start + offset, tuple(_cell(fields, i) for i in indexes)))
    return tuple(rows)


def _cell(fields: list[str], index: int) -> str:
    """A value as the importer reads it: without the spaces around it (empty past the end)."""
    return fields[index].strip() if index < len(fields) else ""


def _records(reader: Any, path: Path, tap: _Tap) -> Iterator[tuple[int, list[str] | BadRow]]:
    """(physical line where the record starts, its fields), or a record the CSV reader refused
    (or a line over `MAX_LINE` characters) as a bad row; quoted newlines make a record span
    lines, which `tap.kept` holds until the next record is read. Raises TableError when the file
    cannot be read further, as when a quoted field is never closed (the rest of the file would
    be its text)."""
    while True:
        start = tap.lines + 1
        tap.record()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the size limit: the reader goes on after it
            at_end, end = "unexpected end of data" in str(exc), tap.lines
            if at_end or (end > start and "field limit" in str(exc)):  # where the next row starts is lost
                raise TableError(_never_closed(path, start, end, at_end)) from None
            yield start, BadRow(path.name, start, _csv_problem(exc) + _spans(tap, start))
            continue
        except LineTooLong as exc:  # the reader starts afresh on the next line
            if not exc.first:  # inside a quoted field: where the next row starts is lost
                raise TableError(_row_too_long(path, start, tap.lines)) from None
            tap.kept[:] = [exc.head]  # the accounts it may name: left out with it
            yield start, BadRow(path.name, start, f"{exc} (the importer's limit)")
            continue
        except RowTooLong:
            raise TableError(_row_too_long(path, start, tap.lines)) from None
        except UnicodeDecodeError as exc:
            raise TableError(_not_utf8_further(path, start, exc)) from None
        except READ_ERRORS as exc:
            problem = _read_problem(exc, path)
            raise TableError(f"{path.name}:{start}: cannot read further: {problem}") from None
        yield start, fields


def _shown(column: str) -> str:
    """A header column as an error shows it: as written when printable, else escaped (a header's
    terminal escape sequence once reached the terminal), and at most 60 characters."""
    shown = column if column.isprintable() else repr(column)
    return shown if len(shown) <= 60 else shown[:59] + "…"


SHOWN_COLUMNS = 20  # header columns an error names; the rest are counted


def _some(header: list[str]) -> str:
    """The first `SHOWN_COLUMNS` columns of a header as an error shows them, and how many more (a
    header of a million columns was printed whole, 8.9 MB on one line)."""
    shown = ", ".join(map(_shown, header[:SHOWN_COLUMNS]))
    more = len(header) - SHOWN_COLUMNS
    return shown + (f" and {more:,} more" if more > 0 else "")


def _missing_columns(path: Path, header: list[str], missing: list[str], keys: Mapping[str, str]) -> str:
    """What a table without the columns the mapping names is told, with the mapping keys that
    name them and, for a header that looks split by another separator, that one."""
    named = ", ".join(f"{column!r}" + (f" ({keys[column]})" if column in keys else "") for column in missing)
    problem = f"{path.name}: no column {named} (columns: {_some(header)}); "
    separator = next((s for s in (";", "\t", "|") if len(header) == 1 and s in header[0]), None)
    if separator is not None:
        return (
            problem + f"the header looks separated by {separator!r}: the tables must be comma-separated CSV"
        )
    return problem + "map the right one with --column or a mapping file"


def _named_twice(path: Path, written: list[str], header: list[str], twice: list[str]) -> str:
    """What a table whose header names a column the mapping reads more than once is told, with
    the names as written when they differ only by the spaces around them."""
    shown = ", ".join(map(repr, map(_shown, twice)))
    spelt = [
        [name for name, trimmed in zip(written, header, strict=True) if trimmed == column] for column in twice
    ]
    differ = [", ".join(map(repr, map(_shown, names))) for names in spelt if len(set(names)) > 1]
    also = f" (written {'; '.join(differ)}: the spaces around a name are not part of it)" if differ else ""
    return f"{path.name}: the header names {shown} more than once{also}; rename or remove all but one"


def read_rows(
    path: Path,
    columns: Sequence[str],
    progress: Progress | None = None,
    on_bad: Callable[[BadRow], None] | None = None,
    keys: Mapping[str, str] | None = None,
) -> Iterator[Row]:
    """The values of `columns` of every data row of `path` (without the spaces around them), with
    the 1-based physical line where each starts (header = 1).

    Raises TableError when the file or a column is missing (naming the mapping key of the column
    from `keys`), or the file cannot be read further. A row the CSV reader refuses, or with
    another number of fields than the header (an unquoted comma shifts every value after it),
    goes to `on_bad` (which raises it, or counts it and the reading goes on); raised when None.
    The error of a row with another number of fields carries the values at the header's
    positions (empty past its end), so a caller can tell which account it names; the error of a
    row the reader refuses, or of one over several lines, each of its lines read so (`named`).
    Raises TableError, too, for a folder or a file that cannot be opened.
    """
    size = _readable(path)  # None: a pipe, of unknown size
    try:
        text, raw = _open_text(path)
    except OSError as exc:  # no permission, and the like
        raise TableError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    tap = _Tap(text)  # its `kept`: the physical lines of the record being read
    kept = tap.kept
    with text, raw:
        reader = csv.reader(tap, strict=True)  # strict: a quote never closed is an error
        written = _header(reader, path)
        header = [column.strip() for column in written]  # as the values are: `mrr ` is `mrr`
        missing = [column for column in columns if column not in header]
        if missing:
            raise TableError(_missing_columns(path, header, missing, keys or {}))
        twice = sorted({column for column in columns if header.count(column) > 1})
        if twice:  # which of the two is meant cannot be told: the first was read, silently
            raise TableError(_named_twice(path, written, header, twice))
        indexes = [header.index(column) for column in columns]
        width = len(header)
        name = path.name
        rows = 0
        for line, fields in _records(reader, path, tap):
            error: BadRow | None = None
            if isinstance(fields, BadRow):  # each of its lines as a row: the accounts it may hold
                error = BadRow(name, line, fields.problem, named=_line_rows(name, line, kept, indexes))
            elif not fields:
                continue  # a blank line
            elif len(fields) != width:  # its values as read, for the account it names
                counted = f"{len(fields)} field{'' if len(fields) == 1 else 's'}"
                problem = f"{counted}, expected {width} as in the header" + _spans(tap, line)
                row = Row(name, line, tuple(_cell(fields, i) for i in indexes))
                named = _line_rows(name, line, kept, indexes) if len(kept) > 1 else (row,)
                error = BadRow(name, line, problem, row, named)
            rows += 1
            if error is not None:
                if on_bad is None:
                    raise error
                on_bad(error)
                continue
            assert not isinstance(fields, BadRow)
            yield Row(name, line, tuple([fields[i].strip() for i in indexes]))
            if progress is not None and rows % PROGRESS_ROWS == 0:
                share = min(0.99, raw.tell() / size) if size is not None else 0.0  # 1.0: the end
                progress(name, rows, share)
        if progress is not None:
            progress(name, rows, 1.0)


def _readable(path: Path) -> int | None:
    """The size of file `path` (at least 1), None for a pipe (a FIFO, a character device: read
    as a stream), or a TableError saying that it is missing (and where a copy is), a folder or
    another kind of file (a socket)."""
    if path.is_dir():
        raise TableError(f"{path}: is a folder, not a file")
    try:
        status = path.stat()
    except OSError:
        status = None
    if status is None or not (stat.S_ISREG(status.st_mode) or _streamed(status.st_mode)):
        if status is not None:
            kind = "a socket" if stat.S_ISSOCK(status.st_mode) else "a block device"
            raise TableError(f"{path}: is {kind}, not a file (a table is a file, or a pipe that writes one)")
        others = (path.with_name(path.name + ".gz"), path.with_suffix(""))
        near = [other.name for other in others if other != path and other.is_file()]
        hint = f" (but {near[0]} is there: name it in the mapping or with --column)" if near else ""
        raise TableError(f"{path}: no such file{hint}")
    return None if _streamed(status.st_mode) else max(1, status.st_size)


def _streamed(mode: int) -> bool:
    """A pipe (a FIFO or a character device such as /dev/stdin): read once, as it comes."""
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


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
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise row.bad(f"{column} {text!r} is out of range: in UTC it is outside years 1..9999") from None


# Numbers are checked for size before they are converted: a long text or a huge exponent would
# otherwise take minutes (or all memory) to turn into an int or a plain decimal. The bounds are
# wider than any value the contract takes, so within them its own reason is the one reported.
MAX_NUMBER_TEXT = 40  # characters
MAX_DIGITS = 18  # digits before or after the decimal point


def _decimal(row: Row, column: str, text: str) -> Decimal:
    """`text` as a decimal of bounded size, or a bad row; NaN and infinities pass (the callers say)."""
    if len(text) > MAX_NUMBER_TEXT:
        raise row.bad(f"{column} {text[:20]!r}... ({len(text):,} characters) is not a number")
    if not text.isascii() or "_" in text:  # Decimal reads "1_000" and other scripts' digits
        raise row.bad(f"{column} {text!r} is not a number (write digits 0-9, e.g. 1000.50)")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise row.bad(f"{column} {text!r} is not a number") from None
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and not (exponent >= -MAX_DIGITS and value.adjusted() < MAX_DIGITS):
        raise row.bad(
            f"{column} {text!r} is out of range: more than {MAX_DIGITS} digits before or after the "
            "decimal point"
        )
    return value


def parse_amount(row: Row, column: str, text: str) -> Decimal:
    amount = _decimal(row, column, text)
    if not amount.is_finite() or amount < 0:
        raise row.bad(f"{column} {text!r} must be a number >= 0")
    return amount.copy_abs()  # -0 is 0


def parse_count(row: Row, column: str, text: str, minimum: int) -> int:
    exact = _decimal(row, column, text)
    if not exact.is_finite() or exact != exact.to_integral_value():
        raise row.bad(f"{column} {text!r} is not a whole number")
    value = int(exact)
    if value < minimum:
        raise row.bad(f"{column} {text!r} must be >= {minimum}")
    return value
