"""`streamer offline --jobs N`: the partitions of one file scored by N processes at once.

Partitions are independent, so each child process reads the whole file itself, scores only
the lines of its partitions (`Share`) and writes its records, each tagged with its place in the
run's order, to files in a scratch folder. The parent merges them into the same bytes a single
process writes: snapshots by (batch, partition), alerts and dead letters by line, final accounts
by account id, and the portfolio from every partition's sums once all are level with the latest
stream time of the run.

Nothing read from the input crosses a process boundary except as JSON lines in those files,
and the control messages on the pipes are small JSON objects (never pickle): the children are
forked with the score configuration already loaded, and decode nothing they did not read
themselves. Outputs are merged while the children run, a segment of lines at a time, so the
scratch folder holds at most a few segments.
"""

from __future__ import annotations

import heapq
import os
import resource
import shutil
import signal
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson

from streamer.core.config import ScoreConfig
from streamer.core.portfolio import PeriodSums
from streamer.offline.external_sort import Key, SortedLines
from streamer.offline.runner import (
    BATCH,
    OfflineRun,
    Share,
    Summary,
    UnreadableInput,
    UntilDamaged,
    open_events,
    open_sorted_copy,
    portfolio_of,
)
from streamer.wideints import narrow, wide

SEGMENT_BATCHES = 40  # a segment of lines (40 batches, 200,000 lines) is merged as soon as done
KINDS = ("health", "alerts", "deadletter")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs(partitions: int) -> int:
    """`--jobs` when not given: one process per available CPU, at most one per partition."""
    return max(1, min(available_cpus(), partitions))


def shares(partitions: int, jobs: int) -> list[Share]:
    """Partitions dealt round-robin to `jobs` processes; the first reports unreadable lines."""
    jobs = max(1, min(jobs, partitions))
    return [
        Share(frozenset(range(index, partitions, jobs)), reports_unreadable=index == 0)
        for index in range(jobs)
    ]


@dataclass(frozen=True)
class Job:
    """What every child needs; they are forked, so nothing here is serialised."""

    config: ScoreConfig
    partitions: int
    topic_prefix: str
    published_ms: int
    events: Path  # the file the children read (the sorted copy with --sort)
    source: str  # the input's name, as dead letters of unreadable lines carry it
    unterminated: int  # line number of a line without its line ending in `events` (0: none)
    scratch: Path
    batch: int = BATCH
    segment_lines: int = BATCH * SEGMENT_BATCHES
    # With --sort: each line's number in the input (`sort_into`), for the dead letters' offsets
    file_lines: Path | None = None


@dataclass
class Result:
    """A parallel run's merged figures."""

    summary: Summary
    accounts: int
    portfolio: dict[str, Any]
    peak_rss: list[int] = field(default_factory=list)  # bytes, per child
    cpu: list[float] = field(default_factory=list)  # CPU seconds, per child
    damage: str | None = None  # the error that ended a damaged input (scored up to there)


class ChildFailed(Exception):
    """A child process stopped with an error; the message names it."""


# -- in the child ---------------------------------------------------------------------------------


class SegmentFiles:
    """`Outputs` writing JSON lines plus an index of (key, key, bytes) blocks, per segment."""

    def __init__(self, scratch: Path, child: int) -> None:
        self.scratch = scratch
        self.child = child
        self.segment = 0
        self._open()

    def _open(self) -> None:
        self.files = {kind: self.path(kind, "jsonl").open("wb") for kind in KINDS}
        self.indexes = {kind: array("q") for kind in KINDS}

    def path(self, kind: str, suffix: str, segment: int | None = None) -> Path:
        number = self.segment if segment is None else segment
        return self.scratch / f"c{self.child}.s{number}.{kind}.{suffix}"

    def _write(self, kind: str, record: dict[str, Any], first: int, second: int) -> None:
        data = orjson.dumps(record) + b"\n"
        self.files[kind].write(data)
        index = self.indexes[kind]
        if index and index[-3] == first and index[-2] == second:
            index[-1] += len(data)
        else:
            index.extend((first, second, len(data)))

    def snapshot(self, record: dict[str, Any], batch: int, partition: int) -> None:
        self._write("health", record, batch, partition)

    def alert(self, record: dict[str, Any], line: int) -> None:
        self._write("alerts", record, line, 0)

    def dead_letter(self, record: dict[str, Any], line: int) -> None:
        self._write("deadletter", record, line, 0)

    def close_segment(self, *, last: bool = False) -> None:
        """Finish the current segment's files (the parent may merge them now)."""
        for kind in KINDS:
            self.files[kind].close()
            with self.path(kind, "idx").open("wb") as handle:
                self.indexes[kind].tofile(handle)
        if not last:
            self.segment += 1
            self._open()


