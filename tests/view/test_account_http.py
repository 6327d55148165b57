"""The account page's API and the lists' filters, search, paging and CSV, against a real Redis
holding a projection written by `RedisProjection` from a simulated portfolio scored by the core
(with a profile added to each snapshot and alert, as the identity events will give them)."""

from __future__ import annotations

import copy
import csv
import html
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from projection.scored import Scored, scored
from yarl import URL

from streamer.core.clock import DAY, iso
from streamer.projection.codec import epoch_ms
from streamer.projection.history import bucket
from tests.fixtures import RedisServer

from .test_http import get, project, start

OWNERS = ("ann@example.com", "bo@example.com", "cy@example.com")
SEGMENTS = ("smb", "mid-market")


def profile(account_id: str) -> dict[str, Any]:
    number = int(account_id.rsplit("-", 1)[-1])
    return {
        "name": f"Company {number:02d} Ltd",
        "owner": OWNERS[number % 3],
        "segment": SEGMENTS[number % 2],
        "tier": None,
        "attributes": {},
    }


def with_profiles(data: Scored) -> Scored:
    """The portfolio with profiles, and 40 days of earlier daily snapshots for the busiest account
    (the simulated run publishes one or two per account): MRR churned on day 20, reactivated on
    day 30, hourly snapshots on its last day."""
    copied = Scored(data.run)
    account_id = busiest(data)
    own = [s for s in data.snapshots if s["account_id"] == account_id]
    start = epoch_ms(own[0]["as_of"]) - 41 * DAY
    earlier = []
    for day in range(40):
        for hour in range(24 if day == 39 else 1):
            snapshot = copy.deepcopy(own[0])
            snapshot["as_of"] = iso(start + day * DAY + hour * 3_600_000)
            snapshot["score"] = float(30 + day + hour / 10)
            snapshot["mrr"] = own[0]["mrr"] if day < 20 else "0.00" if day < 30 else "12.50"
            earlier.append(snapshot)
    snapshots = earlier + data.snapshots
    copied.snapshots = [{**copy.deepcopy(s), "profile": profile(s["account_id"])} for s in snapshots]
    copied.alerts = [{**copy.deepcopy(a), "profile": profile(a["account_id"])} for a in data.alerts]
    return copied


@pytest.fixture(scope="module")
def data() -> Scored:
    return with_profiles(scored())


@pytest.fixture
async def view(redis_server: RedisServer, prefix: str, data: Scored) -> AsyncIterator[TestClient[Any, Any]]:
    await project(redis_server.url, prefix, data)
    client = await start(redis_server.url, prefix)
    yield client
    await client.close()


