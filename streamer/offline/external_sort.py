"""A file's lines in `--sort` order in bounded memory: sorted runs on disk, merged.

`streamer offline --sort` and `streamer backtest` apply a file's events in event-time order. A
backfill of years of history does not fit in memory as a list of lines (about 375 bytes per
line on top of the line: 3.7 GB for 10 million), so the lines are sorted in runs of at most
`RUN_BYTES` of lines, each run is written to a scratch file, and the runs are merged with
`heapq.merge`. A file that fits in one run is never written to disk.
"""

from __future__ import annotations

import heapq
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

Key = tuple[int, int, int]  # (event time, topic family, line number): unique, so a total order
Keyed = tuple[Key, bytes]

# Lines per run, counted by their bytes; the run's list costs about as much again in Python
# objects, so a run peaks at about twice this.
RUN_BYTES = 128 * 1024 * 1024

# Runs merged at once: a merge holds a file open per run (a common limit is 1,024 per process),
# so more runs are first merged in groups into longer ones.
MAX_FAN_IN = 64

_FRAME = struct.Struct("<qqqI")  # a line's key and its length, then the line itself
_READ_BUFFER = 1 << 20


class SortedLines:
    """The lines of `source` ordered by `key((number, line))`, numbers counting from 0.

    Reading happens when entered: `count` is then the number of lines. Iterating gives
    `(key, line)` in order, once. Leaving removes the scratch files (on an error too).
    """

    def __init__(
        self,
        source: Iterable[bytes],
        key: Callable[[tuple[int, bytes]], Key],
        scratch: Path | None = None,
        run_bytes: int | None = None,
    ) -> None:
        self._source, self._key, self._scratch = source, key, scratch
        self._run_bytes = RUN_BYTES if run_bytes is None else run_bytes
        self._folder: Path | None = None
        self._runs: list[Path] = []
        self._made = 0  # run files written
        self._last: list[Keyed] = []  # the last run, kept in memory
        self.count = 0

    def __enter__(self) -> SortedLines:
        try:
            self._read()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._remove()

    @property
    def runs(self) -> int:
        """Sorted runs the lines were cut into (1: sorted in memory)."""
        return len(self._runs) + 1

    def __iter__(self) -> Iterator[Keyed]:
        if not self._runs:
            yield from self._last
            return
        while len(self._runs) >= MAX_FAN_IN:
            group, self._runs = self._runs[:MAX_FAN_IN], self._runs[MAX_FAN_IN:]
            self._runs.append(self._write(heapq.merge(*map(_read_run, group))))
            for path in group:
                path.unlink()
        yield from heapq.merge(*map(_read_run, self._runs), self._last)

    def _read(self) -> None:
        run: list[Keyed] = []
        size = 0
        key = self._key
        for numbered in enumerate(self._source):
            run.append((key(numbered), numbered[1]))
            size += len(numbered[1])
            if size >= self._run_bytes:
                run.sort()
                self._runs.append(self._write(run))
                self.count += len(run)
                run, size = [], 0
        run.sort()
        self._last = run
        self.count += len(run)

    def _write(self, run: Iterable[Keyed]) -> Path:
        """A new scratch file holding `run` (already in order)."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix=".sort-", dir=self._scratch))
        self._made += 1
        path = self._folder / f"run-{self._made:05d}"
        with path.open("wb") as out:
            pack = _FRAME.pack
            for (at, family, number), line in run:
                out.write(pack(at, family, number, len(line)))
                out.write(line)
        return path

    def _remove(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._last = []


def _read_run(path: Path) -> Iterator[Keyed]:
    """A run's lines with their keys, in the order written."""
    handle: IO[bytes]
    with path.open("rb", buffering=_READ_BUFFER) as handle:
        read, unpack, size = handle.read, _FRAME.unpack, _FRAME.size
        while header := read(size):
            at, family, number, length = unpack(header)
            yield (at, family, number), read(length)