def _send(connection: Connection, **message: Any) -> None:
    connection.send_bytes(orjson.dumps(message))


def _receive(connection: Connection) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(connection.recv_bytes())
    return message


def _sums_record(sums: PeriodSums) -> dict[str, Any]:
    """A child's period sums as JSON carries them (sums past 64 bits as strings, see `wide`)."""
    return {
        "hi": sums.hi,
        "lo": sums.lo,
        "first_month": sums.first_month,
        "points": [(m, wide(values)) for m, values in sums.points.items()],
        "pairs": [[m1, m2, wide(values)] for (m1, m2), values in sums.pairs.items()],
        "movements": [(m, wide(values)) for m, values in sums.movements.items()],
        "renewals": [(m, wide(values)) for m, values in sums.renewals.items()],
    }


def _sums_from(record: dict[str, Any]) -> PeriodSums:
    return PeriodSums(
        record["hi"],
        record["lo"],
        record["first_month"],
        {m: narrow(values) for m, values in record["points"]},
        {(m1, m2): narrow(values) for m1, m2, values in record["pairs"]},
        {m: narrow(values) for m, values in record["movements"]},
        {m: narrow(values) for m, values in record["renewals"]},
    )


def _child(job: Job, index: int, share: Share, connection: Connection) -> None:
    """A child's whole life: score its share, hand over segments, accounts, then the sums."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the children on Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and with SIGTERM, which ends a child here
    # blocked while forked: a pending Ctrl-C is dropped now, a pending SIGTERM ends the child
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED)
    try:
        _score_share(job, index, share, connection)
    except (BrokenPipeError, EOFError):  # the parent is gone: nothing left to report to
        os._exit(1)
    except UnreadableInput as exc:  # the file's fault, not this process's: the same line as --jobs 1
        try:
            _send(connection, error=exc.message, unreadable=True)
        finally:
            os._exit(1)
    except BaseException as exc:  # one line for the parent, which fails the run with it
        try:
            _send(connection, error=f"{type(exc).__name__}: {exc}")
        finally:
            os._exit(1)


def _score_share(job: Job, index: int, share: Share, connection: Connection) -> None:
    run = OfflineRun(job.config, job.partitions, job.topic_prefix, job.batch, job.published_ms)
    files = SegmentFiles(job.scratch, index)
    with open_events(job.events) if job.file_lines is None else open_sorted_copy(job.events) as source:
        raw = getattr(source, "fileobj", None) or source  # compressed position
        readable = UntilDamaged(source)  # every child stops at the same line

        def lines() -> Iterator[bytes]:
            segment_lines, unterminated = job.segment_lines, job.unterminated
            for number, line in enumerate(readable, start=1):
                if number == unterminated:
                    line = line[:-1]
                yield line
                # Asked for the next line: every record of this one is written.
                if number % segment_lines == 0:
                    files.close_segment()
                    at, cpu = raw.tell(), time.process_time()
                    _send(connection, segment=files.segment - 1, lines=number, at=at, cpu=cpu)

        numbers = None if job.file_lines is None else read_file_lines(job.file_lines)
        summary = run.feed_share(lines(), files, source=job.source, share=share, file_lines=numbers)
    files.close_segment(last=True)
    with (job.scratch / f"c{index}.accounts.jsonl").open("wb") as handle:
        for snapshot in run.accounts():
            handle.write(orjson.dumps(snapshot) + b"\n")
    _send(
        connection,
        segment=files.segment,
        lines=summary.lines,
        last=True,
        damage=None if readable.damage is None else readable.damage.message,
        summary=summary.share_record(),
        stream_time=run.stream_time(),
    )
    latest = _receive(connection)["latest"]
    run.close_months(latest)
    owned = sorted(share.partitions)
    _send(
        connection,
        sums={
            str(partition): {
                "periods": _sums_record(run.engines[partition].periods.sums),
                "totals": wide(run.engines[partition].totals.sums),
            }
            for partition in owned
        },
        peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        cpu=time.process_time(),
    )


# -- in the parent --------------------------------------------------------------------------------


def _blocks(path: Path) -> Iterator[tuple[int, int, int]]:
    index = array("q")
    index.frombytes(path.read_bytes())
    for position in range(0, len(index), 3):
        yield index[position], index[position + 1], index[position + 2]


def merge_segment(scratch: Path, children: int, segment: int, outputs: dict[str, IO[bytes]]) -> None:
    """Append segment `segment` of every child to the outputs, in the run's order; remove it."""
    for kind in KINDS:
        with ExitStack() as stack:
            sources = [
                stack.enter_context((scratch / f"c{child}.s{segment}.{kind}.jsonl").open("rb"))
                for child in range(children)
            ]
            tagged = [_tagged(_index(scratch, child, segment, kind), child) for child in range(children)]
            out = outputs[kind]
            for _, _, size, child in heapq.merge(*tagged):
                out.write(sources[child].read(size))
        for child in range(children):
            for suffix in ("jsonl", "idx"):
                (scratch / f"c{child}.s{segment}.{kind}.{suffix}").unlink()


