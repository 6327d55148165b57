"""The engine's compact copy of each account's last snapshot gives back exactly what was kept."""

from __future__ import annotations

from typing import Any

from streamer.core.published import Published


def _snapshot(account_id: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "account_id": account_id,
        "score": 61.3,
        "band": "yellow",
        "churn_risk_60d": 0.0417,
        "mrr": "1000.00",
        "metrics": {"events_28d": 2**53 + 1, "csat": None, "stickiness": 1e-7, "nps": -100.0},
        "reasons": [{"message": "12 product events in 28 days, bottom 10% of starter plans"}],
        "profile": {"name": "Zoë Ångström 株式会社", "attributes": {"region": "emea"}},
    }
    record.update(changes)
    return record


def test_every_kept_snapshot_comes_back_equal_whichever_was_kept_first() -> None:
    published = Published()
    first = _snapshot("a")
    other = _snapshot("b", score=0.1, band="red", comments=[{"comment": "x" * 9000}])  # > the window
    published.keep("a", first)
    published.keep("b", other)
    assert published.get("a") == first
    assert published.get("b") == other
    assert published.get("c") is None
    assert len(published) == 2


def test_keeping_again_replaces_and_is_far_smaller_than_the_json() -> None:
    published = Published()
    published.keep("a", _snapshot("a"))
    newer = _snapshot("a", score=12.0)
    published.keep("a", newer)
    assert published.get("a") == newer
    assert len(published) == 1
    published = Published()
    many = [_snapshot(f"acct-{i}", score=float(i)) for i in range(50)]
    for record in many:
        published.keep(record["account_id"], record)
    json_bytes = sum(len(str(record)) for record in many)
    assert published.nbytes < json_bytes / 5
