"""The dashboard in real headless Chromium against the running stack: the numbers it shows are the
API's, strings from the data are shown as text (never HTML), a token works from the page URL,
and it renders to a screenshot. The DOM is read after the page's fetches with `--dump-dom`."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import tempfile
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_account_forms import Browser, in_page
from test_view import Deployment, Live, shared_live

from streamer.local.stack import StackInfo
from streamer.projection.redis_writer import RedisProjection, connect
from streamer.view.service import FILTER_NAMES
from tests.fixtures import chromium_argv, free_port, run_chromium

pytestmark = pytest.mark.integration

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@pytest.fixture(scope="session")
def live(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Live:
    return shared_live(stack, tmp_path_factory, request)


def browse(chromium: str, url: str, *extra: str, budget_ms: int = 8000) -> str:
    """The page's DOM once its fetches are done (virtual time lets the timers and fetches run:
    `budget_ms` of it).

    Each run gets a fresh profile in a short path (see `chromium_argv`).
    """
    with tempfile.TemporaryDirectory(prefix="hs-chromium-") as profile:
        return _browse(chromium, url, Path(profile), *extra, budget_ms=budget_ms)


def _browse(chromium: str, url: str, profile: Path, *extra: str, budget_ms: int = 8000) -> str:
    budget = f"--virtual-time-budget={budget_ms}"
    argv = chromium_argv(chromium, profile, budget, *(extra or ("--dump-dom",)), url)
    returncode, out, err = run_chromium(argv, timeout_s=120)
    assert returncode == 0, err.decode(errors="replace")[-2000:]
    html = out.decode()
    stderr = err.decode(errors="replace")[-2000:]
    assert extra or "<body" in html, f"no page from {url}: {html[:300]!r}\n{stderr}"
    return html


# -- reading the DOM -------------------------------------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    def find(self, tag: str | None = None, **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            wanted = tag is None or child.tag == tag
            if wanted and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                found.append(child)
            found += child.find(tag, **attrs)
        return found

    def by_id(self, element_id: str) -> Element:
        found = self.find(id=element_id)
        assert len(found) == 1, f"#{element_id}: {len(found)} elements"
        return found[0]


class DomParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                for closed in reversed(self.stack[depth:]):
                    self.stack.pop()
                    self.stack[-1].parts.append("".join(closed.parts))
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(html: str) -> Element:
    parser = DomParser()
    parser.feed(html)
    parser.close()
    return parser.root


def number(text: str) -> Decimal:
    return Decimal(re.sub(r"[^0-9.\-]", "", text))


def fixed(value: float | None, digits: int) -> str:
    return "\u2013" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "\u2013" if value is None else f"{100 * value:.1f}%"


# -- tests -----------------------------------------------------------------------------------------


def test_the_dashboard_shows_the_apis_numbers(live: Live, chromium: str, tmp_path: Path) -> None:
    view = live.deployment
    dom = parse(browse(chromium, view.url + "/"))
    body = dom.find("body")[0]
    assert body.attrs.get("data-loaded") == "true", dom.by_id("error").text

    portfolio = view.get("/api/portfolio")
    now = portfolio["current"]
    assert dom.by_id("as-of").attrs["data-value"] == portfolio["as_of"]
    assert dom.by_id("currency").text == portfolio["currency"]
    for element_id, value in [("kpi-mrr", now["mrr"]), ("kpi-arr", now["arr"]), ("kpi-arpa", now["arpa"])]:
        assert number(dom.by_id(element_id).text) == Decimal(value), element_id
    assert dom.by_id("kpi-paying").text == f"{now['paying_accounts']} / {now['accounts']}"
    assert dom.by_id("kpi-nps").text == fixed(now["nps"], 1)
    assert dom.by_id("kpi-csat").text == fixed(now["csat"], 1)
    assert dom.by_id("kpi-ces").text == fixed(now["ces"], 2)
    assert dom.by_id("kpi-art").text == fixed(now["art_hours_90d"], 1)
    assert dom.by_id("kpi-fcr").text == percent(now["fcr_90d"])
    assert dom.by_id("kpi-open").text == str(now["open_tickets"])
    for band, count in now["accounts_by_band"].items():
        assert dom.by_id(f"band-{band}").text == str(count)
    churned = now["accounts_by_stage"]["churned"]
    assert churned > 0, "the simulated portfolio should have churned accounts"
    assert dom.by_id("band-note").text == f"accounts not churned; {churned} churned ones are listed below"
    assert sum(now["accounts_by_band"].values()) == now["accounts"] - churned

    at_risk = view.get("/api/accounts?at_risk=true&sort=score&limit=12")
    rows = dom.by_id("at-risk").find("tr")[1:]  # after the header row
    assert [row.attrs["data-account"] for row in rows] == [item["account_id"] for item in at_risk["items"]]
    assert at_risk["items"], "the simulated portfolio should have accounts at risk"
    for row, item in zip(rows, at_risk["items"], strict=True):
        cells = row.find("td")
        (link,) = cells[0].find("a")  # the account's name (its id without one) leads to its page
        assert link.attrs["href"] == f"/accounts/{item['account_id']}"
        assert link.text == (item.get("name") or item["account_id"])
        who = " · ".join(filter(None, [item.get("owner"), item.get("segment")]))
        assert [d.text for d in cells[0].find("div")] == [who]  # its owner and segment beneath
        assert cells[1].text == fixed(item["score"], 1)
        assert cells[3].text == percent(item["churn_risk_60d"])  # a dash without a fitted model
        assert number(cells[4].text) == Decimal(item["mrr"])
        if item["events_28d"] is not None:
            assert cells[7].text.startswith(f"{item['events_28d']} events, {item['active_days_28d']} d")
        assert cells[8].text == "; ".join(item["reasons"][:2])
    assert dom.by_id("risk-total").attrs["data-value"] == str(at_risk["total"])

    months = view.get("/api/months")["months"][-12:]
    dots = dom.by_id("mrr-chart").find("circle")
    assert [(d.attrs["data-month"], d.attrs["data-value"]) for d in dots] == [
        (m["month"], m["end_mrr"]) for m in months
    ]
    nrr = [
        (d.attrs["data-month"], float(d.attrs["data-value"]))
        for d in dom.by_id("retention-chart").find("circle", data_metric="nrr")
    ]
    assert nrr == [(m["month"], m["nrr"]) for m in months if m["nrr"] is not None]
    bars = dom.by_id("mrr-chart").find("rect", data_kind="new")
    assert [b.attrs["data-value"] for b in bars] == [m["movements"]["new"] for m in months]
    table = dom.by_id("months").find("tr")[1:]
    for row, month in zip(table, list(reversed(months))[:4], strict=True):
        cells = row.find("td")
        assert cells[0].text == month["month"]
        assert number(cells[1].text) == Decimal(month["end_mrr"])
        assert cells[3].text == percent(month["nrr"]) and cells[4].text == percent(month["grr"])

    alerts = view.get("/api/alerts?limit=8")["items"]
    shown = dom.by_id("alerts").find("tr")[1:]
    assert [row.attrs["data-alert"] for row in shown] == [alert["alert_id"] for alert in alerts]
    assert dom.by_id("status").text in ("ok", "degraded")


Projector = Callable[[str, str, dict[str, Any], dict[str, Any]], Awaitable[None]]
"""(Redis URL, app id, a snapshot to copy, an alert to copy): writes a projection to view."""


async def _project_nasty(url: str, prefix: str, template: dict[str, Any], alert: dict[str, Any]) -> None:
    writer = RedisProjection(
        connect(url), prefix, {"currency": "USD", "gross_margin": "1", "cs_cost_per_month": ""}
    )
    nasty = copy.deepcopy(template)
    nasty.update(account_id=NASTY_ID, band="red", score=1.0, mrr="99.00", plan="<b>bold</b>")
    nasty["profile"] = {**(nasty.get("profile") or {}), "name": NASTY_NAME, "owner": "<u>x</u>@example.com"}
    nasty["reasons"] = [{**nasty["reasons"][0], "message": NASTY_REASON}] if nasty["reasons"] else []
    writer.snapshot(nasty)
    writer.alert({**alert, "account_id": NASTY_ID, "alert_id": "nasty-1", "reasons": nasty["reasons"]})
    assert await writer.drain()
    await writer.close()


NASTY_ID = "<img src=x onerror=\"document.title='pwned'\">"
NASTY_REASON = "<script>document.title='pwned'</script> & more"
NASTY_NAME = "<i>Evil</i> Corp <svg onload=alert(1)>"


@contextlib.contextmanager
def nasty_view(live: Live, tmp_path: Path, project: Projector | None = None) -> Iterator[Deployment]:
    """A view of a projection of its own holding accounts made from a copy of one of the live
    portfolio's and one alert of it by `project` (default: one account whose strings are
    markup); no month of movements."""
    project = project or _project_nasty
    source = live.deployment
    template = source.get("/api/accounts/" + source.get("/api/accounts?limit=1")["items"][0]["account_id"])
    template.pop("recent_alerts")
    alert = source.get("/api/alerts?limit=1")["items"][0]
    probe = Deployment(source.bootstrap, source.redis_url, tmp_path, tag=uuid.uuid4().hex[:12])
    asyncio.run(project(source.redis_url, probe.app_id, template, alert))
    try:
        probe.start_view()
        yield probe
    finally:
        probe.close()


def test_strings_from_the_data_are_shown_as_text_never_as_html(
    live: Live, chromium: str, tmp_path: Path
) -> None:
    with nasty_view(live, tmp_path) as probe:
        html = browse(chromium, probe.url + "/")
        dom = parse(html)
        assert dom.find("title")[0].text == "healthstream · portfolio health"
        assert not dom.find("img") and not [b for b in dom.find("b") if b.text == "bold"]
        assert len(dom.find("script")) == 1  # the dashboard's own
        row = dom.by_id("at-risk").find("tr", data_account=NASTY_ID)
        assert not dom.find("i") and not dom.find("svg", onload="alert(1)") and not dom.find("u")
        assert row and row[0].find("td")[0].find("a")[0].text == NASTY_NAME
        assert NASTY_REASON in row[0].find("td")[8].text  # after the risk and use columns
        assert dom.by_id("alerts").find("tr", data_alert="nasty-1")


async def _project_risks(
    url: str, prefix: str, template: dict[str, Any], risks: dict[str, tuple[str, float]]
) -> None:
    writer = RedisProjection(
        connect(url), prefix, {"currency": "USD", "gross_margin": "1", "cs_cost_per_month": ""}
    )
    for account_id, (band, risk) in risks.items():
        record = copy.deepcopy(template)
        record.update(account_id=account_id, band=band, mrr="100.00", churn_risk_60d=risk, override=None)
        record["profile"] = {"name": account_id}
        writer.snapshot(record)
    assert await writer.drain()
    await writer.close()


def at_risk_rows(dom: Element) -> list[str]:
    return [
        row.attrs["data-account"] for row in dom.by_id("at-risk").find("tr") if "data-account" in row.attrs
    ]


def test_the_at_risk_list_is_ordered_as_chosen(live: Live, chromium: str, tmp_path: Path) -> None:
    view = live.deployment
    by_mrr = parse(browse(chromium, view.url + "/?risk_sort=-mrr"))
    expected = view.get("/api/accounts?at_risk=true&sort=-mrr&limit=12")["items"]
    assert at_risk_rows(by_mrr) == [item["account_id"] for item in expected] and expected
    (csv,) = by_mrr.by_id("risk-csv").find("a")
    assert "sort=-mrr" in csv.attrs["href"]  # the export is the list as shown
    # the live portfolio's workers run without a fitted model: nothing has a 60-day risk, and the
    # list says why it is empty rather than showing nothing
    by_default = parse(browse(chromium, view.url + "/"))  # ... so it is ordered by score
    expected = view.get("/api/accounts?at_risk=true&sort=score&limit=12")["items"]
    assert at_risk_rows(by_default) == [item["account_id"] for item in expected] and expected
    unfitted = parse(browse(chromium, view.url + "/?risk_sort=-churn_risk"))
    assert at_risk_rows(unfitted) == []
    (empty,) = unfitted.by_id("at-risk").find("tr", **{"class": "empty"})
    assert empty.find("td")[0].text.startswith("none listed: only accounts with a 60-day churn risk are")

    source = live.deployment
    template = source.get("/api/accounts/" + source.get("/api/accounts?limit=1")["items"][0]["account_id"])
    template.pop("recent_alerts")
    risks = {"low": ("red", 0.05), "high": ("yellow", 0.61), "mid": ("red", 0.32), "fine": ("green", 0.9)}
    probe = Deployment(source.bootstrap, source.redis_url, tmp_path, tag=uuid.uuid4().hex[:12])
    asyncio.run(_project_risks(source.redis_url, probe.app_id, template, risks))
    try:
        probe.start_view()
        # with a fitted model the list is ordered by churn risk unless the address says otherwise
        for fitted in (
            parse(browse(chromium, probe.url + "/?risk_sort=-churn_risk")),
            parse(browse(chromium, probe.url + "/")),
        ):
            assert at_risk_rows(fitted) == ["high", "mid", "low"]  # green is not at risk
            assert [row.find("td")[3].text for row in fitted.by_id("at-risk").find("tr")[1:]] == [
                "61.0%",
                "32.0%",
                "5.0%",
            ]
            (csv,) = fitted.by_id("risk-csv").find("a")
            assert "sort=-churn_risk" in csv.attrs["href"]
        by_score = parse(browse(chromium, probe.url + "/?risk_sort=score"))
        scores = probe.get("/api/accounts?at_risk=true&sort=score")["items"]
        assert at_risk_rows(by_score) == [item["account_id"] for item in scores]
        assert at_risk_rows(by_score) != ["high", "mid", "low"]  # the two orders differ here
    finally:
        probe.close()


def test_the_page_works_with_a_token_in_its_url(live: Live, chromium: str, tmp_path: Path) -> None:
    first = live.deployment
    second = Deployment(first.bootstrap, first.redis_url, tmp_path, tag=first.tag)  # same projection
    view = second.start_view(HEALTHSTREAM_VIEW_TOKEN="dash-t0ken")
    try:
        denied = parse(browse(chromium, second.url + "/"))
        assert not denied.find("body") or denied.find("body")[0].attrs.get("data-loaded") != "true"
        dom = parse(browse(chromium, second.url + "/?access_token=dash-t0ken"))
        assert dom.find("body")[0].attrs.get("data-loaded") == "true", dom.by_id("error").text
        assert number(dom.by_id("kpi-mrr").text) == Decimal(first.get("/api/portfolio")["current"]["mrr"])
    finally:
        view.stop()


def test_a_view_without_its_redis_says_why_at_the_top_of_the_page(
    live: Live, chromium: str, tmp_path: Path
) -> None:
    """The reason was a paragraph below every panel, under the fold, and the red "error" pill
    had no hover text (the "degraded" one has)."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    deployment = Deployment(live.deployment.bootstrap, nowhere, tmp_path, tag=live.deployment.tag)
    view = deployment.start_view()
    try:
        dom = parse(browse(chromium, deployment.url + "/"))
        error = dom.by_id("error")
        assert "the projection store (Redis) is unreachable" in error.text, error.text
        [main] = dom.find("main")
        assert main.children[0] is error  # above the KPIs
        status = dom.by_id("status")
        assert status.text == "error" and status.attrs.get("title") == error.text
        # ... and on an account page, where it was the last paragraph, below every panel
        account = parse(browse(chromium, deployment.url + "/accounts/acct-0001"))
        error = account.by_id("error")
        assert "the projection store (Redis) is unreachable" in error.text, error.text
        [main] = account.find("main")
        assert main.children[0] is error
    finally:
        view.stop()