def _tagged(index: Path, child: int) -> Iterator[tuple[int, int, int, int]]:
    """A child's blocks, each with the child's number (the merge's last tie-breaker)."""
    for first, second, size in _blocks(index):
        yield first, second, size, child


def _index(scratch: Path, child: int, segment: int, kind: str) -> Path:
    return scratch / f"c{child}.s{segment}.{kind}.idx"


def merge_accounts(scratch: Path, children: int, out: IO[bytes]) -> int:
    """The children's final snapshots, by account id as one process sorts them; their count."""
    with ExitStack() as stack:
        sources = [
            stack.enter_context((scratch / f"c{child}.accounts.jsonl").open("rb"))
            for child in range(children)
        ]

        def account_id(line: bytes) -> str:
            found: str = orjson.loads(line)["account_id"]
            return found

        count = 0
        for line in heapq.merge(*sources, key=account_id):
            out.write(line)
            count += 1
    return count


def sort_into(
    events: Path, target: Path, key: Callable[[tuple[int, bytes]], Key]
) -> tuple[int, UntilDamaged]:
    """Write the lines of `events` in `--sort` order to `target`, and each one's line in
    `events` to `file_lines_path(target)` (for the dead letters' offsets); the new number of the
    line that had no line ending (the file's last), 0 if none, and the lines as read (where a
    damaged input ended: only the lines before the damage are sorted)."""
    unterminated = 0
    numbers = array("q")
    with (
        open_events(events) as source,
        SortedLines(readable := UntilDamaged(source), key, scratch=target.parent) as ordered,
        target.open("wb") as out,
        file_lines_path(target).open("wb") as numbers_out,
    ):
        for number, ((_, _, index), line) in enumerate(ordered, start=1):
            if not line.endswith(b"\n"):
                unterminated = number
                line += b"\n"
            out.write(line)
            numbers.append(index + 1)
            if len(numbers) == FILE_LINES_BLOCK:
                numbers.tofile(numbers_out)
                del numbers[:]
        numbers.tofile(numbers_out)
    return unterminated, readable


FILE_LINES_BLOCK = 1 << 16  # line numbers written and read at a time


def file_lines_path(sorted_copy: Path) -> Path:
    """Where `sort_into` writes the input's line number of each line of `sorted_copy`."""
    return sorted_copy.with_name(sorted_copy.name + ".lines")


def read_file_lines(path: Path) -> Iterator[int]:
    """The line numbers `sort_into` wrote, in order."""
    with path.open("rb") as handle:
        while block := handle.read(FILE_LINES_BLOCK * 8):
            numbers = array("q")
            numbers.frombytes(block)
            yield from numbers


FORK_BLOCKED = {signal.SIGINT, signal.SIGTERM}  # held back from a child until `_child` set its handlers


class _Stop(Exception):
    """SIGTERM to the parent: stop the children and clean up, as on Ctrl-C."""


