"""The scoring configuration as the commands load it: a bad file stops the command, with why."""

from __future__ import annotations

from pathlib import Path

import click

from streamer.core.config import ScoreConfig
from streamer.settings import ConfigError, load_score_config


def score_config_or_fail(path: Path | None) -> ScoreConfig:
    """The validated config at `path` (the defaults when None), or a click error listing every
    offending key."""
    try:
        return load_score_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