def expected_points(snapshots: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Each bucket's latest snapshot, buckets relative to the newest (what the Lua script keeps)."""
    newest = max(epoch_ms(s["as_of"]) for s in snapshots)
    kept: dict[int, dict[str, Any]] = {}
    for s in snapshots:
        start, _ = bucket(epoch_ms(s["as_of"]), newest)
        if start not in kept or epoch_ms(kept[start]["as_of"]) <= epoch_ms(s["as_of"]):
            kept[start] = s
    return [(s["as_of"], s["score"]) for _, s in sorted(kept.items())]


def busiest(data: Scored) -> str:
    counts: dict[str, int] = {}
    for s in data.snapshots:
        counts[s["account_id"]] = counts.get(s["account_id"], 0) + 1
    return max(counts, key=lambda account_id: counts[account_id])


async def test_history_is_each_buckets_latest_snapshot(view: TestClient[Any, Any], data: Scored) -> None:
    account_id = busiest(data)
    own = [s for s in data.snapshots if s["account_id"] == account_id]
    answer = await get(view, f"/api/accounts/{account_id}/history")
    assert [(p["as_of"], p["score"]) for p in answer["points"]] == expected_points(own)
    last = answer["points"][-1]
    assert (last["band"], last["mrr"], last["lifecycle_stage"]) == (
        own[-1]["band"],
        own[-1]["mrr"],
        own[-1]["lifecycle_stage"],
    )
    assert last["components"] == {name: c["score"] for name, c in own[-1]["components"].items()}
    short = await get(view, f"/api/accounts/{account_id}/history", params={"days": "7"})
    newest = epoch_ms(last["as_of"])
    assert short["points"] == [p for p in answer["points"] if epoch_ms(p["as_of"]) >= newest - 7 * 86_400_000]


async def test_movements_and_timeline_of_an_account_that_changed_mrr(
    view: TestClient[Any, Any], data: Scored
) -> None:
    account_id = busiest(data)
    history = await get(view, f"/api/accounts/{account_id}/history")
    moves = history["movements"]
    assert [move["kind"] for move in moves][:2] == ["churn", "reactivation"]
    assert moves[1]["to"] == "12.50" and moves[1]["change"] == "12.50"
    points = history["points"]
    for move in moves:
        index = next(i for i, p in enumerate(points) if p["as_of"] == move["at"])
        assert (points[index - 1]["mrr"], points[index]["mrr"]) == (move["from"], move["to"])
    timeline = await get(view, f"/api/accounts/{account_id}/timeline", params={"per_kind": "50"})
    texts = [item["text"] for item in timeline["items"] if item["kind"] == "subscription"]
    assert any(text.startswith("MRR reactivation: 0.00 → 12.50") for text in texts), texts
    own_alerts = [a for a in data.alerts if a["account_id"] == account_id]
    assert sum(item["kind"] == "alerts" for item in timeline["items"]) == min(50, len(own_alerts))


async def test_a_window_of_days_classifies_movements_as_the_whole_history_does(
    view: TestClient[Any, Any], data: Scored
) -> None:
    """`days=` relabelled a reactivation as new revenue: the churn before the window was not seen,
    so the first move out of 0.00 inside it looked like a first payment."""
    account_id = busiest(data)
    whole = await get(view, f"/api/accounts/{account_id}/history")
    reactivation = next(move for move in whole["movements"] if move["kind"] == "reactivation")
    newest = epoch_ms(whole["points"][-1]["as_of"])
    days = (newest - epoch_ms(reactivation["at"])) // DAY + 2  # the churn is 10 days before it
    window = await get(view, f"/api/accounts/{account_id}/history", params={"days": str(days)})
    since = newest - days * DAY
    assert window["movements"] == [m for m in whole["movements"] if epoch_ms(m["at"]) >= since]
    assert reactivation in window["movements"]


async def test_an_accounts_alerts_page_by_page(view: TestClient[Any, Any], data: Scored) -> None:
    account_id = max(
        {a["account_id"] for a in data.alerts}, key=lambda i: sum(a["account_id"] == i for a in data.alerts)
    )
    everything = await get(view, f"/api/accounts/{account_id}/alerts", params={"limit": "500"})
    assert everything["total"] == len(everything["items"]) >= 3
    pages = []
    for offset in range(0, everything["total"], 2):
        page = await get(
            view, f"/api/accounts/{account_id}/alerts", params={"limit": "2", "offset": str(offset)}
        )
        assert page["total"] == everything["total"]
        pages += page["items"]
    assert pages == everything["items"]


async def test_alerts_page_through_with_filters_and_owner(view: TestClient[Any, Any], data: Scored) -> None:
    newest = sorted(data.alerts, key=lambda a: (epoch_ms(a["raised_at"]), a["alert_id"]), reverse=True)
    first = await get(view, "/api/alerts", params={"limit": "10"})
    second = await get(view, "/api/alerts", params={"limit": "10", "offset": "10"})
    assert first["total"] == len(newest) and first["items"] + second["items"] == newest[:20]
    mine = [a for a in newest if a["profile"]["owner"] == OWNERS[1] and a["severity"] != "info"]
    answer = await get(
        view,
        "/api/alerts",
        params={"owner": OWNERS[1], "severity": "warning,critical", "limit": "5", "offset": "5"},
    )
    assert answer["total"] == len(mine) and answer["items"] == mine[5:10]
    exported = await get(view, "/api/alerts", params={"owner": OWNERS[1], "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [row["alert_id"] for row in rows] == [
        a["alert_id"] for a in newest if a["profile"]["owner"] == OWNERS[1]
    ]


async def test_lists_filter_by_owner_segment_and_search(view: TestClient[Any, Any], data: Scored) -> None:
    last = {s["account_id"]: s for s in data.snapshots}
    by_score = sorted(last.values(), key=lambda s: (s["score"], s["account_id"]))
    answer = await get(view, "/api/accounts", params={"owner": OWNERS[0], "limit": "500"})
    assert [r["account_id"] for r in answer["items"]] == [
        s["account_id"] for s in by_score if s["profile"]["owner"] == OWNERS[0]
    ]
    assert {r["owner"] for r in answer["items"]} == {OWNERS[0]} and answer["total"] == len(answer["items"])
    several = [("owner", OWNERS[0]), ("owner", OWNERS[1]), ("segment", "smb"), ("limit", "500")]
    both = await get(view, "/api/accounts", params=several)  # several owners: the parameter repeats
    assert [r["account_id"] for r in both["items"]] == [
        s["account_id"]
        for s in by_score
        if s["profile"]["owner"] in OWNERS[:2] and s["profile"]["segment"] == "smb"
    ]
    found = await get(view, "/api/accounts", params={"q": "company 1", "limit": "500"})
    assert sorted(r["name"] for r in found["items"]) == sorted(
        s["profile"]["name"] for s in last.values() if "company 1" in s["profile"]["name"].lower()
    )
    assert found["items"]
    by_id = await get(view, "/api/accounts", params={"q": by_score[0]["account_id"].upper()})
    assert [r["account_id"] for r in by_id["items"]] == [by_score[0]["account_id"]]
    churned = await get(view, "/api/accounts", params={"stage": "churned", "limit": "500"})
    at_risk = await get(view, "/api/accounts", params={"at_risk": "true", "limit": "500"})
    assert {r["lifecycle_stage"] for r in churned["items"]} <= {"churned"}
    assert not {r["account_id"] for r in churned["items"]} & {r["account_id"] for r in at_risk["items"]}
    filters = await get(view, "/api/filters")
    owners_count = {o: sum(s["profile"]["owner"] == o for s in last.values()) for o in OWNERS}
    assert filters["owners"] == {o: n for o, n in sorted(owners_count.items()) if n}


async def test_every_list_exports_as_csv(view: TestClient[Any, Any], data: Scored) -> None:
    answer = await get(view, "/api/accounts", params={"at_risk": "true", "sort": "-mrr", "limit": "500"})
    exported = await view.get("/api/accounts", params={"at_risk": "true", "sort": "-mrr", "format": "csv"})
    assert exported.content_type == "text/csv"
    assert 'filename="accounts.csv"' in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await exported.text())))
    assert [(r["account_id"], r["mrr"], r["owner"]) for r in rows] == [
        (r["account_id"], r["mrr"], r["owner"]) for r in answer["items"]
    ]
    account_id = busiest(data)
    history = await get(view, f"/api/accounts/{account_id}/history")
    rows = list(
        csv.DictReader(io.StringIO(await get(view, f"/api/accounts/{account_id}/history?format=csv")))
    )
    assert [(r["as_of"], float(r["score"])) for r in rows] == [
        (p["as_of"], p["score"]) for p in history["points"]
    ]
    timeline = await get(view, f"/api/accounts/{account_id}/timeline?format=csv")
    assert timeline.splitlines()[0] == "at,kind,text"


