"""Which destinations an alert goes to: by rule, severity, owner and segment (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamer.contract.vocabulary import Severity
from streamer.notify.config import SEVERITY_RANK, Destination


def severity_rank(alert: Mapping[str, Any]) -> int | None:
    """0 info, 1 warning, 2 critical; None for a severity this version does not know."""
    try:
        return SEVERITY_RANK[Severity(str(alert.get("severity")))]
    except ValueError:
        return None


def matches(destination: Destination, alert: Mapping[str, Any]) -> bool:
    """Whether `destination` receives `alert`.

    An empty filter lets every alert through. A destination with `owners` (or `segments`)
    receives only alerts whose profile's `owner` (`segment`) is one of them (a top-level
    `owner`/`segment` field counts too); alerts of accounts without one go to the destinations
    without that filter.
    """
    if destination.rules and alert.get("rule") not in destination.rules:
        return False
    rank = severity_rank(alert)
    if rank is None or rank < SEVERITY_RANK[destination.min_severity]:
        return False
    profile = alert.get("profile") or {}
    for field, allowed in (("owner", destination.owners), ("segment", destination.segments)):
        value = alert.get(field) or profile.get(field)
        if allowed and (value is None or str(value) not in allowed):
            return False
    return True


def route(destinations: tuple[Destination, ...], alert: Mapping[str, Any]) -> list[Destination]:
    """The destinations that receive `alert`, in configuration order."""
    return [destination for destination in destinations if matches(destination, alert)]
