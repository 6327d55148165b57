"""Routing by rule, severity, owner and segment."""

from __future__ import annotations

from typing import Any

from streamer.notify.config import Destination
from streamer.notify.routing import matches, route

from .fakes import alert


def dest(**filters: Any) -> Destination:
    return Destination.model_validate({"name": "d", "url": "http://127.0.0.1:9/x", **filters})


def test_empty_filter_receives_everything() -> None:
    assert matches(dest(), alert("a", severity="info"))


def test_rule_and_min_severity_filters() -> None:
    critical_only = dest(min_severity="critical", rules=["payment_failed", "silence"])
    assert matches(critical_only, alert("a", "payment_failed", "critical"))
    assert not matches(critical_only, alert("a", "payment_failed", "warning"))
    assert not matches(critical_only, alert("a", "usage_drop", "critical"))
    assert not matches(dest(), alert("a", severity="catastrophic"))  # unknown severity: never guessed


def test_owner_and_segment_route_when_the_alert_has_them() -> None:
    alices = dest(owners=["alice"], segments=["enterprise"])
    assert matches(alices, alert("a", owner="alice", segment="enterprise"))
    assert not matches(alices, alert("a", owner="bob", segment="enterprise"))
    assert not matches(alices, alert("a", owner="alice", segment="smb"))
    assert not matches(alices, alert("a"))  # unowned alerts go to destinations without the filter
    assert matches(dest(), alert("a", owner="bob"))


def test_owner_and_segment_come_from_the_alert_profile() -> None:
    alices = dest(owners=["alice"], segments=["enterprise"])
    profile = {"name": "Acme", "owner": "alice", "segment": "enterprise", "tier": None, "attributes": {}}
    assert matches(alices, alert("a") | {"profile": profile})
    assert not matches(alices, alert("a") | {"profile": profile | {"owner": "bob"}})
    assert not matches(alices, alert("a") | {"profile": None})


def test_route_keeps_configuration_order() -> None:
    first = Destination.model_validate({"name": "first", "url": "http://h/1", "min_severity": "warning"})
    second = Destination.model_validate({"name": "second", "url": "http://h/2"})
    third = Destination.model_validate({"name": "third", "url": "http://h/3", "rules": ["csat_low"]})
    names = [d.name for d in route((first, second, third), alert("a", "silence", "critical"))]
    assert names == ["first", "second"]
