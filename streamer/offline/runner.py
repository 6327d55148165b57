"""Feed a file of contract events through the scoring core in one process, as a stream would.

Events are partitioned like Kafka's default partitioner does (murmur2 of the account id), each
partition keeps its own stream time, and the partitions' portfolio sums are added at the end,
so the answers equal those of the stream agents on the same events.
"""

from __future__ import annotations

import gzip
import re
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, cast

import click
import orjson

from streamer.contract.dead_letter import dead_letter_record
from streamer.contract.decode import JSON_WHITESPACE, MAX_EVENT_BYTES, Rejected, decode_event
from streamer.contract.events import EVENT_FAMILY
from streamer.core.account import Account
from streamer.core.clock import to_ms
from streamer.core.config import ScoreConfig
from streamer.core.engine import ACCEPTED, DUPLICATE, PartitionEngine
from streamer.core.intake import Refused, admit, apply
from streamer.core.periods import month_metrics, months_in_data
from streamer.core.portfolio import PeriodSums, merge
from streamer.core.totals import add_up, report
from streamer.partitioning import partition_of, partition_of_key
from streamer.settings import FAMILIES


class UnreadableInput(click.ClickException):
    """An events file that cannot be read to its end (a truncated or fake .gz): one line, exit 1.

    `--jobs` children hand its message to the parent as it is (see `offline.parallel`).
    """


class _GzipLines(gzip.GzipFile):
    """A `.gz` events file whose damage ends the command with one line naming the file and the
    last line read, instead of `EOFError` (which click reports as a bare "Aborted!") or a
    traceback ending in `gzip.BadGzipFile` / `zlib.error`."""

    lines = 0  # lines read so far

    def readline(self, size: int | None = -1) -> bytes:
        line = self._checked(super().readline, size)
        if line.endswith(b"\n"):
            self.lines += 1
        return line

    def read(self, size: int | None = -1) -> bytes:
        return self._checked(super().read, size)

    def _checked(self, read: Callable[[int], bytes], size: int | None) -> bytes:
        try:
            return read(-1 if size is None else size)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise self._unreadable(error) from None

    def _unreadable(self, error: Exception) -> UnreadableInput:
        name = Path(str(self.name)).name
        if isinstance(error, EOFError):
            return UnreadableInput(
                f"{name}: the gzip stream ends early (truncated file?) after line {self.lines:,}"
            )
        if isinstance(error, gzip.BadGzipFile) and str(error).startswith("Not a gzipped file"):
            if self.lines == 0:
                return UnreadableInput(f"{name}: not a gzip file (name it .jsonl, or gzip it)")
            return UnreadableInput(f"{name}: data that is not gzip follows line {self.lines:,}")
        return UnreadableInput(f"{name}: the gzip data is damaged after line {self.lines:,} ({error})")


UTF8_BOM = b"\xef\xbb\xbf"
# What the start of a UTF-16 or UTF-32 text of JSON looks like: a byte order mark, or the NUL
# bytes that pad "{" (or a space) to two or four bytes.
_WIDE_TEXT = re.compile(
    rb"\A(?:\xff\xfe|\xfe\xff|\x00\x00\xfe\xff"  # the marks: UTF-16 LE (and UTF-32 LE), BE, UTF-32 BE
    rb"|[\x01-\x7f]\x00|\x00[\x01-\x7f]|\x00\x00\x00[\x01-\x7f])"  # unmarked: LE, UTF-16 BE, UTF-32 BE
)
# Two objects on one line with a lone carriage return between them: nothing valid JSON holds
# (a raw CR cannot be in a string, nor whitespace between "}" and "{"): lines ending in "\r" only.
_CR_LINES = re.compile(rb"\}[ \t]*\r[ \t\r]*\{")


