"""The sample score configuration in README *Configuration* is one the workers accept."""

from __future__ import annotations

import tomllib
from pathlib import Path

from streamer.core.config import ScoreConfig

README = Path(__file__).resolve().parent.parent / "README.md"


def sample_config() -> str:
    """The README's first TOML block that starts with `empty_score` (the annotated sample)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("```toml\nempty_score") + len("```toml\n")
    return text[start : text.index("```", start)]


def test_the_readmes_sample_configuration_is_valid() -> None:
    config = ScoreConfig.model_validate(tomllib.loads(sample_config()))
    assert config.bands.green_share == 20 and config.peers.refresh_days == 1
