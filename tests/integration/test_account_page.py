"""The account page and the lists' filters through the real broker, Redis, view and headless
Chromium: a worker scores a replayed history, the projection keeps each account's history, the
API answers it, and the page shows it; a filtered dashboard shows only what the filter selects."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from test_dashboard import Element, _project_risks, browse, fixed, parse
from test_view import Deployment, Live, shared_live, wait_until

from streamer.local.stack import StackInfo
from streamer.projection.codec import epoch_ms
from streamer.projection.history import MAX_POINTS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def live(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Live:
    return shared_live(stack, tmp_path_factory, request)


def test_each_accounts_history_ends_with_its_snapshot(live: Live) -> None:
    view = live.deployment
    several = 0
    for account_id in view.last_snapshots():

        def agree(account_id: str = account_id) -> bool:
            """The newest point is the projected snapshot (two reads: a write may land between)."""
            snapshot = view.get(f"/api/accounts/{quote(account_id)}")
            points = view.get(f"/api/accounts/{quote(account_id)}/history")["points"]
            assert 1 <= len(points) <= MAX_POINTS, account_id
            times = [epoch_ms(p["as_of"]) for p in points]
            assert times == sorted(set(times)), account_id  # one point per as_of, oldest first
            last = points[-1]
            return (last["as_of"], last["score"], last["band"], last["mrr"]) == (
                snapshot["as_of"],
                snapshot["score"],
                snapshot["band"],
                snapshot["mrr"],
            )

        wait_until(f"{account_id}'s newest history point to be its snapshot", agree, 60)
        several += len(view.get(f"/api/accounts/{quote(account_id)}/history")["points"]) > 1
    assert several, "the replayed history should give some account more than one point"


def classed(elements: list[Element], name: str) -> list[Element]:
    return [e for e in elements if name in e.attrs.get("class", "").split()]


def busiest(live: Live) -> tuple[str, list[dict[str, object]]]:
    view = live.deployment
    histories = {
        account_id: view.get(f"/api/accounts/{quote(account_id)}/history")["points"]
        for account_id in view.last_snapshots()
    }
    account_id = max(sorted(histories), key=lambda a: len(histories[a]))
    return account_id, histories[account_id]


def test_the_account_page_shows_history_reasons_timeline_and_alerts(live: Live, chromium: str) -> None:
    view = live.deployment
    account_id, points = busiest(live)
    snapshot = view.get(f"/api/accounts/{quote(account_id)}")
    timeline = view.get(f"/api/accounts/{quote(account_id)}/timeline")["items"]
    alerts = view.get(f"/api/accounts/{quote(account_id)}/alerts?limit=10")
    dom = parse(browse(chromium, f"{view.url}/accounts/{quote(account_id, safe='')}"))
    body = dom.find("body")[0]
    assert body.attrs.get("data-loaded") == "true", dom.by_id("error").text
    assert snapshot["profile"]["name"], "the simulator gives every account a profile"
    assert dom.by_id("name").text == snapshot["profile"]["name"]
    assert dom.by_id("score").text == fixed(snapshot["score"], 1)
    assert dom.by_id("band").attrs["data-value"] == snapshot["band"]
    assert dom.by_id("mrr").attrs["data-value"] == snapshot["mrr"]
    reasons = [li.text for li in dom.by_id("reasons").find("li")]
    expected = [r["message"] for r in snapshot["reasons"]]
    assert [r.split(" (p")[0] for r in reasons] == expected or (
        not expected and reasons == ["nothing stands out"]
    )
    chart = dom.by_id("score-chart")
    assert classed(chart.find("polyline"), "line-score")[0].attrs["data-points"] == str(len(points))
    assert {p.attrs["data-component"] for p in chart.find("polyline") if "data-component" in p.attrs} == {
        "adoption",
        "support",
        "sentiment",
        "financial",
    }
    assert {r.attrs["class"] for r in chart.find("rect")} == {"bg-green", "bg-yellow", "bg-red"}
    assert [t.text for t in classed(chart.find("text"), "tick-y")] == ["0", "20", "40", "60", "80", "100"]
    assert classed(chart.find("text"), "tick-x"), "a time axis with date ticks"
    shown = [li.attrs.get("data-kind") for li in dom.by_id("timeline").find("li")]
    assert shown == [item["kind"] for item in timeline] or (not timeline and shown == [None])
    rows = dom.by_id("alerts").find("tr")[1:]
    assert [row.attrs["data-alert"] for row in rows] == [a["alert_id"] for a in alerts["items"]]
    assert dom.by_id("override").attrs.get("hidden") is not None  # no override in force


def test_a_filtered_dashboard_shows_only_what_the_filter_selects(live: Live, chromium: str) -> None:
    view = live.deployment
    at_risk = view.get("/api/accounts?at_risk=true&sort=score&limit=500")["items"]
    assert at_risk, "the simulated portfolio should have accounts at risk"
    wanted = at_risk[-1]["account_id"]
    dom = parse(browse(chromium, f"{view.url}/?q={quote(wanted.upper())}&severity=critical"))
    assert dom.find("body")[0].attrs.get("data-loaded") == "true", dom.by_id("error").text
    rows = dom.by_id("at-risk").find("tr")[1:]
    assert [row.attrs["data-account"] for row in rows] == [wanted]
    link = classed(rows[0].find("a"), "account-link")[0]
    assert link.attrs["href"] == f"/accounts/{quote(wanted, safe='')}" and link.text == at_risk[-1]["name"]
    assert dom.by_id("risk-total").attrs["data-value"] == "1"

    # "My book": the owner filter, through the profiles the simulated stream carries.
    owner = at_risk[-1]["owner"]
    assert owner, "the simulator gives every account an owner"
    mine = [item["account_id"] for item in at_risk if item["owner"] == owner]
    assert 0 < len(mine) < len(at_risk), "the filter should select some at-risk accounts, not all"
    book = parse(browse(chromium, f"{view.url}/?owner={quote(owner)}"))
    assert book.find("body")[0].attrs.get("data-loaded") == "true", book.by_id("error").text
    listed = [row.attrs["data-account"] for row in book.by_id("at-risk").find("tr")[1:]]
    assert listed and set(listed) <= set(mine)
    assert book.by_id("risk-total").attrs["data-value"] == str(len(mine))
    critical = view.get("/api/alerts?severity=critical&limit=8")
    shown = dom.by_id("alerts").find("tr")[1:]
    assert [row.attrs["data-alert"] for row in shown] == [a["alert_id"] for a in critical["items"]]
    (shown_range,) = classed(dom.by_id("alerts-pager").find("span"), "range")
    assert shown_range.text.endswith(f" of {critical['total']}") or not critical["total"]
    churned = view.get("/api/accounts?stage=churned&sort=score&limit=500")["items"]
    assert not {r["account_id"] for r in churned} & {r["account_id"] for r in at_risk}
    csv_link = dom.by_id("risk-csv").find("a")[0].attrs["href"]
    assert "format=csv" in csv_link and "q=" in csv_link


def test_the_account_page_renders(live: Live, chromium: str, tmp_path: Path) -> None:
    account_id, _ = busiest(live)
    shot = tmp_path / "account.png"
    browse(
        chromium,
        f"{live.deployment.url}/accounts/{quote(account_id, safe='')}",
        f"--screenshot={shot}",
        "--window-size=1400,1200",
        "--hide-scrollbars",
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_an_account_page_reached_by_an_address_with_a_bare_percent_shows_the_account(
    live: Live, chromium: str, tmp_path: Path
) -> None:
    """`/accounts/100%` (the "%" not written %25) is the account `100%` to the view, which served
    its page; the page's script could not decode the address (URIError) and stayed blank."""
    source = live.deployment
    template = source.get("/api/accounts/" + source.get("/api/accounts?limit=1")["items"][0]["account_id"])
    template.pop("recent_alerts")
    probe = Deployment(source.bootstrap, source.redis_url, tmp_path, tag=uuid.uuid4().hex[:12])
    asyncio.run(_project_risks(source.redis_url, probe.app_id, template, {"100%": ("red", 0.2)}))
    try:
        probe.start_view()
        for address in ("/accounts/100%", "/accounts/100%25"):
            dom = parse(browse(chromium, probe.url + address))
            assert dom.find("body")[0].attrs.get("data-loaded") == "true", (address, dom.by_id("error").text)
            assert dom.by_id("account-id").text == "100%" and dom.by_id("name").text == "100%"
            assert dom.by_id("error").attrs.get("hidden") is not None
    finally:
        probe.close()
