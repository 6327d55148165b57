"""`streamer simulate` refuses, before it simulates, a run whose events no consumer would take
and an --out that names a folder; it gzips an --out named .GZ as one named .gz."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from streamer.sim.cli import simulate
from streamer.sim.config import LAST_START, SimulationConfig


@pytest.mark.parametrize(
    ("start", "months"), [("9000-01-01", 3), ("8999-12-02", 1), ("8999-10-02", 3), ("8990-02-01", 120)]
)
def test_a_run_ending_past_the_consumers_last_event_time_is_refused(
    tmp_path: Path, start: str, months: int
) -> None:
    """Up to 9000-01-01 was taken, and every consumer refused the events from then on."""
    out = tmp_path / "x.jsonl"
    result = CliRunner().invoke(simulate, ["--start", start, "--months", str(months), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"start {start} + {months} months runs past 9000-01-01" in result.output, result.output
    assert "start on or before" in result.output and not out.exists()


@pytest.mark.parametrize("months", [1, 3, 12, 120])
def test_the_latest_start_it_names_ends_the_run_on_the_last_day(months: int) -> None:
    config = SimulationConfig(months=months, start=date(2024, 1, 1))
    latest = SimulationConfig(months=months, start=config.latest_start())  # taken
    assert latest.end_ts == SimulationConfig(months=1, start=LAST_START.replace(year=8999, month=12)).end_ts


@pytest.mark.parametrize("name", ["folder/", "folder//"])
def test_an_out_written_as_a_folder_is_refused(tmp_path: Path, name: str) -> None:
    """The path type dropped the separator: a file named `folder` was written."""
    out = f"{tmp_path}/{name}"
    result = CliRunner().invoke(simulate, ["--months", "1", "--accounts", "2", "--out", out])
    assert result.exit_code == 2, result.output
    assert "names a folder, not a file" in result.output
    assert not (tmp_path / "folder").exists()


def test_an_out_named_in_capitals_is_gzipped_with_its_truth_beside(tmp_path: Path) -> None:
    out = tmp_path / "EV.JSONL.GZ"
    result = CliRunner().invoke(simulate, ["--months", "1", "--accounts", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(out.read_bytes()).startswith(b'{"')
    assert (tmp_path / "EV.truth.json").is_file()
