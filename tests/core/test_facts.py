"""`Facts`: one frozen, typed field per fact, and the snapshot's `metrics` built in one place."""

from __future__ import annotations

import ast
import dataclasses
import math

import pytest

from streamer.core.facts import Facts, FactsDraft, freeze
from streamer.core.sentiment import Figures
from streamer.native import CORE_DIR

from .events import ms

# The snapshot's `metrics` keys, in the order they are published (the JSON shape consumers see).
PUBLISHED = [
    "dau",
    "wau",
    "mau",
    "stickiness",
    "seats",
    "seat_utilisation",
    "feature_breadth",
    "usage_trend",
    "days_since_last_use",
    "time_to_value_days",
    "open_tickets",
    "oldest_open_ticket_hours",
    "art_hours_90d",
    "fcr_90d",
    "tickets_opened_30d",
    "tickets_baseline_30d",
    "reopens_90d",
    "nps",
    "nps_respondents",
    "csat",
    "ces",
    "payment_failures_30d",
    "mrr_trend_90d",
    "days_to_renewal",
    "events_28d",
    "events_prev_28d",
    "events_trend_28d",
    "active_days_28d",
    "active_users_28d",
    "user_days_28d",
    "features_used_28d",
    "features_in_use_28d",
    "open_tickets_by_priority",
    "scheduled_cancellation_at",
    "renewal_at",
]


def test_facts_are_frozen_and_slotted() -> None:
    facts = Facts(dau=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.dau = 4  # type: ignore[misc]
    assert not hasattr(facts, "__dict__")


def test_every_fact_field_has_a_one_line_docstring() -> None:
    # The source file itself: the compiled core's module has no source for `inspect`.
    tree = ast.parse((CORE_DIR / "facts.py").read_text())
    facts_class = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Facts")
    body = facts_class.body
    undocumented = []
    for index, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            after = body[index + 1] if index + 1 < len(body) else None
            documented = (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
                and "\n" not in after.value.value.strip()
            )
            if not documented:
                undocumented.append(node.target.id)
    assert undocumented == []


def test_the_draft_and_the_survey_figures_name_only_fields_of_facts() -> None:
    fields = {field.name for field in dataclasses.fields(Facts)}
    draft, figures = set(FactsDraft.__annotations__), set(Figures.__annotations__)
    assert draft <= fields
    assert figures <= fields
    assert not draft & figures  # both are spread into one Facts(...) call
    assert fields - draft - figures == {"percentiles"}


def test_to_json_keeps_the_published_metrics_shape() -> None:
    assert list(Facts().to_json()) == PUBLISHED
    assert Facts().to_json()["open_tickets_by_priority"] == {"low": 0, "normal": 0, "high": 0, "urgent": 0}


def test_to_json_rounds_floats_keeps_ints_and_writes_instants() -> None:
    facts = Facts(
        stickiness=0.123456,
        dau=7,
        open_high=2,
        renewal_at=ms("2024-12-31T00:00:00Z"),
        percentiles={"events_28d": 12.5},
    )
    metrics = facts.to_json()
    assert metrics["stickiness"] == 0.1235
    assert metrics["dau"] == 7 and isinstance(metrics["dau"], int)
    assert metrics["open_tickets_by_priority"]["high"] == 2
    assert metrics["renewal_at"] == "2024-12-31T00:00:00Z"
    assert metrics["scheduled_cancellation_at"] is None
    assert "percentiles" not in metrics  # published under `peers`, not `metrics`


def test_freeze_gives_what_the_keyword_call_gives() -> None:
    # `freeze` spells out each field's key: a fact added to the draft (or the survey figures)
    # and to `Facts` but not to `freeze` would come out None.
    draft_keys, figure_keys = list(FactsDraft.__annotations__), list(Figures.__annotations__)
    draft: FactsDraft = {key: 100 + index for index, key in enumerate(draft_keys)}  # type: ignore[misc]
    figures: Figures = {key: 500 + index for index, key in enumerate(figure_keys)}  # type: ignore[misc]
    percentiles = {"events_28d": 12.5}
    frozen = freeze(draft, figures, percentiles)
    assert frozen == Facts(**draft, **figures, percentiles=percentiles)
    assert [getattr(frozen, key) for key in draft_keys] == [100 + i for i in range(len(draft_keys))]
    assert [getattr(frozen, key) for key in figure_keys] == [500 + i for i in range(len(figure_keys))]
    assert freeze({}, {}, {}) == Facts()
    assert freeze({"dau": 2}, {"ces": 3.5}, {}) == Facts(dau=2, ces=3.5)


def test_a_tiny_negative_fact_is_published_as_zero_not_minus_zero() -> None:
    metrics = Facts(usage_trend=-1e-9, events_trend_28d=-0.00001, mrr_trend_90d=-4e-5).to_json()
    for name in ("usage_trend", "events_trend_28d", "mrr_trend_90d"):
        assert math.copysign(1, metrics[name]) == 1, name  # orjson would write "-0.0"
