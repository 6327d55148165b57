"""A gzip events file is read as gzip whatever its name says: `EV.JSONL.GZ`, or gzip content
named `.jsonl`, was read as text by offline, backtest and replay (every line a "not valid JSON"
dead letter, and a hint to run `streamer import`)."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer.cli import main
from streamer.offline.runner import open_events
from streamer.stream import replay as replay_module
from tests.poison import usage

LINES = [
    orjson.dumps(usage(f"acct-{n % 7}", f"2024-02-{1 + n % 28:02d}T10:00:00Z", f"e{n}")) + b"\n"
    for n in range(60)
]


def invoke(*args: object) -> Result:
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    return CliRunner().invoke(main, [str(arg) for arg in args], env=clean)


@pytest.fixture(params=["EV.JSONL.GZ", "events.Gz", "packed.jsonl", "no-suffix"])
def packed(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / str(request.param)
    path.write_bytes(gzip.compress(b"".join(LINES)))
    return path


def test_the_shared_opener_reads_gzip_by_its_first_bytes(packed: Path) -> None:
    with open_events(packed) as handle:
        assert list(handle) == LINES


def test_the_shared_opener_reads_gzip_from_a_pipe(tmp_path: Path) -> None:
    """It only peeks at the first bytes: a pipe is read once."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with subprocess.Popen(["sh", "-c", f"cat > '{fifo}'"], stdin=subprocess.PIPE) as writer:
        assert writer.stdin is not None
        writer.stdin.write(gzip.compress(b"".join(LINES)))
        writer.stdin.close()
        with open_events(fifo) as handle:
            assert list(handle) == LINES


@pytest.mark.parametrize("options", [["--jobs", "1"], ["--jobs", "2", "--sort"]])
def test_offline_scores_a_gzip_file_whatever_its_name(
    packed: Path, tmp_path: Path, options: list[str]
) -> None:
    result = invoke("offline", packed, "--out", tmp_path / "out", "--quiet", *options)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{len(LINES)} lines"), result.stdout
    assert b"not valid JSON" not in (tmp_path / "out" / "deadletter.jsonl").read_bytes()


class _CountingSender:
    """`replay`'s sender without a broker: counts what it is given."""

    resent = 0
    stalls = 0
    sent = 0

    def __init__(self, *_args: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def send(self, topic: str, key: bytes, line: bytes) -> None:
        _CountingSender.sent += 1

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        pass


def test_replay_publishes_a_gzip_file_named_in_capitals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "EV.JSONL.GZ"
    path.write_bytes(gzip.compress(b"".join(LINES)))
    monkeypatch.setattr(replay_module, "_Sender", _CountingSender)
    _CountingSender.sent = 0
    result = invoke("replay", path, "--quiet")
    assert result.exit_code == 0, result.output
    assert _CountingSender.sent == len(LINES)


def test_the_import_hint_follows_only_lines_that_look_like_a_table(tmp_path: Path) -> None:
    table = tmp_path / "subscription.csv"
    table.write_text("account_id,product,start_date\na1,basic,2024-01-01\n")
    result = invoke("offline", table, "--out", tmp_path / "t", "--quiet")
    assert result.exit_code == 1 and "go through `streamer import` first" in result.output
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(LINES))
    result = invoke("offline", events, "--out", tmp_path / "e", "--quiet", "--now", "2020-01-01")
    assert result.exit_code == 1 and "max_skew_hours" in result.output, result.output
    assert "streamer import" not in result.output
