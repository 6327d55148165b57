"""A saved replay reads back equal, and only for the file, configuration and core it was made from."""

from __future__ import annotations

import gzip
from pathlib import Path

from streamer.backtest.replaycache import fingerprint, load, save
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
        "other JSON": gzip.compress(b"[1,2,3]"),
        "edited": gzip.compress(digest + b"\n" + edited),
        "no digest": gzip.compress(body),
    }
    for what, raw in damaged.items():
        cache.write_bytes(raw)
        assert load(cache, made_from) is None, what
    cache.write_bytes(good)
    assert load(cache, made_from) == a_replay()
