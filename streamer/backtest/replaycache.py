"""A replay saved as gzipped JSON, so that tuning and reporting can be re-run without replaying.

Replaying a large history takes minutes; fitting takes seconds. `streamer backtest
--replay-cache FILE` writes the replay there and, on the next run, reads it back instead of
replaying, but only when it was made from the same events file (path, size, modification time),
the same score configuration, partitions, warm-up and `--now`, and the same scoring core (a digest of the
core's source): anything else replays again and overwrites it. Without `--now` the bound on event
time follows the wall clock: a later one reuses the replay only when no line was refused as dated
after the bound it was made with (`reusable`). Plain JSON, no pickle.

The file is the SHA-256 of the JSON body on a line of its own, then the body: a cache damaged or
edited after it was written (a NaN score was reused silently) does not match its digest and is
replayed again (and replaced, with a warning), as is one that cannot be read further.

A file that is not a replay cache by its start (the digest line and `{"made_from":`, or the body
alone as format 2 wrote it) is never replaced: an events file or notes named by mistake were
overwritten silently. Nor is one that decompresses to more than `MAX_RATIO` times its size (a
replay's JSON compresses some 5-10 times; a gzip bomb of 2 MB ran out of memory).
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from streamer.backtest.sampling import AlertRecord, Replay, Sample
from streamer.core.config import ScoreConfig
from streamer.native import CORE_DIR
from streamer.offline.runner import publication_ms

FORMAT = 5  # 2: per-feature volumes and the weekly grid samples; 3: a digest of the body first;
# 4: the span sampled is that of the accepted events (a refused line set it before); 5: the bound
# on event time used and the lines beyond it, duplicates and blank lines


HEAD = 200  # bytes of the decompressed start that tell a replay cache
_OURS = re.compile(rb'([0-9a-f]{64}\n)?\{"made_from":')
MAX_RATIO = 100  # decompressed / compressed size beyond which a file is no replay cache
MIN_LIMIT = 64 << 20  # ... when it decompresses to more than this as well
CHUNK = 1 << 20


class NotACache(ValueError):
    """An existing file that is not a replay cache (another file named by mistake): left alone."""


def core_digest() -> str:
    """A digest of the scoring core's source: samples depend on it."""
    digest = hashlib.sha256()
    for path in sorted(CORE_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(
    events: Path,
    config: ScoreConfig,
    partitions: int,
    warmup_days: float,
    now: datetime | None,
    published_ms: int | None = None,
) -> dict[str, Any]:
    """What a saved replay must have been made from to be reused: the events file's content
    too (its SHA-256, about a second per GB), not only its path, size and time: `cp -p`,
    `rsync -a` and `tar x` keep the time, and a file changed in place at the same size was
    taken for the one replayed. `published_ms`: when the events count as published (`--now`, or
    the wall clock; by default `--now`'s), which bounds their time (see `reusable`)."""
    if published_ms is None:
        published_ms = publication_ms(now)
    stat = events.stat()
    with events.open("rb") as content:
        digest = hashlib.file_digest(content, "sha256").hexdigest()
    return {
        "format": FORMAT,
        "events": str(events.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": digest,
        "config": hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16],
        "partitions": partitions,
        "warmup_days": warmup_days,
        "now": now.isoformat() if now is not None else None,
        LATEST_KEY: config.input.latest_ms(published_ms),
        "core": core_digest(),
    }


LATEST_KEY = "latest_event_ms"  # the bound on event time the replay applied


def reusable(saved: Mapping[str, Any], beyond: int, made_from: Mapping[str, Any]) -> bool:
    """Whether a replay made from `saved`, which refused `beyond` lines as dated after its bound,
    stands for one made from `made_from`. Everything must be the same but the bound, which moves
    with the wall clock when `--now` is not given: a later bound judges every event as the
    earlier one did when none was beyond it (an event refused as in the future may be accepted
    now, and an earlier bound may refuse what was accepted)."""
    if {**saved, LATEST_KEY: None} != {**made_from, LATEST_KEY: None}:
        return False
    was, now = saved.get(LATEST_KEY), made_from[LATEST_KEY]
    return bool(was == now or (beyond == 0 and isinstance(was, int) and was < now))


def _sample(s: Sample) -> list[Any]:
    return [
        s.account_id,
        s.at,
        s.score,
        s.band,
        s.stage,
        s.plan,
        list(s.components),
        s.mrr,
        dict(s.signals),
        dict(s.volumes),
    ]


def _unsample(row: list[Any]) -> Sample:
    account, at, score, band, stage, plan, components, mrr, signals, volumes = row
    return Sample(account, at, score, band, stage, plan, tuple(components), mrr, signals, volumes)


def save(path: Path, replay: Replay, made_from: Mapping[str, Any]) -> None:
    data = {
        "made_from": dict(made_from),
        "samples": [_sample(s) for s in replay.samples],
        "grid_samples": [_sample(s) for s in replay.grid_samples],
        "alerts": [[a.account_id, a.rule, a.severity, a.raised_at] for a in replay.alerts],
        "timelines": replay.timelines,
        "month_starts": replay.month_starts,
        "span": [replay.data_start, replay.activity_start, replay.data_end],
        "counts": [replay.lines, replay.accepted, replay.rejected, replay.seconds],
        "skipped": [replay.duplicates, replay.blank, replay.beyond_bound],
        "rules": replay.rules,
        "baseline_usage": [[account, at, n] for (account, at), n in replay.baseline_usage.items()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    body = orjson.dumps(data)
    try:
        with gzip.open(temporary, "wb", compresslevel=3) as handle:
            handle.write(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        temporary.replace(path)
    except BaseException:  # Ctrl-C or a full disk: no half-written file left
        temporary.unlink(missing_ok=True)
        raise


def load(
    path: Path, made_from: Mapping[str, Any], on_damaged: Callable[[str], None] | None = None
) -> Replay | None:
    """The saved replay, or None when there is none or it was made from something else.

    Raises NotACache when `path` is a file that is not a replay cache; `on_damaged` is told why
    a cache that cannot be used (damaged, edited) will be replaced."""
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return None  # nothing to lose: an empty file (a mktemp) is written over
    try:
        with gzip.open(path, "rb") as handle:
            head = handle.read(HEAD)
            if not _OURS.match(head):
                raise NotACache(f"{path}: not a replay cache (it does not start as one): {_keep}")
            raw = _bounded(handle, head, path)
    except NotACache:
        raise
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, or cut before its start was read
        if not _started(path):
            raise NotACache(f"{path}: not a replay cache (not a gzip file of one): {_keep}") from None
        _damaged(on_damaged, path, str(exc) or type(exc).__name__)
        return None
    digest, _, body = raw.partition(b"\n")
    if hashlib.sha256(body).hexdigest().encode() != digest:
        _damaged(on_damaged, path, "its content does not match its digest (damaged or edited)")
        return None
    try:
        data = orjson.loads(body)
        beyond = data["skipped"][2] if "skipped" in data else 1  # format 4 and before: not known
        if not reusable(data["made_from"], beyond, made_from):
            return None
        return _replay(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # orjson's decode error: ValueError
        _damaged(on_damaged, path, f"it cannot be read back ({type(exc).__name__})")
        return None


_keep = "it is left alone; name another file with --replay-cache"


def _bounded(handle: gzip.GzipFile, head: bytes, path: Path) -> bytes:
    """The rest of the decompressed file after `head`, refused (NotACache) past its bound."""
    limit = max(MIN_LIMIT, MAX_RATIO * path.stat().st_size)
    data = bytearray(head)
    while chunk := handle.read(CHUNK):
        data += chunk
        if len(data) > limit:
            raise NotACache(
                f"{path}: not a replay cache (it decompresses to more than {limit:,} bytes, over "
                f"{MAX_RATIO} times its size): {_keep}"
            )
    return bytes(data)


def _started(path: Path) -> bool:
    """Whether the first bytes of `path` decompress as a replay cache starts (a cut or damaged one)."""
    try:
        with path.open("rb") as raw:
            start = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw.read(64 << 10), HEAD)
    except (OSError, zlib.error):
        return False
    return _OURS.match(start) is not None


def _damaged(on_damaged: Callable[[str], None] | None, path: Path, why: str) -> None:
    if on_damaged is not None:
        on_damaged(f"{path}: the replay cache cannot be used ({why}): replaying again and replacing it")


def _replay(data: dict[str, Any]) -> Replay:
    lines, accepted, rejected, seconds = data["counts"]
    duplicates, blank, beyond_bound = data["skipped"]
    data_start, activity_start, data_end = data["span"]
    return Replay(
        samples=[_unsample(row) for row in data["samples"]],
        alerts=[AlertRecord(*row) for row in data["alerts"]],
        timelines={
            account: [(int(at), int(mrr)) for at, mrr in points]
            for account, points in data["timelines"].items()
        },
        month_starts=data["month_starts"],
        data_start=data_start,
        activity_start=activity_start,
        data_end=data_end,
        lines=lines,
        accepted=accepted,
        rejected=rejected,
        seconds=seconds,
        duplicates=duplicates,
        blank=blank,
        beyond_bound=beyond_bound,
        rules=data["rules"],
        baseline_usage={(account, at): n for account, at, n in data["baseline_usage"]},
        grid_samples=[_unsample(row) for row in data["grid_samples"]],
    )
