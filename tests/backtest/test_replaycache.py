"""A saved replay reads back equal, and only for the file, configuration and core it was made from."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from streamer.backtest.replaycache import NotACache, fingerprint, load, save
from streamer.backtest.sampling import AlertRecord, Replay
from streamer.core.config import ScoreConfig

from .synthetic import sample


def a_replay() -> Replay:
    return Replay(
        samples=[
            sample((50.0, None, 70.5, 10.0), account_id="a", at=86_400_000, signals={"nps": 40.0}),
            sample(account_id="b", at=86_400_000, score=12.5),
        ],
        alerts=[AlertRecord("a", "silence", "warning", 5)],
        timelines={"a": [(1, 1_000_000), (9, 0)], "b": [(2, 5)]},
        month_starts=[86_400_000],
        data_start=1,
        activity_start=2,
        data_end=99,
        lines=10,
        accepted=9,
        rejected=1,
        seconds=0.5,
        rules={"silence": 1},
        baseline_usage={("a", 86_400_000): 3, ("b", 86_400_000): 0},
    )


def test_a_saved_replay_reads_back_equal(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    made_from = fingerprint(events, ScoreConfig(), 4, 60, None)
    save(tmp_path / "replay.json.gz", a_replay(), made_from)
    assert load(tmp_path / "replay.json.gz", made_from) == a_replay()


def test_a_replay_made_from_another_file_or_configuration_is_not_reused(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    made_from = fingerprint(events, ScoreConfig(), 4, 60, None)
    cache = tmp_path / "replay.json.gz"
    save(cache, a_replay(), made_from)
    other_config = ScoreConfig.model_validate(
        {"weights": {"adoption": 0.7, "support": 0.1, "sentiment": 0.1, "financial": 0.1}}
    )
    assert load(cache, fingerprint(events, other_config, 4, 60, None)) is None
    assert load(cache, fingerprint(events, ScoreConfig(), 2, 60, None)) is None
    events.write_text("{}\n{}\n")  # the file changed
    assert load(cache, fingerprint(events, ScoreConfig(), 4, 60, None)) is None
    assert load(tmp_path / "absent.json.gz", made_from) is None


def test_a_file_changed_in_place_at_its_size_and_time_is_not_taken_for_the_one_replayed(
    tmp_path: Path,
) -> None:
    """`cp -p`, `rsync -a` and `tar x` keep a file's time: a file edited at the same size (every
    cancellation moved to another account) read its old replay, with the old figures."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"account_id":"a"}\n')
    cache = tmp_path / "replay.json.gz"
    save(cache, a_replay(), fingerprint(events, ScoreConfig(), 4, 60, None))
    before = events.stat()
    events.write_text('{"account_id":"b"}\n')
    os.utime(events, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert load(cache, fingerprint(events, ScoreConfig(), 4, 60, None)) is None


def test_a_damaged_or_edited_replay_is_replayed_again_not_a_traceback_or_a_wrong_figure(
    tmp_path: Path,
) -> None:
    """A cut file was "Aborted!" (EOFError), a flipped byte a zlib traceback, other JSON a
    KeyError or AttributeError, and a score edited to NaN was reused silently."""
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    made_from = fingerprint(events, ScoreConfig(), 4, 60, None)
    cache = tmp_path / "replay.json.gz"
    save(cache, a_replay(), made_from)
    good = cache.read_bytes()
    digest, body = gzip.decompress(good).split(b"\n", 1)
    half = len(good) // 2
    edited = body.replace(b'"samples":[["', b'"samples":[["x', 1)
    assert edited != body
    damaged = {
        "cut": good[: len(good) // 2],
        "flipped": good[:half] + bytes(b ^ 0xFF for b in good[half : half + 10]) + good[half + 10 :],
        "edited": gzip.compress(digest + b"\n" + edited),
        "no digest": gzip.compress(body),
    }
    for what, raw in damaged.items():
        cache.write_bytes(raw)
        warnings: list[str] = []
        assert load(cache, made_from, warnings.append) is None, what
        assert len(warnings) == 1 and "replaying again and replacing it" in warnings[0], what
    cache.write_bytes(good)
    assert load(cache, made_from) == a_replay()


def test_a_file_that_is_not_a_replay_cache_is_refused_not_read_as_a_damaged_one(tmp_path: Path) -> None:
    """An events file of another portfolio or notes named by --replay-cache read as "no cache":
    the replay was saved over them, silently."""
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    made_from = fingerprint(events, ScoreConfig(), 4, 60, None)
    others = {
        "events.jsonl.gz": gzip.compress(b'{"event_id":"e1","event_type":"usage.recorded"}\n'),
        "events.jsonl": b'{"event_id":"e1","event_type":"usage.recorded"}\n',
        "notes.txt": b"my notes\n",
        "other.json.gz": gzip.compress(b"[1,2,3]"),
    }
    for name, raw in others.items():
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(NotACache, match=f"{name}: not a replay cache"):
            load(path, made_from)
        assert path.read_bytes() == raw


def test_a_gzip_bomb_as_a_replay_cache_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A 2 MB gzip starting as a cache and decompressing to 2 GB was read whole: MemoryError."""
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        handle.write(b"0" * 64 + b'\n{"made_from":{"format":4},"x":"')
        chunk = b"a" * (1 << 20)
        for _ in range(80):  # 80 MiB from some 80 KB: over the 64 MiB floor and 100 times its size
            handle.write(chunk)
    with pytest.raises(NotACache, match="decompresses to more than"):
        load(bomb, fingerprint(events, ScoreConfig(), 4, 60, None))


def test_an_empty_file_as_a_replay_cache_is_written_over(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    empty = tmp_path / "replay.gz"
    empty.touch()
    assert load(empty, fingerprint(events, ScoreConfig(), 4, 60, None)) is None