def run_parallel(
    job: Job,
    jobs: int,
    outputs: dict[str, IO[bytes]],
    accounts_out: IO[bytes],
    progress: Callable[[int, int, float], None],
) -> Result:
    """Score `job.events` with `jobs` children; records go to `outputs` (by kind) and
    `accounts_out`. `progress(lines, position, cpu)` follows the slowest child (cpu: the
    children's CPU seconds). Raises `ChildFailed` with the child's one-line error; removes the
    scratch files in every case."""
    parts = shares(job.partitions, jobs)
    context = get_context("fork")  # children inherit the loaded configuration; nothing is pickled
    processes = []
    connections: list[Connection] = []
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        # Ctrl-C and SIGTERM wait while the children are forked: one landing in a child before
        # `_child` sets its handlers would run the parent's (or kill the child in multiprocessing's
        # start-up) with a traceback. The parent gets them as soon as the children are started,
        # and stops them; a SIGTERM it sends a child still starting waits for `_child`.
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED)
        try:
            for index, share in enumerate(parts):
                parent_end, child_end = context.Pipe()
                process = context.Process(
                    target=_child, args=(job, index, share, child_end), name=f"offline-{index}", daemon=True
                )
                process.start()
                child_end.close()
                processes.append(process)
                connections.append(parent_end)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        return _conduct(job, parts, processes, connections, outputs, accounts_out, progress)
    except _Stop:
        raise KeyboardInterrupt from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in connections:
            connection.close()
        shutil.rmtree(job.scratch, ignore_errors=True)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _conduct(
    job: Job,
    parts: list[Share],
    processes: list[Any],
    connections: list[Connection],
    outputs: dict[str, IO[bytes]],
    accounts_out: IO[bytes],
    progress: Callable[[int, int, float], None],
) -> Result:
    children = len(parts)
    done_segments = [-1] * children  # the last segment each child finished
    lines = [0] * children
    positions = [0] * children
    cpus = [0.0] * children
    merged = -1
    fed: dict[int, dict[str, Any]] = {}
    sums: dict[int, dict[str, Any]] = {}
    peaks = [0] * children
    owner = {connection: index for index, connection in enumerate(connections)}
    sentinels = {process.sentinel: index for index, process in enumerate(processes)}

    def check(index: int, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("unreadable"):  # refused before its first line (a damaged one ends the input)
            raise UnreadableInput(message["error"])
        if "error" in message:
            names = ", ".join(str(p) for p in sorted(parts[index].partitions))
            raise ChildFailed(f"process {index} (partitions {names}) failed: {message['error']}")
        return message

    def receive(index: int) -> dict[str, Any]:
        try:
            return check(index, _receive(connections[index]))
        except EOFError:
            processes[index].join(timeout=10)
            code = processes[index].exitcode
            raise ChildFailed(
                f"process {index} stopped without a result (exit code {code}; killed, or out of memory?)"
            ) from None

    while len(fed) < children:
        ready = wait([c for i, c in enumerate(connections) if i not in fed] + list(sentinels), timeout=5)
        for handle in ready:
            if handle in sentinels:
                index = sentinels[handle]
                if index not in fed and not connections[index].poll():
                    receive(index)  # raises: it exited before reporting its results
                continue
            assert isinstance(handle, Connection)
            index = owner[handle]
            message = receive(index)
            done_segments[index] = message["segment"]
            lines[index] = message["lines"]
            positions[index] = message.get("at", positions[index])
            cpus[index] = message.get("cpu", cpus[index])
            if message.get("last"):
                fed[index] = message
        if len(fed) < children:
            progress(min(lines), min(positions), sum(cpus))
        while merged < min(done_segments):
            merged += 1
            merge_segment(job.scratch, children, merged, outputs)
        sentinels = {s: i for s, i in sentinels.items() if i not in fed}
    latest = max(message["stream_time"] for message in fed.values())
    for connection in connections:
        _send(connection, latest=latest)
    count = merge_accounts(job.scratch, children, accounts_out)
    for index in range(children):
        message = receive(index)
        sums |= {int(partition): value for partition, value in message["sums"].items()}
        peaks[index] = message["peak_rss"]
        cpus[index] = message["cpu"]
    summary = Summary()
    for message in fed.values():
        summary.add_share(message["summary"])
    periods = [_sums_from(sums[partition]["periods"]) for partition in range(job.partitions)]
    totals = [narrow(sums[partition]["totals"]) for partition in range(job.partitions)]
    portfolio = portfolio_of(job.config, periods, totals)
    damage = next((message["damage"] for message in fed.values() if message.get("damage")), None)
    return Result(summary, count, portfolio, peaks, cpus, damage)


def scratch_folder(out_dir: Path) -> Path:
    """A fresh folder for the children's files, beside the outputs (same file system)."""
    return Path(tempfile.mkdtemp(prefix=".offline-", dir=out_dir))
