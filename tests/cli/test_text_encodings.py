"""How an events file is written as text: a UTF-8 byte order mark is left out (it made the first
event a dead letter), while UTF-16 or UTF-32 text and lines ending in a carriage return alone end
every command that reads events with one line saying what to convert (each line had been a "not
valid JSON" dead letter)."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from streamer.offline.runner import UTF8_BOM
from streamer.stream import replay as replay_module
from tests.cli.test_damaged_input import OFFLINE, _FakeSender, invoke, one_error_line
from tests.poison import usage

LINES = [
    orjson.dumps(usage(f"acct-{n % 3}", f"2024-02-{1 + n:02d}T10:00:00Z", f"e{n}")) + b"\n" for n in range(6)
]
WIDE = (
    "the file is UTF-16 or UTF-32 text; events are JSON lines in UTF-8 "
    "(convert it first, e.g. with iconv -f UTF-16 -t UTF-8)"
)
CR_ALONE = (
    "its lines end in a carriage return (\\r) alone; events are JSON lines ending in \\n or \\r\\n "
    "(convert it first, e.g. with tr '\\r' '\\n')"
)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def scored(tmp_path: Path, events: Path, *options: str) -> tuple[str, bytes]:
    out = tmp_path / f"out-{events.name}-{'-'.join(options)}"
    result = invoke("offline", events, "--out", out, "--quiet", *options)
    assert result.exit_code == 0, result.output
    return result.output, (out / "health.jsonl").read_bytes()


@pytest.mark.parametrize("options", OFFLINE)
def test_a_utf8_byte_order_mark_is_left_out_wherever_a_line_starts_with_one(
    tmp_path: Path, options: list[str]
) -> None:
    """At the file's start (a Windows editor's export) and at a later line (two such files
    joined): every event is read, and the snapshots are those of the file without the marks."""
    plain = write(tmp_path / "plain.jsonl", b"".join(LINES))
    marked = write(tmp_path / "marked.jsonl", UTF8_BOM + b"".join(LINES[:3]) + UTF8_BOM + b"".join(LINES[3:]))
    printed, snapshots = scored(tmp_path, marked, *options)
    assert ": 6 accepted, 0 duplicates, 0 rejected" in printed, printed
    assert snapshots == scored(tmp_path, plain, *options)[1]


ENCODINGS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]


def wide_file(tmp_path: Path, encoding: str, suffix: str) -> Path:
    text = b"".join(LINES).decode()
    return write(tmp_path / f"{encoding}{suffix}", text.encode(encoding))


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("options", OFFLINE)
def test_offline_refuses_utf16_and_utf32_text(tmp_path: Path, encoding: str, options: list[str]) -> None:
    events = wide_file(tmp_path, encoding, ".jsonl")
    result = invoke("offline", events, "--out", tmp_path / "out", "--quiet", *options)
    assert one_error_line(result) == f"Error: {events.name}: {WIDE}"


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_backtest_and_replay_refuse_utf16_text(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = wide_file(tmp_path, "utf-16", suffix)
    assert one_error_line(invoke("backtest", events, "--quiet")) == f"Error: {events.name}: {WIDE}"
    monkeypatch.setattr(replay_module, "_Sender", _FakeSender)
    assert one_error_line(invoke("replay", events, "--quiet")) == f"Error: {events.name}: {WIDE}"


@pytest.mark.parametrize("options", OFFLINE)
def test_lines_ending_in_a_carriage_return_alone_are_refused(tmp_path: Path, options: list[str]) -> None:
    events = write(tmp_path / "mac.jsonl", b"".join(LINES).replace(b"\n", b"\r"))
    result = invoke("offline", events, "--out", tmp_path / "out", "--quiet", *options)
    assert one_error_line(result) == f"Error: mac.jsonl: {CR_ALONE}"


def test_backtest_and_replay_refuse_lines_ending_in_a_carriage_return_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = write(tmp_path / "mac.jsonl.gz", b"".join(LINES).replace(b"\n", b"\r"))
    assert one_error_line(invoke("backtest", events, "--quiet")) == f"Error: mac.jsonl.gz: {CR_ALONE}"
    monkeypatch.setattr(replay_module, "_Sender", _FakeSender)
    assert one_error_line(invoke("replay", events, "--quiet")) == f"Error: mac.jsonl.gz: {CR_ALONE}"


def test_crlf_lines_and_a_carriage_return_as_whitespace_in_a_line_still_read(tmp_path: Path) -> None:
    """Windows line ends, and a lone CR between two fields of one object (valid JSON
    whitespace), are not what the check refuses."""
    crlf = [line.replace(b"\n", b"\r\n") for line in LINES]
    crlf[0] = crlf[0].replace(b',"account_id"', b',\r"account_id"')
    events = write(tmp_path / "windows.jsonl", b"".join(crlf))
    printed, snapshots = scored(tmp_path, events, "--jobs", "1")
    assert ": 6 accepted, 0 duplicates, 0 rejected" in printed, printed
    assert snapshots == scored(tmp_path, write(tmp_path / "plain.jsonl", b"".join(LINES)), "--jobs", "1")[1]


BAD_LINES = {
    "gzip-bytes": b"\x1f\x8b\x08\x00 not a gzip stream\n",
    "carriage-return": b'{"a": 1}\r{"b": 2}\n',
    "nul-first": b'\x00{"a": 1}\n',
    "utf16-mark": b'\xff\xfe{"a": 1}\n',
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_one_bad_line_that_sorts_first_is_a_dead_letter_with_any_number_of_processes(
    tmp_path: Path, kind: str
) -> None:
    """`--sort` puts lines the contract refuses first in its sorted copy; the processes of
    `--jobs 2` opened that copy as an input, sniffed it for gzip and checked its first line's
    encoding, and the run failed on one line that one process dead-lettered."""
    events = write(tmp_path / "events.jsonl", b"".join(LINES[:3]) + BAD_LINES[kind] + b"".join(LINES[3:]))
    runs = [scored(tmp_path, events, "--sort", "--jobs", jobs) for jobs in ("1", "2")]
    for printed, _ in runs:
        assert ": 6 accepted, 0 duplicates, 1 rejected" in printed, printed
    assert runs[0][1] == runs[1][1]
