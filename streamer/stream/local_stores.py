"""A worker's local table stores are trusted only after a clean stop.

faust restores a partition that has a local RocksDB store by reading its changelog from the
offset the store last recorded as acknowledged, on top of what the store already holds. After a
SIGKILL the store holds writes that the broker never got, or got without the acknowledgement
reaching the store, and the changelog records read back on top are older than some of them:
the restored table mixed the newest local value of some keys with older values of others. A
dead-letter position newer than its partition record made a restarted worker write a dead
letter a second time; a partition record newer than an account record would make it skip
messages that account never got.

After a clean stop (the last checkpoint waited for every changelog record, `Scorer.stop`) the
store and the changelog agree. So a clean stop leaves a marker beside the stores, and a start
without one removes them: faust then restores every partition from its changelog alone, which
is what a worker taking the partitions over on another machine does anyway.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "stopped-cleanly"


def open_local_stores(tabledir: Path, data_dir: Path) -> bool:
    """At start-up, before faust opens the stores: keep them when the last run stopped cleanly,
    else remove them. Returns whether they were kept. The marker is consumed: a run that ends
    any other way than `stopped_cleanly` leaves none."""
    marker = data_dir / MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    if clean or not tabledir.exists():
        return True
    shutil.rmtree(tabledir)
    log.warning(
        "the last run did not stop cleanly: its local table stores were removed, and the "
        "partitions are restored from the changelog topics",
        extra={"tables": str(tabledir)},
    )
    return False


def stopped_cleanly(data_dir: Path) -> None:
    """After a clean stop (the stores closed, every changelog record acknowledged)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).touch()
