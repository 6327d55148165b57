"""`streamer offline` on a file that holds no events: it says so and fails, its outputs written."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer.cli import main
from streamer.contract.decode import MAX_EVENT_BYTES
from tests.poison import started


def invoke(*args: object) -> Result:
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    return CliRunner(env=clean).invoke(main, ["offline", *map(str, args), "--quiet"], catch_exceptions=False)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_table_given_for_events_fails_naming_the_first_reason_and_streamer_import(
    tmp_path: Path, jobs: str
) -> None:
    table = tmp_path / "subscription.csv"
    table.write_text("account_id,product,start_date,end_date,mrr\na1,basic,2024-01-01,,10\n")
    result = invoke(table, "--out", tmp_path / "out", "--jobs", jobs)
    assert result.exit_code == 1
    assert f"no line of {table} is an event (2 rejected, the first as not valid JSON" in result.output
    assert "go through `streamer import` first" in result.output
    assert len((tmp_path / "out" / "deadletter.jsonl").read_bytes().splitlines()) == 2


def test_an_empty_file_fails(tmp_path: Path) -> None:
    empty = tmp_path / "events.jsonl"
    empty.write_bytes(b"\n  \n")
    result = invoke(empty, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{empty} holds no events" in result.output


def test_one_event_among_bad_lines_is_a_run_that_scored(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    event = orjson.dumps(started("a1", "2024-01-01T00:00:00Z", "e1"))
    events.write_bytes(b"not json\n" + event + b"\n{}\n")
    result = invoke(events, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "1 accepted, 0 duplicates, 2 rejected" in result.output


@pytest.mark.parametrize("name", ["alerts.jsonl", "health.jsonl", "accounts.jsonl"])
def test_an_input_where_an_output_goes_is_refused_and_kept(tmp_path: Path, name: str) -> None:
    """Re-scoring out/alerts.jsonl into out: the outputs were opened for writing first, the input
    was emptied and then blamed ("holds no events")."""
    out = tmp_path / "out"
    out.mkdir()
    events = out / name
    events.write_bytes(orjson.dumps(started("a1", "2024-01-01T00:00:00Z", "e1")) + b"\n")
    before = events.read_bytes()
    result = invoke(events, "--out", out)
    assert result.exit_code == 1 and "is also an input" in result.output, result.output
    assert events.read_bytes() == before


def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(started("a1", "2024-01-01T00:00:00Z", "e1")) + b"\n")
    result = CliRunner().invoke(main, ["offline", str(events), "--out", "/proc/healthstream-out", "--quiet"])
    assert result.exit_code == 1 and "cannot create the folder /proc/healthstream-out" in result.output
    assert "Traceback" not in result.output


def test_events_from_a_pipe_are_read_whole_whatever_the_jobs(tmp_path: Path) -> None:
    """Each process read "the whole file": from a FIFO they shared its lines, and lines were lost
    and torn (7,250 of 15,789 accepted, exit 0). A pipe is read by one process."""
    lines = [orjson.dumps(started(f"a{n}", "2024-01-01T00:00:00Z", f"e{n}")) for n in range(2000)]
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"\n".join(lines) + b"\n"))
    writer.start()
    result = invoke(fifo, "--out", tmp_path / "out", "--jobs", "2")
    writer.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert "2,000 accepted, 0 duplicates, 0 rejected" in result.output, result.output


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_line_past_the_largest_event_is_cut_when_read_and_dead_lettered(
    tmp_path: Path, suffix: str
) -> None:
    """One line of 2 GB (a 2 MB .gz of zeros) took 4.4 GB of memory, a bigger one a MemoryError
    traceback: a line is read up to MAX_EVENT_BYTES + 1 and the rest skipped to its end."""
    event = orjson.dumps(started("a1", "2024-01-01T00:00:00Z", "e1"))
    data = b"x" * (3 * MAX_EVENT_BYTES) + b"\n" + event + b"\n" + b"y" * (MAX_EVENT_BYTES + 5)
    events = tmp_path / f"events{suffix}"
    events.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        result = invoke(events, "--out", out, "--jobs", jobs)
        assert result.exit_code == 0, result.output
        assert "1 accepted, 0 duplicates, 2 rejected" in result.output, result.output
        letters = [orjson.loads(line) for line in (out / "deadletter.jsonl").read_bytes().splitlines()]
        assert all(
            "1,048,577 bytes or more, past the 1,048,576 an event may have" in d["error"] for d in letters
        )


@pytest.mark.parametrize("command", ["offline", "backtest", "replay"])
def test_an_events_file_named_with_a_terminal_escape_is_refused_escaped(tmp_path: Path, command: str) -> None:
    """The progress bar and the errors named the file raw: its escape sequence set the terminal's
    title and colours."""
    events = tmp_path / "ev\x1b]0;PWNED\x07\x1b[31m.jsonl"
    events.write_bytes(orjson.dumps(started("a1", "2024-01-01T00:00:00Z", "e1")) + b"\n")
    extra = ["--out", str(tmp_path / "out")] if command == "offline" else []
    result = CliRunner().invoke(main, [command, str(events), *extra, "--quiet"])
    assert result.exit_code == 2 and "holds control characters: rename the file" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output and "\\x1b]0;PWNED" in result.output
