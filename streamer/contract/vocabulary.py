"""The domain's closed sets of names, defined once: health bands, lifecycle stages, severities.

Each is a `StrEnum`, so a member is its own string on the wire (JSON, MessagePack, Redis keys)
and compares equal to it; code names members (`Band.red`), never the bare strings.
"""

from __future__ import annotations

from enum import StrEnum


# No class docstrings below: pydantic would publish them as descriptions in the JSON Schema.
class Band(StrEnum):
    green = "green"
    yellow = "yellow"
    red = "red"


class Severity(StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


class LifecycleStage(StrEnum):
    onboarding = "onboarding"
    adopted = "adopted"
    renewal = "renewal"
    churned = "churned"


BANDS: tuple[Band, ...] = tuple(Band)  # healthiest first
STAGES: tuple[LifecycleStage, ...] = tuple(LifecycleStage)
BAND_RANK: dict[Band, int] = {band: rank for rank, band in enumerate(BANDS)}  # higher is worse
SEVERITY_BY_LEVEL: tuple[Severity, ...] = tuple(Severity)  # an alert level (0-2) -> its severity