class _BoundedLines:
    """A file's lines, each cut at `MAX_EVENT_BYTES` + 1 bytes (what is past that is skipped to
    the line's end), so that reading holds one event's worth at a time: a 2 MB .gz of zeros, one
    line of 2 GB, took 4.4 GB of memory and a bigger one ended in MemoryError. The cut line is
    longer than an event may be, so it is dead-lettered as such.

    A UTF-8 byte order mark at a line's start (a Windows editor's export, or such files joined)
    is left out, as RFC 8259 lets a parser do: it made the first event a dead letter and its
    account lose that event. A file in UTF-16 or UTF-32, or with lines ending in a carriage
    return only, is refused with `UnreadableInput` before its first line: each of its lines was
    a "not valid JSON" dead letter. Everything else is the file's."""

    def __init__(self, handle: IO[bytes], *underneath: IO[bytes], checked: bool = True) -> None:
        """`underneath`: files to close with `handle` (the file a gzip reader reads from);
        `checked`: refuse a first line in UTF-16 or UTF-32, or with lone carriage returns."""
        self._handle = handle
        self._underneath = underneath
        self._checked = checked

    def __iter__(self) -> Iterator[bytes]:
        readline, limit = self._handle.readline, MAX_EVENT_BYTES + 1
        first = self._checked
        while line := readline(limit):
            if first:
                self._check_encoding(line)
                first = False
            if len(line) == limit and not line.endswith(b"\n"):
                while (rest := readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                line += b"\n"
            if line.startswith(UTF8_BOM):
                line = line[len(UTF8_BOM) :]
            yield line

    def _check_encoding(self, line: bytes) -> None:
        name = Path(str(getattr(self._handle, "name", "the input"))).name
        if _WIDE_TEXT.match(line):
            raise UnreadableInput(
                f"{name}: the file is UTF-16 or UTF-32 text; events are JSON lines in UTF-8 "
                "(convert it first, e.g. with iconv -f UTF-16 -t UTF-8)"
            )
        if _CR_LINES.search(line):
            raise UnreadableInput(
                f"{name}: its lines end in a carriage return (\\r) alone; events are JSON lines "
                "ending in \\n or \\r\\n (convert it first, e.g. with tr '\\r' '\\n')"
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _BoundedLines:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._handle.close()
        finally:
            for handle in self._underneath:
                handle.close()


GZIP_MAGIC = b"\x1f\x8b"  # the first two bytes of every gzip stream (RFC 1952)
# The start of the other compressed formats an export may come in, and the tool that undoes each:
# read as gzip (named .gz) or as text, each was a misleading error or base64 dead letters.
OTHER_COMPRESSIONS = (
    (re.compile(rb"\A\x28\xb5\x2f\xfd"), "zstd", "zstd -d"),
    (re.compile(rb"\ABZh[1-9]"), "bzip2", "bzip2 -d"),
    (re.compile(rb"\A\xfd7zXZ\x00"), "xz", "xz -d"),
)


def refuse_other_compression(path: Path, start: bytes) -> None:
    """`UnreadableInput` when `start` (a file's first bytes) is zstd, bzip2 or xz, whatever its name."""
    for magic, kind, tool in OTHER_COMPRESSIONS:
        if magic.match(start):
            raise UnreadableInput(f"{path.name}: a {kind} file: decompress it first ({tool} {path.name})")


def open_events(path: Path) -> IO[bytes]:
    """Open a JSONL file, gzip-compressed when its name ends in .gz (in any case) or when it
    starts as gzip does, to be read line by line (each cut at `MAX_EVENT_BYTES` + 1): a gzip
    file named `EV.JSONL.GZ`, or `.jsonl`, was read as text, every line a "not valid JSON" dead
    letter. Reading a damaged .gz raises `UnreadableInput` (a click error: one line, exit 1); a
    file named .gz that is not gzip is one too, and so is a zstd, bzip2 or xz file."""
    raw = path.open("rb")
    try:
        start = raw.peek(6)[:6]  # peek: a pipe too
        refuse_other_compression(path, start)
        packed = path.suffix.lower() == ".gz" or start[:2] == GZIP_MAGIC
    except BaseException:
        raw.close()
        raise
    if not packed:
        return cast(IO[bytes], _BoundedLines(raw))
    return cast(IO[bytes], _BoundedLines(cast(IO[bytes], _GzipLines(fileobj=raw, mode="rb")), raw))


class UntilDamaged:
    """An input's lines up to where it is damaged (a truncated or corrupt .gz), which ends the
    input there: `damage` is then the error, to report once what was read is scored, and `read`
    the lines read before it (0: the input was refused before its first line)."""

    def __init__(self, lines: Iterable[bytes]) -> None:
        self._lines = lines
        self.read = 0
        self.damage: UnreadableInput | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for line in self._lines:
                self.read += 1
                yield line
        except UnreadableInput as damage:
            self.damage = damage


def open_sorted_copy(path: Path) -> IO[bytes]:
    """Open the `--sort` copy a run wrote of its input (plain lines, read as they are): lines
    the contract refuses come first in it, so its first line can be any line of the input, gzip's
    first bytes or a lone carriage return included; opened as an input (`open_events`), one such
    line made `--jobs 2 --sort` fail where one process dead-lettered it."""
    return cast(IO[bytes], _BoundedLines(path.open("rb"), checked=False))


def merge_order_key(numbered: tuple[int, bytes]) -> tuple[int, int, int]:
    """`--sort` order: (event time, topic family, line), the order the stream's merge releases.

    Lines the contract refuses come first; they are dead-lettered anyway. A quick reading serves
    most lines; one it cannot read goes through the contract's decoder: a valid event must get
    its own time, or, sorted first, it would set the stream time and make the events before it
    too late (a lowercase `z` offset and an ignored field holding `1e400` are valid, and neither
    `datetime.fromisoformat` nor orjson reads them).
    """
    number, line = numbered
    try:
        value = orjson.loads(line)
        moment = datetime.fromisoformat(value["occurred_at"])
        if moment.tzinfo is None:  # refused; read in the machine's time zone it moved the others
            raise ValueError("no UTC offset")
        family = FAMILIES.index(EVENT_FAMILY[value["event_type"]])
    except Exception:
        try:
            event = decode_event(line)
        except Rejected:
            return UNREADABLE, 0, number
        moment, family = event.occurred_at, FAMILIES.index(EVENT_FAMILY[event.event_type])
    return to_ms(moment), family, number  # exact, where timestamp() * 1000 rounds


UNREADABLE = -(1 << 62)  # merge_order_key's time for a line it cannot read (dead-lettered first)


def lines_and_file_lines(
    keyed: Iterable[tuple[tuple[int, int, int], bytes]],
) -> tuple[Iterator[bytes], Iterator[int]]:
    """The lines of a sorted file (`SortedLines`: each with its `merge_order_key`, whose last
    part counts the file's lines from 0), and, in step with them, each one's line in the file
    (from 1), for `OfflineRun.feed_share`'s `file_lines`: read one line, then its number."""
    numbers: deque[int] = deque()

    def lines() -> Iterator[bytes]:
        for key, line in keyed:
            numbers.append(key[2] + 1)
            yield line

    return lines(), iter(numbers.popleft, -1)


def publication_ms(now: datetime | None) -> int:
    """`--now` as epoch ms (a time without an offset is UTC); the wall clock when not given."""
    if now is None:
        return int(time.time() * 1000)
    return to_ms(now if now.tzinfo is not None else now.replace(tzinfo=UTC))


def time_window(config: ScoreConfig, published_ms: int) -> tuple[int, int]:
    """The event times `[input]` admits for messages published at `published_ms` (inclusive)."""
    bounds = config.input
    return bounds.earliest_ms, bounds.latest_ms(published_ms)


def bounded_order_key(window: tuple[int, int]) -> Callable[[tuple[int, bytes]], tuple[int, int, int]]:
    """`merge_order_key`, with an event time outside `window` counted as unreadable (it is
    dead-lettered anyway, and must not stretch the span a backtest samples)."""
    low, high = window

    def key(numbered: tuple[int, bytes]) -> tuple[int, int, int]:
        found = merge_order_key(numbered)
        return found if low <= found[0] <= high else (UNREADABLE, 0, found[2])

    return key


# What the core's reason for an event behind its partition's stream time says (engine._too_late)
TOO_LATE = "too late to fold in"

BATCH = 5000  # lines per batch: snapshots of changed accounts are emitted once per batch

# The `"account_id"` key and its string value, as a line without escapes spells them.
_ACCOUNT_ID = re.compile(rb'"account_id"[ \t\r\n]*:[ \t\r\n]*"([^"]*)"')


def quick_account_id(line: bytes) -> bytes | None:
    """The account id of a line, as UTF-8 bytes, read without decoding the JSON; None when
    this cheap reading cannot be sure (the line is then decoded in full).

    Sure means: for every line the contract admits, the answer is None or exactly the event's
    `account_id`. A line without a backslash has no escapes, so every `"` in it delimits a
    string; if `"account_id"` occurs once, it is the only such key anywhere in the line (nested
    ones included), and followed by `:` it is the top-level key of an admitted event, whose value
    is the string up to the next `"`. Lines with a backslash, a repeated key or another layout
    give None. What a refused line gives does not matter, as long as it is the same everywhere.
    """
    if b"\\" in line or line.count(b'"account_id"') != 1:
        return None
    found = _ACCOUNT_ID.search(line)
    return found.group(1) if found is not None else None


@dataclass(frozen=True, slots=True)
class Share:
    """The part of a file one process of a parallel run scores: the lines of its `partitions`,
    and, when `reports_unreadable`, the lines no partition owns (refused before an account id
    is known), so that each of those is dead-lettered by exactly one process."""

    partitions: frozenset[int]
    reports_unreadable: bool


class Outputs(Protocol):
    """Where a run's records go, each with its place in the run's deterministic order: snapshots
    by (batch, partition), alerts and dead letters by the line that caused them."""

    def snapshot(self, record: dict[str, Any], batch: int, partition: int) -> None: ...

    def alert(self, record: dict[str, Any], line: int) -> None: ...

    def dead_letter(self, record: dict[str, Any], line: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Callbacks:
    """`Outputs` for callers that only want the records, in order."""

    on_snapshot: Callable[[dict[str, Any]], None]
    on_alert: Callable[[dict[str, Any]], None]
    on_dead_letter: Callable[[dict[str, Any]], None]

    def snapshot(self, record: dict[str, Any], batch: int, partition: int) -> None:
        self.on_snapshot(record)

    def alert(self, record: dict[str, Any], line: int) -> None:
        self.on_alert(record)

    def dead_letter(self, record: dict[str, Any], line: int) -> None:
        self.on_dead_letter(record)


@dataclass
class Summary:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    blank: int = 0  # empty or whitespace-only lines: skipped, neither scored nor dead-lettered
    too_late: int = 0  # of `rejected`: behind their partition's stream time (an unsorted file?)
    alerts: Counter[str] = field(default_factory=Counter)
    snapshots: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    def share_record(self) -> dict[str, Any]:
        """What a `--jobs` child sends of its summary (JSON on a pipe): every field but the time,
        which the parent measures itself."""
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "seconds"}
        record["alerts"] = dict(self.alerts)  # (asdict would count the Counter's pairs instead)
        return record

    def add_share(self, part: dict[str, Any]) -> None:
        """Add a child's `share_record`: its counts are of its partitions, its `lines` and
        `blank` the whole file's (every child reads every line)."""
        self.lines, self.blank = part["lines"], part["blank"]
        self.accepted += part["accepted"]
        self.duplicates += part["duplicates"]
        self.rejected += part["rejected"]
        self.too_late += part["too_late"]
        self.alerts += Counter(part["alerts"])
        self.snapshots += part["snapshots"]


class OfflineRun:
    """One pass over a file; outputs go to the writer callbacks (files, or lists in tests)."""

    def __init__(
        self,
        config: ScoreConfig,
        partitions: int,
        topic_prefix: str = "cs.",
        batch: int = BATCH,
        published_ms: int | None = None,
    ) -> None:
        """`published_ms`: when the file's events count as published, for the input bound on
        event time (`input.max_skew_hours`); default the start of the run (all past data passes).
        """
        self.config = config
        self.published_ms = published_ms if published_ms is not None else int(time.time() * 1000)
        self.batch = batch
        self.partitions = partitions
        self.topic_prefix = topic_prefix
        self.stores: list[dict[str, Account]] = [{} for _ in range(partitions)]
        self.engines = [PartitionEngine(config, store) for store in self.stores]
        self.summary = Summary()
        self._partitions: dict[str, int] = {}
        self._quick_partitions: dict[bytes, int] = {}

    def feed(
        self,
        lines: Iterator[bytes],
        *,
        on_snapshot: Callable[[dict[str, Any]], None],
        on_alert: Callable[[dict[str, Any]], None],
        on_dead_letter: Callable[[dict[str, Any]], None],
        source: str = "file",
        file_lines: Iterator[int] | None = None,
    ) -> Summary:
        """Score every line; records go to the callbacks in the run's order."""
        return self.feed_share(
            lines, Callbacks(on_snapshot, on_alert, on_dead_letter), source=source, file_lines=file_lines
        )

    def feed_share(
        self,
        lines: Iterator[bytes],
        outputs: Outputs,
        *,
        source: str = "file",
        share: Share | None = None,
        file_lines: Iterator[int] | None = None,
    ) -> Summary:
        """Score the lines of `share` (all of them when None), reading every line of the file so
        that line numbers and batches are those of the whole file. `file_lines`: the number of
        each line in the file, when `lines` come in another order (`--sort`): a dead letter's
        offset is its line in the file, as without --sort (it was its place after sorting)."""
        summary = self.summary
        started = time.perf_counter()
        batch = self.batch
        number = 0
        for number, line in enumerate(lines, start=1):
            summary.lines += 1
            offset = number if file_lines is None else next(file_lines)
            if line.strip(JSON_WHITESPACE):
                self._one(number, offset, line, outputs, source, share)
            else:
                summary.blank += 1
            if number % batch == 0:
                self._publish(outputs, number // batch)
        self._publish(outputs, number // batch + 1)
        summary.seconds += time.perf_counter() - started
        return summary

    def _partition(self, account_id: str) -> int:
        partition = self._partitions.get(account_id)
        if partition is None:
            partition = self._partitions[account_id] = partition_of(account_id, self.partitions)
        return partition

    def _one(
        self, number: int, offset: int, line: bytes, outputs: Outputs, source: str, share: Share | None
    ) -> None:
        """Score one line; `number` places its records in the run's order, `offset` is its line
        in the file, which its dead letter names."""
        summary = self.summary
        quick = None
        if share is not None:
            quick = quick_account_id(line)
            if quick is not None and self._partition_of_bytes(quick) not in share.partitions:
                return  # another process scores it (and reports it if it is refused)
        admitted = admit(line, key=None, family=None, published_ms=self.published_ms, config=self.config)
        if isinstance(admitted, Refused):
            if share is not None and quick is None and not share.reports_unreadable:
                return
            summary.rejected += 1
            outputs.dead_letter(
                dead_letter_record(
                    _without_line_end(line),
                    topic=source,
                    partition=None,
                    offset=offset,
                    key=None,
                    error=admitted.reason,
                ),
                number,
            )
            return
        event = admitted
        partition = self._partition(event.account_id)
        if share is not None:
            if quick is None:
                if partition not in share.partitions:
                    return
            elif quick != event.account_id.encode():  # quick_account_id broke its promise
                raise AssertionError(
                    f"line {offset}: read account id {quick!r} without decoding, but the event says "
                    f"{event.account_id!r}; rerun with --jobs 1 and report this line"
                )
        engine = self.engines[partition]
        outcome = apply(engine, event)
        for alert in outcome.alerts:
            summary.alerts[alert["rule"]] += 1
            outputs.alert(alert, number)
        if outcome.status == ACCEPTED:
            summary.accepted += 1
        elif outcome.status == DUPLICATE:
            summary.duplicates += 1
        else:
            summary.rejected += 1
            summary.too_late += int(TOO_LATE in (outcome.reason or ""))
            topic = self.topic_prefix + EVENT_FAMILY[event.event_type]
            outputs.dead_letter(
                dead_letter_record(
                    _without_line_end(line),
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=None,
                    error=outcome.reason or "",
                ),
                number,
            )

    def _partition_of_bytes(self, account_id: bytes) -> int:
        found = self._quick_partitions.get(account_id)
        if found is None:
            found = self._quick_partitions[account_id] = partition_of_key(account_id, self.partitions)
        return found

    def _publish(self, outputs: Outputs, batch: int) -> None:
        """Each account whose snapshot changed, once, as a worker does after a batch."""
        for partition, engine in enumerate(self.engines):
            for account_id in engine.take_dirty():
                self.summary.snapshots += 1
                outputs.snapshot(engine.snapshot(account_id), batch, partition)

    # -- results ----------------------------------------------------------------------------------

    def accounts(self) -> Iterator[dict[str, Any]]:
        """Final snapshot of every account, by account id."""
        owners = {aid: engine for engine in self.engines for aid in engine.members}
        for account_id in sorted(owners):
            yield owners[account_id].snapshot(account_id)

    def stream_time(self) -> int:
        """The latest stream time of any partition (-1 before any event)."""
        return max(engine.clock.stream_time for engine in self.engines)

    def close_months(self, latest: int) -> None:
        """Bring every partition's month starts level with `latest` (the latest stream time of
        the whole run), so that their sums add up."""
        for engine in self.engines:
            engine.open_months_until(latest)

    def portfolio(self) -> dict[str, Any]:
        """`{"currency", "current", "months"}` as documented in the README."""
        self.close_months(self.stream_time())
        return portfolio_of(
            self.config,
            [engine.periods.sums for engine in self.engines],
            [engine.totals.sums for engine in self.engines],
        )


def portfolio_of(
    config: ScoreConfig, periods: Sequence[PeriodSums], totals: Sequence[list[int]]
) -> dict[str, Any]:
    """The portfolio report from the partitions' sums, in partition order."""
    options: dict[str, Any] = {
        "gross_margin": config.portfolio.gross_margin,
        "cs_cost_per_month": config.portfolio.cs_cost_per_month,
    }
    sums = merge(periods)
    currency = config.currency.reporting
    return {
        "currency": currency,
        "current": report(add_up(totals), currency),
        "months": [month_metrics(sums, month, **options) for month in months_in_data(sums)],
    }


def _without_line_end(line: bytes) -> bytes:
    """A file's line as its event: without the LF or CRLF that ends it."""
    return line.removesuffix(b"\n").removesuffix(b"\r")
