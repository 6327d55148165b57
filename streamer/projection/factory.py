"""Build the worker's projection from the settings (Redis unless `Settings.projection` is off)."""

from __future__ import annotations

from streamer.core.config import ScoreConfig
from streamer.projection.redis_writer import RedisProjection, connect
from streamer.settings import Settings


def projection_meta(config: ScoreConfig) -> dict[str, str]:
    """What the view needs of the workers' configuration to compute period metrics like they do."""
    cost = config.portfolio.cs_cost_per_month
    return {
        "currency": config.currency.reporting,
        "gross_margin": repr(float(config.portfolio.gross_margin)),
        "cs_cost_per_month": "" if cost is None else str(cost),
    }


def redis_projection(settings: Settings, config: ScoreConfig) -> RedisProjection | None:
    """The Redis projection under the app id's prefix, or None when switched off."""
    if settings.projection == "off":
        return None
    return RedisProjection(connect(settings.redis_url), settings.app_id, projection_meta(config))
