"""The worker's table write pattern, for the benchmarks that measure state (state_size.py,
wide_portfolio.py): per-partition account stores that remember which accounts were written back
since the last batch, and the applied input offsets every stored record carries.

Imported as a sibling module (bench/ is on `sys.path` when a benchmark runs as a script); the
streamer modules it uses come from whichever source tree is on the path (wide_portfolio.py runs
its measurements against a baseline checkout too).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from streamer.state.partition import AppliedOffsets

INPUT_TOPICS = ("cs.subscriptions", "cs.usage", "cs.tickets", "cs.surveys")


class WriteLog(dict[str, Any]):
    """The accounts of a partition; remembers which were written back since the last `take`."""

    def __init__(self) -> None:
        super().__init__()
        self.written: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        self.written.add(key)
        super().__setitem__(key, value)

    def take(self) -> set[str]:
        written, self.written = self.written, set()
        return written


def written_back(stores: Sequence[WriteLog]) -> Iterator[tuple[str, Any]]:
    """(account id, account) for each account written since the last call, partition by
    partition and by id: one changelog record each, as a worker writes after a batch."""
    for store in stores:
        for account_id in sorted(store.take()):
            yield account_id, store[account_id]


def realistic_offsets() -> AppliedOffsets:
    """Applied input offsets as a long-running worker's records carry them (every input topic)."""
    offsets = AppliedOffsets()
    for topic in INPUT_TOPICS:
        offsets.advance(topic, 1_000_000, [])
    return offsets
