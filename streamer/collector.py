"""The cyclic garbage collector's pace in the worker and in `streamer offline`.

Scoring allocates many small objects per message and evaluation (the decoded event, windows,
facts, alerts, snapshot dicts) that reference counting frees at once. Counted at CPython's 700
allocations, the cyclic collector still ran every few messages and mostly walked objects that are
alive anyway: every account held in memory. Measured: `streamer offline` 10.5% of the CPU samples
on a 2,000-account usage-light portfolio (docs/performance.md); the worker 0.54 of the 9.3 CPU s
it spent on the 30-account bench stream (timed with `gc.callbacks`), 0.05 at these thresholds.
The scoring core makes little cyclic garbage (asyncio's futures and exceptions, mostly, in the
worker); when garbage is collected changes no output, only the CPU spent.
"""

from __future__ import annotations

import gc

# Allocations between young collections, young collections per middle one, middle per full one
# (CPython's defaults: 700, 10, 10).
THRESHOLDS = (50_000, 20, 100)


def collect_less() -> None:
    """Move the objects alive now (the imported modules, the configuration, the faust app) out of
    the collector's reach for good, and collect the rest at `THRESHOLDS`' slower pace.

    Frozen objects are still freed by reference counting, only not scanned: faust's RocksDB
    stores run a full `gc.collect()` per table at every rebalance, and `streamer offline`'s forked
    children inherit both."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
