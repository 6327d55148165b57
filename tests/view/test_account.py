"""The account page's pure answers: MRR movements and the timeline inferred from history points."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from streamer.core.clock import DAY
from streamer.projection.history import Point
from streamer.view.account import history_rows, movements, timeline
from streamer.view.export import accounts, alerts

T0 = 1_704_067_200_000  # 2024-01-01


def point(day: int, **changes: Any) -> Point:
    base = Point(
        as_of=T0 + day * DAY,
        score=80.0,
        band="green",
        stage="adopted",
        mrr="100.00",
        components={"adoption": 80.0, "support": 90.0, "sentiment": None, "financial": 70.0},
        open_tickets=0,
        reopens_90d=0,
        payment_failures_30d=0,
        nps_respondents=0,
        scheduled_cancellation_at=None,
        renewal_at=T0 + 100 * DAY,
        events_28d=100.0,
        days_since_last_use=1.0,
        override_band=None,
    )
    return replace(base, **changes)


def test_movements_are_classified_like_the_portfolios() -> None:
    points = [
        point(0, mrr="0.00"),
        point(1, mrr="100.00"),
        point(2, mrr="150.00"),
        point(3, mrr="120.00"),
        point(4, mrr="0.00"),
        point(5, mrr="0.00"),
        point(6, mrr="80.00"),
    ]
    found = [(m["kind"], m["from"], m["to"], m["change"]) for m in movements(points)]
    assert found == [
        ("new", "0.00", "100.00", "100.00"),
        ("expansion", "100.00", "150.00", "50.00"),
        ("contraction", "150.00", "120.00", "-30.00"),
        ("churn", "120.00", "0.00", "-120.00"),
        ("reactivation", "0.00", "80.00", "80.00"),
    ]
    assert movements(points)[0]["at"] == "2024-01-02T00:00:00Z"


def test_the_timeline_says_what_changed_newest_first_bounded_per_kind() -> None:
    points = [
        point(0),
        point(1, open_tickets=2),
        point(2, open_tickets=1, reopens_90d=1),
        point(3, payment_failures_30d=1, scheduled_cancellation_at=T0 + 30 * DAY),
        point(4, days_since_last_use=9.0, events_28d=40.0, score=35.0, band="red"),
        point(5, days_since_last_use=0.2, nps_respondents=2, override_band="yellow"),
    ]
    comments = [{"at": "2024-01-05T12:00:00Z", "survey": "nps", "score": 3, "comment": "slow"}]
    raised = [
        {
            "raised_at": "2024-01-05T00:00:00Z",
            "severity": "critical",
            "rule": "scheduled_cancellation",
            "reasons": [{"message": "cancellation scheduled for 2024-01-31"}],
        }
    ]
    items = timeline(points, movements(points), comments, raised, per_kind=10)
    texts = [(item["at"][:10], item["kind"], item["text"]) for item in items]
    assert ("2024-01-02", "tickets", "2 tickets opened (2 open)") in texts
    assert ("2024-01-03", "tickets", "1 ticket resolved (1 open)") in texts
    assert ("2024-01-03", "tickets", "a ticket was reopened") in texts
    assert ("2024-01-04", "subscription", "cancellation scheduled for 2024-01-31") in texts
    assert ("2024-01-04", "subscription", "payment failed (1 in 30 days)") in texts
    assert ("2024-01-05", "usage", "no product usage for 9 days") in texts
    assert ("2024-01-05", "usage", "usage down 60%: 40 events in 28 days") in texts
    assert ("2024-01-05", "health", "band green → red (score 80.0 → 35.0)") in texts
    assert ("2024-01-06", "usage", "usage resumed after 9 days without use") in texts
    assert ("2024-01-06", "surveys", "2 new NPS respondents (2 in 180 days)") in texts
    assert ("2024-01-06", "health", "override set: yellow") in texts
    assert ("2024-01-05", "surveys", "nps 3: “slow”") in texts
    assert (
        "2024-01-05",
        "alerts",
        "critical scheduled_cancellation: cancellation scheduled for 2024-01-31",
    ) in texts
    assert [item["at"] for item in items] == sorted((item["at"] for item in items), reverse=True)
    one = timeline(points, movements(points), comments, raised, per_kind=1)
    assert sorted(item["kind"] for item in one) == sorted({item["kind"] for item in items})
    assert timeline(points[:1], [], [], [], per_kind=10) == []  # one point: nothing happened yet


def test_history_rows_give_instants_and_components() -> None:
    (row,) = history_rows([point(0, override_band="red")])
    assert row["as_of"] == "2024-01-01T00:00:00Z"
    assert row["components"]["sentiment"] is None and row["override_band"] == "red"


def test_csv_exports_flatten_rows_and_defuse_formulas() -> None:
    row = {
        "account_id": "a-1",
        "name": '=HYPERLINK("x")',
        "owner": "ann",
        "score": 12.5,
        "mrr": "-5.00",
        "reasons": ["usage down 64%", "2 urgent tickets open"],
        "override": {"band": "red"},
    }
    lines = accounts([row]).decode().splitlines()
    assert lines[0].startswith("account_id,name,owner,segment,tier,score,band")
    assert lines[1].startswith('a-1,"\'=HYPERLINK(""x"")",ann,,,12.5,')
    assert ",-5.00," in lines[1] and ",red,usage down 64%; 2 urgent tickets open" in lines[1]
    alert = {"alert_id": "x", "account_id": "a-1", "profile": {"owner": "bo"}, "reasons": [{"message": "m"}]}
    assert alerts([alert]).decode().splitlines()[1].split(",")[4] == "bo"


def test_a_score_override_exports_the_band_its_score_puts_the_account_in() -> None:
    """It asks for no band: its `override_band` cell was empty, as if none were in force."""
    forced = {"account_id": "a-1", "score": 12.5, "band": "red", "override": {"band": None, "score": 12.5}}
    free = {"account_id": "a-2", "score": 80.0, "band": "green", "override": None}
    header, *rows = accounts([forced, free]).decode().splitlines()
    column = header.split(",").index("override_band")
    assert [row.split(",")[column] for row in rows] == ["red", ""]
