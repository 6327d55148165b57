"""The mapping's currency against the score configuration's rates: a currency offline and the
worker have no rate for was imported, then every subscription event was dead-lettered."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from streamer.cli import main

from .portfolio import write_export


def import_in(tmp_path: Path, currency: str) -> tuple[int, str, Path]:
    mapping = write_export(tmp_path / "export")
    text = mapping.read_text()
    assert 'currency = "USD"' in text
    mapping.write_text(text.replace('currency = "USD"', f'currency = "{currency}"'))
    out = tmp_path / "events.jsonl"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output, out


def test_a_currency_the_score_config_has_no_rate_for_is_refused_before_the_tables_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEALTHSTREAM_SCORE_CONFIG", raising=False)
    code, output, out = import_in(tmp_path, "CHF")
    assert code == 2, output
    assert output.startswith("Error: currency 'CHF' of the mapping has no exchange rate"), output
    assert "(configured: EUR, GBP, USD)" in output and "add it under [currency.rates]" in output
    assert len(output.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("currency", ["USD", "EUR"])
def test_the_reporting_currency_or_one_with_a_rate_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, currency: str
) -> None:
    monkeypatch.delenv("HEALTHSTREAM_SCORE_CONFIG", raising=False)
    code, output, _ = import_in(tmp_path, currency)
    assert code == 0, output


def test_a_rate_in_the_score_config_offline_reads_lets_the_currency_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEALTHSTREAM_SCORE_CONFIG is what offline, backtest and the worker read by default."""
    config = tmp_path / "score.toml"
    config.write_text('[currency.rates]\nCHF = "1.1"\n')
    monkeypatch.setenv("HEALTHSTREAM_SCORE_CONFIG", str(config))
    code, output, _ = import_in(tmp_path, "CHF")
    assert code == 0, output


def test_a_rate_in_the_score_config_named_by_config_lets_the_currency_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--config names the configuration as for `streamer offline --config`: its rates are checked."""
    monkeypatch.delenv("HEALTHSTREAM_SCORE_CONFIG", raising=False)
    config = tmp_path / "score.toml"
    config.write_text('[currency.rates]\nCHF = "1.1"\n')
    mapping = write_export(tmp_path / "export")
    mapping.write_text(mapping.read_text().replace('currency = "USD"', 'currency = "CHF"'))
    out = tmp_path / "events.jsonl"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "the built-in score config" in refused.output, refused.output
    result = CliRunner().invoke(main, [*args, "--config", str(config)])
    assert result.exit_code == 0, result.output
