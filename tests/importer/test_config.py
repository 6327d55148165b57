"""The score configuration's [input] bounds: the import checks and splits the events against the
configuration the consumers will read (--config, else HEALTHSTREAM_SCORE_CONFIG), not the
built-in one, which let through events that offline then dead-lettered."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from streamer.cli import main
from streamer.core.intake import Refused, admit
from streamer.settings import load_score_config

from .portfolio import write_export
from .test_import import read_events

TEAM = "[input]\nmax_count = 1\nearliest = 2024-01-05T00:00:00Z\n"


def import_with(tmp_path: Path, *options: str) -> tuple[Result, Path]:
    mapping = write_export(tmp_path / "export")
    out = tmp_path / "events.jsonl"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out), *options]
    return CliRunner().invoke(main, args), out


def refused_under(config: Path, out: Path) -> list[str]:
    """The reasons the consumers reading `config` give for the lines of `out` they refuse."""
    score = load_score_config(config)
    reasons = []
    for line in out.read_bytes().splitlines():
        admitted = admit(line, key=None, family=None, published_ms=int(time.time() * 1000), config=score)
        if isinstance(admitted, Refused):
            reasons.append(admitted.reason)
    return reasons


def test_the_default_import_has_events_a_stricter_config_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the tests below guard against: the built-in bounds let these events through."""
    monkeypatch.delenv("HEALTHSTREAM_SCORE_CONFIG", raising=False)
    config = tmp_path / "team.toml"
    config.write_text(TEAM)
    result, out = import_with(tmp_path)
    assert result.exit_code == 0, result.output
    assert any(event.get("count", 1) > 1 for event in read_events(out))
    assert refused_under(config, out)


@pytest.mark.parametrize("how", ["--config", "HEALTHSTREAM_SCORE_CONFIG"])
def test_the_input_bounds_of_the_configured_score_config_check_and_split_the_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Usage counts are split at its max_count, and rows before its earliest are bad rows: every
    event written is one offline under that configuration accepts."""
    config = tmp_path / "team.toml"
    config.write_text(TEAM)
    if how == "--config":
        monkeypatch.delenv("HEALTHSTREAM_SCORE_CONFIG", raising=False)
        result, out = import_with(tmp_path, "--config", str(config), "--skip-bad-rows")
    else:
        monkeypatch.setenv("HEALTHSTREAM_SCORE_CONFIG", str(config))
        result, out = import_with(tmp_path, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "(input.earliest)" in result.output
    events = read_events(out)
    assert events and all(event.get("count", 1) == 1 for event in events)
    assert refused_under(config, out) == []


def test_a_config_file_is_an_input_the_import_does_not_write_over(tmp_path: Path) -> None:
    config = tmp_path / "team.toml"
    config.write_text(TEAM)
    result, _ = import_with(tmp_path, "--config", str(config), "--out", str(config))
    assert result.exit_code != 0
    assert config.read_text() == TEAM
