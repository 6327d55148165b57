"""The cyclic garbage collector's pace for `streamer offline`: a process that scores a file and exits.

Scoring allocates many small objects per evaluation (windows, facts, snapshots) that reference
counting frees at once; the cyclic collector, run every 700 allocations by default, then mostly
walks objects that are alive anyway: every account held in memory (10.5% of the CPU samples on a
2,000-account usage-light portfolio, see docs/performance.md). The scoring core makes little
cyclic garbage (289 objects in the full collections of that run, the same peak RSS either way),
and when garbage is collected changes no output, only the CPU spent.
"""

from __future__ import annotations

import gc

# Allocations between young collections, young collections per middle one, middle per full one
# (CPython's defaults: 700, 10, 10).
THRESHOLDS = (50_000, 20, 100)


def collect_less() -> None:
    """Move the objects alive now (the imported modules, the configuration) out of the
    collector's reach for good, and collect the rest at `THRESHOLDS`' slower pace.

    For a process that scores and then exits (forked children inherit both)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
