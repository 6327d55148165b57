"""Kept JSON bytes hold about their own size in memory (orjson's own output holds far more)."""

from __future__ import annotations

import gc
import tracemalloc

import orjson

from streamer.jsonbytes import kept_json

SNAPSHOT_LIKE = {"account_id": "acct-1", "reasons": [{"message": "x" * 40, "value": n} for n in range(40)]}


def _held(make: object) -> float:
    """Traced bytes per value of 200 values made by `make`, kept alive."""
    gc.collect()
    tracemalloc.start()
    try:
        kept = [make(SNAPSHOT_LIKE) for _ in range(200)]  # type: ignore[operator]
        held = tracemalloc.get_traced_memory()[0] / len(kept)
    finally:
        tracemalloc.stop()
    return held


def test_kept_json_is_the_same_bytes_in_memory_of_their_own_size() -> None:
    assert kept_json(SNAPSHOT_LIKE) == orjson.dumps(SNAPSHOT_LIKE)
    size = len(orjson.dumps(SNAPSHOT_LIKE))
    assert 2_000 < size < 4_000
    assert _held(kept_json) < 1.2 * size + 100
