"""A misspelt key in a configuration file is told the key it was probably meant to be."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_core import ErrorDetails

from streamer.core.config import ScoreConfig
from streamer.importer.mapping import Mapping
from streamer.settings import ConfigError, load_score_config
from streamer.suggest import unknown_key_hint


@pytest.mark.parametrize(
    ("model", "location", "hint"),
    [
        (ScoreConfig, ("weights", "suport"), " (did you mean 'support'?)"),
        (ScoreConfig, ("signal_weights", "npss"), " (did you mean 'nps'?)"),
        (ScoreConfig, ("bandz",), " (did you mean 'bands'?)"),
        (ScoreConfig, ("nothing_like_it",), ""),
        (ScoreConfig, ("weights", "suport", "deeper"), ""),  # not a model there: no guess
        (Mapping, ("subscriptions", "mmr"), " (did you mean 'mrr'?)"),
        (Mapping, ("events", "usr"), " (did you mean 'user'?)"),  # an optional table
    ],
)
def test_an_unknown_key_near_a_known_one_is_named(model: type, location: tuple[str, ...], hint: str) -> None:
    error = ErrorDetails(type="extra_forbidden", loc=location, msg="Extra inputs are not permitted", input=1)
    assert unknown_key_hint(model, error) == hint


def test_only_an_unknown_key_gets_a_guess() -> None:
    error = ErrorDetails(type="missing", loc=("weights", "suport"), msg="Field required", input={})
    assert unknown_key_hint(ScoreConfig, error) == ""


def test_the_score_config_error_names_the_key_meant(tmp_path: Path) -> None:
    path = tmp_path / "score.toml"
    path.write_text("[weights]\nsuport = 0.3\n")
    with pytest.raises(
        ConfigError, match=r"weights\.suport: Extra inputs are not permitted \(did you mean 'support'\?\)"
    ):
        load_score_config(path)
