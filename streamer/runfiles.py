"""Sorted runs on disk, for an ordering or a grouping in bounded memory: what does not fit is
written in sorted runs to a scratch folder, and the runs are merged back in order."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Generic, TypeVar

T = TypeVar("T")

# Runs merged at once: a merge holds a file open per run (a common limit is 1,024 per process),
# so more runs are first merged in groups into longer ones.
MAX_FAN_IN = 64
READ_BUFFER = 1 << 20


class RunFiles(Generic[T]):
    """Sorted runs of items of type `T` in a scratch folder under `scratch` (default: the
    system's temporary folder) named `prefix...`, made when the first run is written.

    `write_items(out, items)` writes items to a file and `read_items(handle)` gives them back;
    `merge(*sources)` merges sorted iterables into one (`heapq.merge`, with whatever combining
    of equal items the caller needs). `remove()` deletes the folder: call it however the work
    ends.
    """

    def __init__(
        self,
        prefix: str,
        scratch: Path | None,
        write_items: Callable[[IO[bytes], Iterable[T]], None],
        read_items: Callable[[IO[bytes]], Iterator[T]],
    ) -> None:
        self._prefix, self._scratch = prefix, scratch
        self._write_items, self._read_items = write_items, read_items
        self._folder: Path | None = None
        self._made = 0  # run files written, for their names
        self.paths: list[Path] = []

    def __len__(self) -> int:
        return len(self.paths)

    def write(self, ordered: Iterable[T]) -> None:
        """Write `ordered` (already sorted) as a new run."""
        self.paths.append(self._write(ordered))

    def merged(self, last: Iterable[T], merge: Callable[..., Iterator[T]]) -> Iterator[T]:
        """Every run and `last` (sorted, kept in memory) merged, at most `MAX_FAN_IN` files open."""
        while len(self.paths) >= MAX_FAN_IN:
            group, self.paths = self.paths[:MAX_FAN_IN], self.paths[MAX_FAN_IN:]
            self.paths.append(self._write(merge(*map(self.read, group))))
            for path in group:
                path.unlink()
        yield from merge(*map(self.read, self.paths), last)

    def read(self, path: Path) -> Iterator[T]:
        """A run's items, in the order written."""
        with path.open("rb", buffering=READ_BUFFER) as handle:
            yield from self._read_items(handle)

    def remove(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self.paths = []

    def _write(self, ordered: Iterable[T]) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix=self._prefix, dir=self._scratch))
        self._made += 1
        path = self._folder / f"run-{self._made:05d}"
        with path.open("wb") as out:
            self._write_items(out, ordered)
        return path