def test_the_dashboard_renders(live: Live, chromium: str, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    browse(
        chromium,
        live.deployment.url + "/",
        f"--screenshot={shot}",
        "--window-size=1400,1000",
        "--hide-scrollbars",
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_charts_without_a_month_say_so_rather_than_draw_made_up_axes(
    live: Live, chromium: str, tmp_path: Path
) -> None:
    # A projection with one account and no month of movements: the charts drew axes of made-up
    # values (money from 0 to 1, NRR from 99.5% to 100.5%) around nothing.
    with nasty_view(live, tmp_path) as probe:
        assert probe.get("/api/months")["months"] == []  # the premise
        dom = parse(browse(chromium, probe.url + "/"))
        assert dom.find("body")[0].attrs.get("data-loaded") == "true", dom.by_id("error").text
        for chart in (dom.by_id("mrr-chart"), dom.by_id("retention-chart")):
            assert [t.text for t in chart.find("text")] == ["no data yet"]
            assert not chart.find("line") and not chart.find("rect") and not chart.find("circle")


def test_axis_labels_have_the_decimals_their_step_needs(live: Live, chromium: str) -> None:
    """Ticks 0.25% apart printed "99.8%, 100%, 100.3%"."""

    async def act(browser: Browser, socket: aiohttp.ClientWebSocketResponse) -> Any:
        return await browser.evaluate(
            socket,
            "[[99.75, 100, 100.25], [96, 98, 100], [99.5, 100, 100.5], [0.125, 0.25]].map(HS.decimals)",
        )

    assert in_page(chromium, live.deployment.url + "/", act) == [2, 0, 1, 3]


def pager_range(dom: Element, pager: str) -> str:
    (shown,) = [span for span in dom.by_id(pager).find("span") if "range" in span.attrs.get("class", "")]
    return shown.text


def test_paging_offsets_from_the_address_are_numbers_never_query_text(live: Live, chromium: str) -> None:
    """An offset from the address went into the API calls as it was: "0&account_id=acct-0002"
    filtered the lists while the filter controls showed none, and the pagers read "NaN-NaN"."""
    view = live.deployment
    smuggled = "/?alerts_offset=0%26account_id%3Dacct-0002&risk_offset=0%26band%3Dred%26min_mrr%3D100"
    dom = parse(browse(chromium, view.url + smuggled))
    assert dom.find("body")[0].attrs.get("data-loaded") == "true", dom.by_id("error").text
    at_risk = view.get("/api/accounts?at_risk=true&sort=score&limit=12")
    assert at_risk_rows(dom) == [item["account_id"] for item in at_risk["items"]] and at_risk["items"]
    alerts = view.get("/api/alerts?limit=8")
    shown = [row.attrs["data-alert"] for row in dom.by_id("alerts").find("tr")[1:]]
    assert shown == [alert["alert_id"] for alert in alerts["items"]] and shown
    churned = view.get("/api/accounts?stage=churned&sort=score&limit=8")
    for pager, answer in (("risk-pager", at_risk), ("alerts-pager", alerts), ("churned-pager", churned)):
        assert pager_range(dom, pager).startswith("1\u2013"), pager_range(dom, pager)
        assert pager_range(dom, pager).endswith(f" of {answer['total']}")
    for link in ("risk-csv", "alerts-csv", "churned-csv"):
        href = dom.by_id(link).find("a")[0].attrs["href"]
        assert "account_id" not in href and "band" not in href and "offset" not in href, href
    # an offset that is no whole number from 0 to 1,000,000 is 0 (it was a 400, or "NaN")
    odd = parse(browse(chromium, view.url + "/?churned_offset=-8&risk_offset=1e3&alerts_offset=1000001"))
    assert odd.find("body")[0].attrs.get("data-loaded") == "true", odd.by_id("error").text
    for pager in ("risk-pager", "alerts-pager", "churned-pager"):
        assert pager_range(odd, pager).startswith("1\u2013"), pager_range(odd, pager)


def view_requests(url: str, route: str) -> int:
    """How many requests for `route` the view at `url` has answered (its /metrics)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("healthstream_view_requests_total{") and f'route="{route}"' in line
    )


def test_the_filter_choices_are_asked_for_once_a_minute_not_at_every_refresh(
    live: Live, chromium: str, tmp_path: Path
) -> None:
    """The dashboard refreshes every 5 s; the owner and segment lists came with every refresh."""
    first = live.deployment
    second = Deployment(first.bootstrap, first.redis_url, tmp_path, tag=first.tag)  # same projection
    view = second.start_view()
    try:
        dom = parse(browse(chromium, second.url + "/", budget_ms=30_000))
        assert dom.find("body")[0].attrs.get("data-loaded") == "true", dom.by_id("error").text
        assert view_requests(second.url, "/api/portfolio") >= 4  # it refreshed every 5 s
        assert view_requests(second.url, "/api/filters") == 1
        owners = first.get("/api/filters")["owners"]
        assert [o.attrs["value"] for o in dom.by_id("filter-owner").find("option")] == ["", *owners]
    finally:
        view.stop()


async def _project_owners(url: str, prefix: str, template: dict[str, Any], owners: list[str]) -> None:
    writer = RedisProjection(
        connect(url), prefix, {"currency": "USD", "gross_margin": "1", "cs_cost_per_month": ""}
    )
    for index, owner in enumerate(owners):
        record = copy.deepcopy(template)
        record.update(account_id=f"acct-{index:04d}", override=None)
        record["profile"] = {"name": f"Company {index}", "owner": owner, "segment": "smb"}
        writer.snapshot(record)
    assert await writer.drain()
    await writer.close()


def owner_options(dom: Element) -> list[tuple[str, str]]:
    return [(o.attrs.get("value", ""), o.text) for o in dom.by_id("filter-owner").find("option")]


def test_the_owner_list_holds_the_largest_and_the_chosen_owner(
    live: Live, chromium: str, tmp_path: Path
) -> None:
    """20,000 owners made a 7.9 MB /api/filters and 40,000 options, fetched every 5 s: the list
    holds the 200 owners with the most accounts and says how many more there are; an owner chosen
    in the address is a choice whatever its size."""
    source = live.deployment
    template = source.get("/api/accounts/" + source.get("/api/accounts?limit=1")["items"][0]["account_id"])
    template.pop("recent_alerts")
    owners = [f"owner-{number:03d}" for number in range(FILTER_NAMES + 10)]
    probe = Deployment(source.bootstrap, source.redis_url, tmp_path, tag=uuid.uuid4().hex[:12])
    asyncio.run(_project_owners(source.redis_url, probe.app_id, template, [*owners, owners[-1]]))
    try:
        probe.start_view()
        everyone = parse(browse(chromium, probe.url + "/"))
        assert everyone.find("body")[0].attrs.get("data-loaded") == "true", everyone.by_id("error").text
        options = owner_options(everyone)
        listed = sorted([owners[-1], *owners[: FILTER_NAMES - 1]])
        assert options[0] == ("", "all owners") and [value for value, _ in options[1:-1]] == listed
        assert options[-1] == ("", "… 10 more owners with fewer accounts: give ?owner= in the address")
        assert dict(options)[owners[-1]] == f"{owners[-1]} (2)"

        outside = owners[FILTER_NAMES + 2]
        chosen = parse(browse(chromium, f"{probe.url}/?owner={outside}"))
        assert (outside, f"{outside} (1)") in owner_options(chosen)
        assert at_risk_rows(chosen) in ([], [f"acct-{FILTER_NAMES + 2:04d}"])  # its one account
    finally:
        probe.close()


@pytest.mark.parametrize("name", ["constructor", "toString", "__proto__"])
def test_an_owner_named_like_a_property_of_every_js_object_is_still_a_choice(
    live: Live, chromium: str, name: str
) -> None:
    """`chosen in values` was true for "constructor" in any object: no "(0)" choice was added and
    the select showed "all owners" while the lists were filtered by the owner."""
    dom = parse(browse(chromium, f"{live.deployment.url}/?owner={name}"))
    assert dom.find("body")[0].attrs.get("data-loaded") == "true", dom.by_id("error").text
    assert (name, f"{name} (0)") in owner_options(dom)
    assert dom.by_id("risk-total").attrs["data-value"] == "0"


def test_a_bad_filter_in_the_address_empties_only_the_lists_it_goes_to(live: Live, chromium: str) -> None:
    """A hand-edited or stale bookmark (?severity=bogus, ?q=%20, ?rule=%2C, ?owner=%20) left every
    KPI, chart and list at a dash with one error line; the severity select showed "any"."""
    view = live.deployment
    dom = parse(browse(chromium, view.url + "/?severity=bogus&q=%20&owner=%20&rule=%2C"))
    assert dom.find("body")[0].attrs.get("data-loaded") == "true", dom.by_id("error").text
    now = view.get("/api/portfolio")["current"]
    assert number(dom.by_id("kpi-mrr").text) == Decimal(now["mrr"])  # the KPIs take no filter
    assert dom.by_id("mrr-chart").find("circle"), "the charts take no filter"
    # the blank filters are left out of the address, with a note naming them
    note = dom.by_id("note")
    assert note.attrs.get("hidden") is None and all(
        f"{name}=" in note.text for name in ("q", "owner", "rule")
    )
    at_risk = view.get("/api/accounts?at_risk=true&sort=score&limit=12")["items"]
    assert at_risk_rows(dom) == [item["account_id"] for item in at_risk] and at_risk
    churned = view.get("/api/accounts?stage=churned&sort=score&limit=8")["items"]
    assert [row.attrs["data-account"] for row in dom.by_id("churned").find("tr")[1:]] == [
        item["account_id"] for item in churned
    ]
    # the alerts, which the API refuses with ?severity=bogus, say so; the error line names it
    (refused,) = dom.by_id("alerts").find("tr", **{"class": "empty refused"})
    assert 'severity="bogus"' in refused.text, refused.text
    error = dom.by_id("error")
    assert error.attrs.get("hidden") is None and 'severity="bogus"' in error.text, error.text
    assert "at-risk" not in error.text and "churned" not in error.text, error.text
    # the severity control shows what the address asked for, not "any"
    chosen = [o for o in dom.by_id("filter-severity").find("option") if "selected" in o.attrs]
    assert [o.attrs["value"] for o in chosen] == ["bogus"], [o.attrs for o in chosen]


async def _project_renewals(
    url: str, prefix: str, template: dict[str, Any], metrics: dict[str, dict[str, Any]]
) -> None:
    """At-risk accounts with a 60-day churn risk (a fitted model) and the given metrics."""
    writer = RedisProjection(
        connect(url), prefix, {"currency": "USD", "gross_margin": "1", "cs_cost_per_month": ""}
    )
    for account_id, given in metrics.items():
        record = copy.deepcopy(template)
        record.update(
            account_id=account_id,
            band="red",
            mrr="100.00",
            churn_risk_60d=0.2,
            override=None,
            lifecycle_stage="adopted",
        )
        record["profile"] = {"name": account_id}
        none = {"renewal_at": None, "days_to_renewal": None, "scheduled_cancellation_at": None}
        record["metrics"] = {**record["metrics"], **none, **given}
        writer.snapshot(record)
    assert await writer.drain()
    await writer.close()


def test_the_at_risk_list_says_what_it_leaves_out_and_shows_scheduled_cancellations(
    live: Live, chromium: str, tmp_path: Path
) -> None:
    """Sorted by renewal, the accounts without a renewal date were left out silently; a scheduled
    cancellation showed as a dash in the renewal column; an empty list said it "takes a fitted
    [model]" while every account had a churn risk; "1 accounts"."""
    source = live.deployment
    template = source.get("/api/accounts/" + source.get("/api/accounts?limit=1")["items"][0]["account_id"])
    template.pop("recent_alerts")
    metrics = {
        "renews": {"renewal_at": "2025-06-01T00:00:00Z", "days_to_renewal": 30.4},
        "cancels": {"scheduled_cancellation_at": "2025-02-01T10:00:00Z"},
        "neither": {},
    }
    probe = Deployment(source.bootstrap, source.redis_url, tmp_path, tag=uuid.uuid4().hex[:12])
    asyncio.run(_project_renewals(source.redis_url, probe.app_id, template, metrics))
    try:
        probe.start_view()
        by_renewal = parse(browse(chromium, probe.url + "/?risk_sort=renewal"))
        assert at_risk_rows(by_renewal) == ["renews"]
        assert by_renewal.by_id("risk-total").text == "1 account; 2 without a renewal date left out"
        assert by_renewal.by_id("churned-total").text == "0 accounts"
        by_score = parse(browse(chromium, probe.url + "/?risk_sort=score"))
        renewal = {
            row.attrs["data-account"]: row.find("td")[6].text
            for row in by_score.by_id("at-risk").find("tr")[1:]
        }
        assert renewal == {
            "renews": "2025-06-01 (30 d)",
            "cancels": "cancels 2025-02-01",
            "neither": "\u2013",
        }
        for address in ("/?q=nobody-here", "/?q=nobody-here&risk_sort=-churn_risk"):
            none = parse(browse(chromium, probe.url + address))
            (empty,) = none.by_id("at-risk").find("tr", **{"class": "empty"})
            assert empty.text == "no account at risk matches the filters", (address, empty.text)
    finally:
        probe.close()


async def _project_override(url: str, prefix: str, template: dict[str, Any], alert: dict[str, Any]) -> None:
    record = copy.deepcopy(template)
    record.update(account_id="forced", band="red", score=20.0)
    record["metrics"] = {**record["metrics"], "seat_utilisation": 0.5, "ces": 5.0, "days_to_renewal": 40.6}
    record["override"] = {
        "band": None,
        "score": 20.0,
        "reason": "known escalation",
        "author": "ann@example.com",
        "set_at": record["as_of"],
        "expires_at": "2999-01-01T00:00:00Z",
        "computed_score": 81.5,
        "computed_band": "green",
    }
    await _write(url, prefix, [record])


async def _write(url: str, prefix: str, records: list[dict[str, Any]]) -> None:
    writer = RedisProjection(
        connect(url), prefix, {"currency": "USD", "gross_margin": "1", "cs_cost_per_month": ""}
    )
    for record in records:
        writer.snapshot(record)
    assert await writer.drain()
    await writer.close()


def test_the_account_page_marks_an_override_and_colours_the_score_by_its_published_band(
    live: Live, chromium: str, tmp_path: Path
) -> None:
    """An overridden score showed with no mark; the score chart shaded fixed bands (green from
    70) behind a line whose published band also reads peers, renewals and overrides; key
    metrics came without units; times were UTC without saying so."""
    with nasty_view(live, tmp_path, _project_override) as probe:
        dom = parse(browse(chromium, probe.url + "/accounts/forced"))
        assert dom.find("body")[0].attrs.get("data-loaded") == "true", dom.by_id("error").text
        tag = dom.by_id("score-override")
        assert tag.attrs.get("hidden") is None and tag.text == "override"
        assert (
            dom.by_id("score").text == "20.0" and dom.by_id("score").attrs["title"] == "computed: 81.5 green"
        )
        chart = dom.by_id("score-chart")
        assert not chart.find("rect")  # no band drawn from the score alone
        lines = [p for p in chart.find("polyline") if "line-score" in p.attrs.get("class", "")]
        assert [(p.attrs["class"], p.attrs["data-band"]) for p in lines] == [("line-score red", "red")]
        shown = {row.attrs["data-metric"]: row.find("td")[1].text for row in dom.by_id("metrics").find("tr")}
        assert shown["seat_utilisation"] == "50.0%" and shown["ces"] == "5.0 of 7"
        assert shown["days_to_renewal"] == "41 d"
        assert "UTC" in dom.find("header")[0].text
        assert dom.by_id("refreshed").text.count(":") == 2


# The page's width, the window's, and the KPI figures taller than a line and a half (broken).
PHONE = """({width: document.documentElement.scrollWidth, window: window.innerWidth,
  broken: Array.from(document.querySelectorAll(".kpi .value")).filter((value) =>
    value.getBoundingClientRect().height > 1.5 * (parseFloat(getComputedStyle(value).lineHeight) || 20)
  ).map((value) => value.id)})"""


def test_no_page_scrolls_sideways_on_a_phone(live: Live, chromium: str) -> None:
    """At 390 px the KPIs broke numbers over lines ("348,251.7" / "1") and the pages scrolled sideways."""

    async def act(browser: Browser, socket: aiohttp.ClientWebSocketResponse) -> Any:
        # a headless window is at least 500 px wide: the phone's width is emulated
        phone = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
        await socket.send_json({"id": 0, "method": "Emulation.setDeviceMetricsOverride", "params": phone})
        while (await socket.receive_json(timeout=60)).get("id") != 0:
            pass
        await asyncio.sleep(1)  # laid out again
        return await browser.evaluate(socket, PHONE)

    view = live.deployment
    account = view.get("/api/accounts?limit=1")["items"][0]["account_id"]
    for address in ("/", "/accounts/" + account):
        shown = in_page(chromium, view.url + address, act, "--hide-scrollbars")
        assert shown["window"] == 390, shown
        assert shown["width"] <= 390 and not shown["broken"], (address, shown)
