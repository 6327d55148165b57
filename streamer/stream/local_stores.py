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

The stores are also trusted only by the app they were written for: faust names them by table
alone, so a worker of another app id given the same data directory opened the first app's
stores over its own changelogs (faust's ConsistencyError at best). The directory records its
app id, and a worker of another one removes the stores it finds there.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "stopped-cleanly"
OWNER = "app-id"  # the app id whose stores the directory holds


PROBE = ".write-probe"


def data_dir_problem(data_dir: Path) -> str | None:
    """What keeps the worker from using `data_dir` (created when missing), or None: a file in
    its place, a folder that cannot be created or written (read-only, no rights). The worker
    met these at start-up with a traceback of 30-40 lines."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / PROBE
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return (
            f"the data directory {data_dir} (HEALTHSTREAM_DATA_DIR or --data-dir) cannot be used: "
            f"{exc.strerror or exc}; give a folder the worker can create and write"
        )
    return None


def open_local_stores(tabledir: Path, data_dir: Path, app_id: str) -> bool:
    """At start-up, before faust opens the stores: keep them when the last run stopped cleanly
    and was of `app_id` (a directory that names none predates the record: its stores count as
    this app's), else remove them. Returns whether they were kept. The marker is consumed: a
    run that ends any other way than `stopped_cleanly` leaves none."""
    marker = data_dir / MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    owner = data_dir / OWNER
    previous = owner.read_text(encoding="utf-8").strip() if owner.exists() else app_id
    data_dir.mkdir(parents=True, exist_ok=True)
    owner.write_text(app_id + "\n", encoding="utf-8")
    if previous != app_id and tabledir.exists():
        shutil.rmtree(tabledir)
        log.warning(
            "the data directory held the local table stores of another app id: they were removed, "
            "and the partitions are restored from this app's changelog topics (give each app a "
            "data directory of its own)",
            extra={"tables": str(tabledir), "their_app_id": previous[:200], "app_id": app_id},
        )
        return False
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
