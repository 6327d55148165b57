"""`streamer offline` on a file that holds no events: it says so and fails, its outputs written."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer.cli import main
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
