"""An output file written by a background thread, so compression overlaps with simulation."""

from __future__ import annotations

import gzip
import queue
import threading
from contextlib import ExitStack
from io import BufferedIOBase
from pathlib import Path
from types import TracebackType

QUEUE_CHUNKS = 16
DEFAULT_GZIP_LEVEL = 3
"""zlib level 3: a third of level 6's time on this data, for files about 15 % larger."""


class Sink:
    """Writes byte chunks to `path` in order; gzip (reproducible header) when it ends in .gz
    (in any case).

    zlib releases the GIL while compressing, so a thread gives the compression its own core.
    """

    def __init__(self, path: Path, gzip_level: int = DEFAULT_GZIP_LEVEL) -> None:
        self._stack = ExitStack()
        raw: BufferedIOBase = self._stack.enter_context(path.open("wb"))
        if path.suffix.lower() == ".gz":  # EV.JSONL.GZ too: it was written as text
            raw = self._stack.enter_context(
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=gzip_level, mtime=0)
            )
        self._file = raw
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="sim-sink", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._file.write(chunk)
                except BaseException as error:  # re-raised in the producer's thread
                    self._error = error

    def write(self, chunk: bytes) -> None:
        """Queue `chunk` for writing; raises the writer thread's error, if it had one."""
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def close(self) -> None:
        """Flush everything, stop the thread and close the file."""
        self._queue.put(None)
        self._thread.join()
        self._stack.close()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
