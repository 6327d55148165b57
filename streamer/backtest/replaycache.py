"""A replay saved as gzipped JSON, so that tuning and reporting can be re-run without replaying.

Replaying a large history takes minutes; fitting takes seconds. `streamer backtest
--replay-cache FILE` writes the replay there and, on the next run, reads it back instead of
replaying, but only when it was made from the same events file (path, size, modification time),
the same score configuration, partitions, warm-up and `--now`, and the same scoring core (a digest of the
core's source): anything else replays again and overwrites it. Plain JSON, no pickle.

The file is the SHA-256 of the JSON body on a line of its own, then the body: a cache damaged or
edited after it was written (a NaN score was reused silently) does not match its digest and is
replayed again, as is one that cannot be read at all.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from streamer.backtest.sampling import AlertRecord, Replay, Sample
from streamer.core.config import ScoreConfig
from streamer.native import CORE_DIR

FORMAT = 4  # 2: per-feature volumes and the weekly grid samples; 3: a digest of the body first;
# 4: the span sampled is that of the accepted events (a refused line set it before)


def core_digest() -> str:
    """A digest of the scoring core's source: samples depend on it."""
    digest = hashlib.sha256()
    for path in sorted(CORE_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(
    events: Path, config: ScoreConfig, partitions: int, warmup_days: float, now: datetime | None
) -> dict[str, Any]:
    """What a saved replay must have been made from to be reused."""
    stat = events.stat()
    return {
        "format": FORMAT,
        "events": str(events.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "config": hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16],
        "partitions": partitions,
        "warmup_days": warmup_days,
        "now": now.isoformat() if now is not None else None,
        "core": core_digest(),
    }


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
        "rules": replay.rules,
        "baseline_usage": [[account, at, n] for (account, at), n in replay.baseline_usage.items()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    body = orjson.dumps(data)
    with gzip.open(temporary, "wb", compresslevel=3) as handle:
        handle.write(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    temporary.replace(path)


def load(path: Path, made_from: Mapping[str, Any]) -> Replay | None:
    """The saved replay, or None when there is none or it was made from something else."""
    if not path.exists():
        return None
    try:
        with gzip.open(path, "rb") as handle:
            digest, _, body = handle.read().partition(b"\n")
        if hashlib.sha256(body).hexdigest().encode() != digest:
            return None
        data = orjson.loads(body)
        if data.get("made_from") != dict(made_from):
            return None
        return _replay(data)
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, AttributeError):
        return None  # damaged (orjson's decode error is a ValueError): replayed again


def _replay(data: dict[str, Any]) -> Replay:
    lines, accepted, rejected, seconds = data["counts"]
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
        rules=data["rules"],
        baseline_usage={(account, at): n for account, at, n in data["baseline_usage"]},
        grid_samples=[_unsample(row) for row in data["grid_samples"]],
    )
