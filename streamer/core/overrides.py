"""A person's override applied to an evaluation, and how it is shown (reason and snapshot field).

The records (`Override`, and `Applied`: an override in force with what the model said) are in
`streamer.core.identity`, with the profile.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from streamer.contract.vocabulary import Band
from streamer.core.clock import iso
from streamer.core.config import ScoreConfig
from streamer.core.identity import Applied, Override
from streamer.core.score import Evaluation


def apply_override(evaluation: Evaluation, override: Override | None, config: ScoreConfig) -> Evaluation:
    """The evaluation as published: the override's score and band while it is active.

    A score override takes the band its score falls in (the account's stage and plan thresholds);
    a band override moves the model's score to the nearest edge of that band's range (so lists
    sorted by score agree with the band).
    """
    if override is None or not override.active_at(evaluation.now):
        return evaluation
    _, bands = config.segment(evaluation.stage, evaluation.plan)
    if override.score is not None:
        score = round(override.score, 1)
        band = bands.rule.band(score)
    else:
        band = override.band or evaluation.band
        score = evaluation.score
        if band == Band.green:
            score = max(score, bands.green)
        elif band == Band.yellow:
            score = min(max(score, bands.yellow), _below(bands.green))
        else:
            score = min(score, _below(bands.yellow))
        score = round(score, 1)
    applied = Applied(override, evaluation.score, evaluation.band)
    return replace(evaluation, score=score, band=band, override=applied)


def _below(threshold: float) -> float:
    """The highest published score (one decimal) under `threshold`, at least 0."""
    return max(0.0, round(threshold - 0.1, 1))


def override_reason(applied: Applied) -> dict[str, float | str | None]:
    """The override as the first reason: what, who, why, until when, and what the model says."""
    override = applied.override
    target = override.band if override.score is None else f"{override.score:g}"
    return {
        "signal": "override",
        "value": target,
        "baseline": applied.computed_score,
        "message": (
            f"overridden to {target} by {override.author}: {override.reason!r}, until "
            f"{iso(override.expires_at)[:10]} (the model says {applied.computed_score:g}, "
            f"{applied.computed_band})"
        ),
    }


def override_record(applied: Applied | None) -> dict[str, Any] | None:
    """The `override` of a snapshot (null when none is active)."""
    if applied is None:
        return None
    override = applied.override
    return {
        "band": override.band,
        "score": override.score,
        "reason": override.reason or "",
        "author": override.author,
        "set_at": iso(override.at),
        "expires_at": iso(override.expires_at),
        "computed_score": applied.computed_score,
        "computed_band": applied.computed_band,
    }
