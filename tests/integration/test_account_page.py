"""The account page and the lists' filters through the real broker, Redis, view and headless
Chromium: a worker scores a replayed history, the projection keeps each account's history, the
API answers it, and the page shows it; a filtered dashboard shows only what the filter selects."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from test_account_forms import Browser, in_page
from test_dashboard import Element, _project_risks, browse, fixed, nasty_view, parse
from test_view import Deployment, Live, shared_live, wait_until

from streamer.local.stack import StackInfo
from streamer.projection.codec import epoch_ms
from streamer.projection.history import MAX_POINTS
from streamer.projection.redis_writer import RedisProjection, connect

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
    runs = classed(chart.find("polyline"), "line-score")  # one per run of a published band
    assert sum(int(run.attrs["data-points"]) for run in runs) == len(points)
    assert [run.attrs["data-band"] for run in runs] == [
        band for i, band in enumerate(p["band"] for p in points) if i == 0 or points[i - 1]["band"] != band
    ]
    assert {p.attrs["data-component"] for p in chart.find("polyline") if "data-component" in p.attrs} == {
        "adoption",
        "support",
        "sentiment",
        "financial",
    }
    assert not chart.find("rect")  # no fixed band thresholds: the band also reads peers and renewals
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


RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: reverses what follows, up to the end of its paragraph or isolate
ZALGO = "Zalgo " + "".join(chr(0x0300 + n % 0x70) for n in range(300))  # stacked combining marks
WINDOW = (1400, 1000)


def _long_account(template: dict[str, Any], account_id: str, name: str) -> dict[str, Any]:
    """An at-risk account whose every person-written string is as long as the contract allows and
    has no break point (or stacked marks), with a U+202E in each piece that is read in a line."""
    record = copy.deepcopy(template)
    record.update(account_id=account_id, band="red", score=12.0, mrr="99.00", plan="P" * 128)
    record["profile"] = {
        "name": name,
        "owner": RLO + "O" * 255,
        "segment": "S" * 128,
        "tier": "T" * 128,
        "attributes": {"region": RLO + "x" * 255},
    }
    record["reasons"] = [
        {"signal": "usage_trend", "value": None, "baseline": None, "message": RLO + "R" * 999}
    ]
    record["comments"] = [{"at": record["as_of"], "survey": "nps", "score": 3, "comment": RLO + "C" * 3999}]
    record["override"] = {
        "band": None,
        "score": 20.0,
        "reason": RLO + "why " + "Q" * 995,
        "author": RLO + "A" * 255,
        "set_at": record["as_of"],
        "expires_at": "2999-01-01T00:00:00Z",
        "computed_score": 55.0,
        "computed_band": "yellow",
    }
    return record


async def _project_long(url: str, prefix: str, template: dict[str, Any], alert: dict[str, Any]) -> None:
    writer = RedisProjection(
        connect(url), prefix, {"currency": "USD", "gross_margin": "1", "cs_cost_per_month": ""}
    )
    for account_id, name in (("long", "W" * 256), ("zalgo", ZALGO)):
        record = _long_account(template, account_id, name)
        writer.snapshot(record)
        writer.alert(
            {**alert, "account_id": account_id, "alert_id": f"{account_id}-1", "reasons": record["reasons"]}
        )
    assert await writer.drain()
    await writer.close()


# Every text node holding a U+202E, unless what it can reverse is itself alone: an isolating
# element (a <bdi>, unicode-bidi: isolate) between it and its block, or nothing else in the block.
UNISOLATED = """
(() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    if (!text.data.includes("\u202e") || text.parentElement.closest("select, script, style")) continue;
    let element = text.parentElement;
    while (element) {
      const style = getComputedStyle(element);
      if (["isolate", "isolate-override", "plaintext"].includes(style.unicodeBidi)) break;
      if (style.display !== "inline") {
        const alone = element.textContent.trim() === text.data.trim();
        if (!alone) found.push(element.id || element.tagName + "." + element.className);
        break;
      }
      element = element.parentElement;
    }
  }
  return found;
})()
"""

MEASURE = """({width: document.documentElement.scrollWidth, window: window.innerWidth,
  unisolated: %s, error: document.getElementById("error").textContent,
  override: document.getElementById("override-band") && [
    document.getElementById("override-band").textContent,
    document.getElementById("override-score").textContent]})"""


def measure(chromium: str, url: str) -> dict[str, Any]:
    async def act(browser: Browser, socket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        measured: dict[str, Any] = await browser.evaluate(socket, MEASURE % UNISOLATED)
        return measured

    return dict(in_page(chromium, url, act, "--window-size={},{}".format(*WINDOW), "--hide-scrollbars"))


def test_long_strings_wrap_within_the_window_and_each_persons_text_is_isolated(
    live: Live, chromium: str, tmp_path: Path
) -> None:
    """A 256-character name and owner, a 1,000-character reason, a 4,000-character comment, all
    without a break point, and stacked combining marks made the dashboard 3,523 px wide in a
    1,400 px window and the account page 43,402 px; a U+202E in an override reason reversed the
    rest of the override box ("by ..., set ..., until ..."), and the score override's band (null)
    showed as a pill reading "null"."""
    with nasty_view(live, tmp_path, _project_long) as probe:
        assert probe.get("/api/accounts/long")["override"]["reason"].startswith(RLO)  # the premise
        for address in ("/", "/accounts/long", "/accounts/zalgo"):
            shown = measure(chromium, probe.url + address)
            assert not shown["error"], (address, shown["error"])
            assert shown["window"] == WINDOW[0], shown
            assert shown["width"] <= WINDOW[0], (address, shown["width"])
            assert shown["unisolated"] == [], (address, json.dumps(shown["unisolated"]))
            if address != "/":  # a score override: its score, no band pill reading "null"
                assert shown["override"] == ["", "score 20.0"], (address, shown["override"])