@pytest.mark.parametrize("spelled", ["csv ", " csv", " csv\t"])
async def test_a_format_with_spaces_around_it_is_read_one_way(
    view: TestClient[Any, Any], data: Scored, spelled: str
) -> None:
    """`format` is trimmed as every parameter is, by the parser and by the answer alike: "csv "
    counted as an export (a limit of 100,000) yet was answered as JSON, every row in one page."""
    account_id = busiest(data)
    for path in (
        "/api/accounts",
        "/api/alerts",
        f"/api/accounts/{account_id}/alerts",
        f"/api/accounts/{account_id}/history",
        f"/api/accounts/{account_id}/timeline",
    ):
        response = await view.get(path, params={"format": spelled})
        assert response.status == 200, await response.text()
        assert response.content_type == "text/csv", path
        trimmed = await view.get(path, params={"format": " json "})
        answer = await trimmed.json()
        assert trimmed.content_type == "application/json" and answer.get("limit", 50) <= 500, path


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/accounts?format=xml", 400, "'format' must be one of json, csv; got 'xml'"),
        ("/api/accounts?q=", 400, "'q' is empty"),
        ("/api/alerts?offset=-1", 400, "'offset' must be between 0 and 1000000, got -1"),
        ("/api/accounts/acct-0001/history?days=0", 400, "'days' must be between 1 and 400, got 0"),
        (
            "/api/accounts/acct-0001/timeline?per_kind=x",
            400,
            "'per_kind' must be an integer in the digits 0-9, got 'x'",
        ),
        ("/api/accounts/acct-0001/alerts?owner=ann", 400, "unknown query parameter 'owner'"),
        ("/api/accounts/nobody/history", 404, "no account 'nobody' in the projection"),
        ("/api/accounts/nobody/timeline", 404, "no account 'nobody' in the projection"),
        ("/api/filters?x=1", 400, "unknown query parameter 'x'; expected: owner, segment"),
        ("/api/portfolio?x=1", 400, "unknown query parameter 'x'; expected: none"),
    ],
)
async def test_bad_parameters_are_a_clear_4xx(
    view: TestClient[Any, Any], path: str, status: int, message: str
) -> None:
    body = await get(view, path, status)
    assert body["error"].startswith(message), body


