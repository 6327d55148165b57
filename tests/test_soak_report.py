"""The soak's report of a snapshot that differs from offline's: which fields, with both values."""

from __future__ import annotations

from bench.soak import field_differences


def test_only_the_differing_fields_are_named_with_both_values() -> None:
    got = {"account_id": "a", "score": 92.2, "metrics": {"events_prev_28d": 2435, "mau": 4}}
    want = {"account_id": "a", "score": 92.3, "metrics": {"events_prev_28d": 2442, "mau": 4}}
    assert field_differences(got, want) == "metrics.events_prev_28d 2435!=2442, score 92.2!=92.3"


def test_a_missing_field_and_the_limit() -> None:
    got = {f"f{i}": i for i in range(8)}
    assert field_differences(got, {}, limit=2) == "f0 0!=None, f1 1!=None, ... (8 fields)"
    assert field_differences(got, dict(got)) == ""
