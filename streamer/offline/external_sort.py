"""A file's lines in `--sort` order in bounded memory: sorted runs on disk, merged.

`streamer offline --sort` and `streamer backtest` apply a file's events in event-time order. A
backfill of years of history does not fit in memory as a list of lines (about 440 bytes per
line with the line: 851 MiB for 2 million), so the lines are sorted in runs of at most
`RUN_BYTES` of lines, each run is written to a scratch file, and the runs are merged with
`heapq.merge` (`streamer.runfiles`). A file that fits in one run is never written to disk.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from streamer.runfiles import RunFiles

Key = tuple[int, int, int]  # (event time, topic family, line number): unique, so a total order
Keyed = tuple[Key, bytes]

# Lines per run, counted by their bytes; the run's list costs about as much again in Python
# objects, so a run peaks at about twice this.
RUN_BYTES = 128 * 1024 * 1024

_FRAME = struct.Struct("<qqqI")  # a line's key and its length, then the line itself


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
        self._source, self._key = source, key
        self._run_bytes = RUN_BYTES if run_bytes is None else run_bytes
        self._runs = RunFiles(".sort-", scratch, _write_lines, _read_lines)
        self._last: list[Keyed] = []  # the last run, kept in memory
        self.count = 0

    def __enter__(self) -> SortedLines:
        try:
            self._read()
        except BaseException:
            self._runs.remove()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._runs.remove()
        self._last = []

    @property
    def runs(self) -> int:
        """Sorted runs the lines were cut into (1: sorted in memory)."""
        return len(self._runs) + 1

    def __iter__(self) -> Iterator[Keyed]:
        if not self._runs:
            return iter(self._last)
        return self._runs.merged(self._last, heapq.merge)

    def _read(self) -> None:
        run: list[Keyed] = []
        size = 0
        key = self._key
        for numbered in enumerate(self._source):
            run.append((key(numbered), numbered[1]))
            size += len(numbered[1])
            if size >= self._run_bytes:
                run.sort()
                self._runs.write(run)
                self.count += len(run)
                run, size = [], 0
        run.sort()
        self._last = run
        self.count += len(run)


def _write_lines(out: IO[bytes], run: Iterable[Keyed]) -> None:
    pack = _FRAME.pack
    for (at, family, number), line in run:
        out.write(pack(at, family, number, len(line)))
        out.write(line)


def _read_lines(handle: IO[bytes]) -> Iterator[Keyed]:
    read, unpack, size = handle.read, _FRAME.unpack, _FRAME.size
    while header := read(size):
        at, family, number, length = unpack(header)
        yield (at, family, number), read(length)