async def test_the_account_page_is_served_self_contained(
    redis_server: RedisServer, prefix: str, data: Scored
) -> None:
    await project(redis_server.url, prefix, data)
    client = await start(redis_server.url, prefix, token="s3cret")
    try:
        assert (await client.get("/accounts/acct-0001")).status == 401
        response = await client.get("/accounts/acct-0001", params={"access_token": "s3cret"})
        html = await response.text()
        assert response.status == 200 and "<!--SCRIPT-->" not in html and " src=" not in html
        assert html.startswith("<!doctype html>") and "<!--HEAD" not in html and html.count("<head>") == 1
        assert "script-src 'sha256-" in response.headers["Content-Security-Policy"]
        client.session.cookie_jar.clear()  # the page's cookie would let the read through
        assert (
            await client.get("/api/accounts/acct-0001/history", params={"access_token": "s3cret"})
        ).status == 401
    finally:
        await client.close()


async def test_the_page_of_an_unknown_account_is_a_404_that_says_so_first(view: TestClient[Any, Any]) -> None:
    """Not the account page with blank panels and the error at the bottom: a 404 whose first
    words after the header are the API's message (escaped), with no script to run; the API's
    JSON 404 is unchanged."""
    response = await view.get("/accounts/<nobody>")
    html = await response.text()
    assert response.status == 404 and response.content_type == "text/html"
    main = html[html.index("<main>") :]
    assert main.startswith(
        '<main>\n  <p id="error" class="error">no account &#x27;&lt;nobody&gt;&#x27; in the projection</p>'
    )
    assert "<script" not in html and "score-chart" not in html
    assert "script-src 'none'" in response.headers["Content-Security-Policy"]
    assert await get(view, "/api/accounts/<nobody>", 404) == {
        "error": "no account '<nobody>' in the projection"
    }


@pytest.mark.parametrize(
    ("address", "account_id"),
    [
        ("/accounts/100%", "100%"),  # a bare "%": the page's decodeURIComponent threw, the page stayed blank
        ("/accounts/100%25", "100%"),
        ("/accounts/%3Ca%20%22b%22%3E", '<a "b">'),
        ("/accounts/a%2Fb", "a/b"),
    ],
)
async def test_the_account_page_carries_the_id_the_view_read_from_its_address(
    redis_server: RedisServer, prefix: str, data: Scored, address: str, account_id: str
) -> None:
    template = next(iter(data.last.values()))
    await project(redis_server.url, prefix, Scored(data.run, [{**template, "account_id": account_id}], []))
    client = await start(redis_server.url, prefix)
    try:
        response = await client.get(URL(address, encoded=True))
        page = await response.text()
        assert response.status == 200, page[:300]
        (body,) = re.findall(r"<body[^>]*>", page)
        assert body == f'<body class="account-page" data-account-id="{html.escape(account_id)}">'
    finally:
        await client.close()


def test_history_instants_are_rfc3339() -> None:
    assert iso(epoch_ms("2024-03-01T10:00:00Z")) == "2024-03-01T10:00:00Z"
