"""A damaged `.gz` events file (cut short, or plain text named .gz) ends every command that reads
events with one line naming the file, exit 1: no "Aborted!", no traceback, and with `--jobs 2`
not the "killed, or out of memory?" hint of a child that died."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer.cli import main
from streamer.stream import replay as replay_module
from tests.poison import usage

LINES = 3000


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("damaged")
    lines = [
        orjson.dumps(usage(f"acct-{n % 40}", f"2024-02-{1 + n % 28:02d}T10:00:00Z", f"e{n}")) + b"\n"
        for n in range(LINES)
    ]
    whole = gzip.compress(b"".join(lines), compresslevel=1)
    truncated = folder / "trunc.jsonl.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    fake = folder / "fake.jsonl.gz"
    fake.write_bytes(b"".join(lines[:50]))
    return {"trunc": truncated, "fake": fake}


def invoke(*args: object) -> Result:
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    return CliRunner().invoke(main, [str(arg) for arg in args], env=clean)


def one_error_line(result: Result) -> str:
    assert "Traceback" not in result.output, result.output
    assert "Aborted" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith("sorting ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def read_before_the_cut(path: Path) -> int:
    """Complete lines `gzip` gives before it finds the file cut short."""
    count = 0
    with gzip.open(path, "rb") as handle:
        try:
            for line in handle:
                count += line.endswith(b"\n")
        except EOFError:
            return count
    raise AssertionError("the file is not truncated")


OFFLINE = [
    pytest.param(["--jobs", "1"], id="jobs1"),
    pytest.param(["--jobs", "1", "--sort"], id="jobs1-sort"),
    pytest.param(["--jobs", "2"], id="jobs2"),
    pytest.param(["--jobs", "2", "--sort"], id="jobs2-sort"),
]


@pytest.mark.parametrize("options", OFFLINE)
def test_offline_truncated_gzip(files: dict[str, Path], tmp_path: Path, options: list[str]) -> None:
    result = invoke("offline", files["trunc"], "--out", tmp_path / "out", "--quiet", *options)
    cut = read_before_the_cut(files["trunc"])
    assert 0 < cut < LINES
    assert one_error_line(result) == (
        f"Error: trunc.jsonl.gz: the gzip stream ends early (truncated file?) after line {cut:,}"
    )


@pytest.mark.parametrize("options", OFFLINE)
def test_offline_plain_text_named_gz(files: dict[str, Path], tmp_path: Path, options: list[str]) -> None:
    result = invoke("offline", files["fake"], "--out", tmp_path / "out", "--quiet", *options)
    assert one_error_line(result) == "Error: fake.jsonl.gz: not a gzip file (name it .jsonl, or gzip it)"


@pytest.mark.parametrize("kind", ["trunc", "fake"])
def test_backtest(files: dict[str, Path], kind: str) -> None:
    result = invoke("backtest", files[kind], "--quiet")
    assert one_error_line(result).startswith(f"Error: {kind}.jsonl.gz: ")


class _FakeSender:
    """`replay`'s sender without a broker: accepts everything."""

    resent = 0
    stalls = 0

    def __init__(self, *_args: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def send(self, topic: str, key: bytes, line: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("kind", ["trunc", "fake"])
def test_replay(files: dict[str, Path], kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "_Sender", _FakeSender)
    result = invoke("replay", files[kind], "--quiet")
    line = one_error_line(result)
    if kind == "trunc":
        assert line.startswith(
            "Error: trunc.jsonl.gz: the gzip stream ends early (truncated file?) after line "
        )
    else:
        assert line == "Error: fake.jsonl.gz: not a gzip file (name it .jsonl, or gzip it)"


def test_an_intact_file_still_reads(files: dict[str, Path], tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl.gz"
    whole.write_bytes(gzip.compress(b"".join(_lines(5))))
    result = invoke("offline", whole, "--out", tmp_path / "out", "--quiet", "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("5 lines")


def _lines(count: int) -> Iterator[bytes]:
    for n in range(count):
        yield orjson.dumps(usage("a", "2024-02-01T10:00:00Z", f"w{n}")) + b"\n"
