"""The HTTP view against a real Redis holding a projection written by `RedisProjection` from a
simulated portfolio scored by the core: every endpoint, its errors, auth, headers, outages."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from projection.scored import Scored, scored
from redis.asyncio import Redis

from streamer.contract.outputs import Alert, HealthSnapshot
from streamer.core.clock import DAY
from streamer.projection.codec import epoch_ms, summary
from streamer.projection.redis_reader import NAME_BATCH, ProjectionReader
from streamer.projection.redis_writer import RedisProjection, connect
from streamer.settings import Settings
from streamer.stream.access import plain
from streamer.view import handlers
from streamer.view.app import ROUTES, create_app
from streamer.view.health import Health
from streamer.view.security import COOKIE, cookie_value
from streamer.view.service import FILTER_NAMES
from streamer.view.settings import ViewSettings
from tests.fixtures import RedisServer, free_port

META = {"currency": "USD", "gross_margin": "1.0", "cs_cost_per_month": ""}
STATS = {"processed": 10.0, "rejected": 1.0, "alerts": 3.0, "lag": 4.0, "lag_partition.0": 4.0}
STATS |= {"latency_s": 0.25, "alerts_rule.silence": 3.0, "reread": 6.0, "offset_gaps": 2.0}
STATS |= {"loop_stall_s": 1.5}

Make = Callable[..., "AsyncIterator[TestClient[Any, Any]]"]


async def project(url: str, prefix: str, data: Scored) -> None:
    writer = RedisProjection(connect(url), prefix, META, min_interval_s=0.0)
    for snapshot in data.snapshots:
        writer.snapshot(snapshot)
    for alert in data.alerts:
        writer.alert(alert)
    for index, engine in enumerate(data.run.engines):
        writer.partition(index, engine.periods.sums, engine.totals.sums, engine.clock.stream_time)
    writer.worker("w-test", STATS)
    assert await writer.drain()
    await writer.close()


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return scored().run.portfolio()  # also levels the partitions' months, as the view's merge does


@pytest.fixture
async def projected(redis_server: RedisServer, prefix: str, expected: dict[str, Any]) -> str:
    await project(redis_server.url, prefix, scored())
    return prefix


async def start(
    url: str, prefix: str, token: str | None = None, kafka: bool | None = None
) -> TestClient[Any, Any]:
    settings = Settings(redis_url=url, app_id=prefix, kafka_bootstrap="127.0.0.1:1")
    app = create_app(settings, ViewSettings(token=token, kafka_check=False))
    if kafka is not None:
        health = app[handlers.HEALTH]
        app[handlers.HEALTH] = Health(health.reader, plain("broker:9092"), 30.0, kafka_probe=lambda *_: kafka)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def view(redis_server: RedisServer, projected: str) -> AsyncIterator[TestClient[Any, Any]]:
    client = await start(redis_server.url, projected)
    yield client
    await client.close()


async def get(client: TestClient[Any, Any], path: str, status: int = 200, **kwargs: Any) -> Any:
    response = await client.get(path, **kwargs)
    body = await response.read()
    assert response.status == status, body[:500]
    return json.loads(body) if response.content_type == "application/json" else body.decode()


# -- one account ---------------------------------------------------------------------------------


async def test_an_account_is_its_last_snapshot_with_its_newest_alerts(view: TestClient[Any, Any]) -> None:
    data = scored()
    account_id, snapshot = max(
        data.last.items(), key=lambda item: sum(a["account_id"] == item[0] for a in data.alerts)
    )
    answer = await get(view, f"/api/accounts/{account_id}")
    alerts = answer.pop("recent_alerts")
    assert answer == snapshot
    HealthSnapshot.model_validate(answer)
    own = sorted(
        (a for a in data.alerts if a["account_id"] == account_id),
        key=lambda a: (epoch_ms(a["raised_at"]), a["alert_id"]),
        reverse=True,
    )
    assert alerts == own[:10] and alerts


async def test_an_unknown_account_is_a_404(view: TestClient[Any, Any]) -> None:
    body = await get(view, "/api/accounts/nobody", 404)
    assert body == {"error": "no account 'nobody' in the projection"}


async def test_any_account_id_can_be_addressed(redis_server: RedisServer, prefix: str) -> None:
    odd = "ac/ct 1?#<é>&%"
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    writer.snapshot({**next(iter(scored().last.values())), "account_id": odd})
    assert await writer.drain()
    await writer.close()
    client = await start(redis_server.url, prefix)
    try:
        answer = await get(client, "/api/accounts/" + quote(odd, safe=""))
        assert answer["account_id"] == odd
        listed = await get(client, "/api/accounts")
        assert [row["account_id"] for row in listed["items"]] == [odd]
    finally:
        await client.close()


async def test_owner_and_segment_filters_reach_names_with_commas_and_spaces(
    redis_server: RedisServer, prefix: str
) -> None:
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    template = next(iter(scored().last.values()))
    for account_id, owner, segment in (("a1", "Smith, Ana", " enterprise "), ("a2", "Smith", "enterprise")):
        writer.snapshot(
            {**template, "account_id": account_id, "profile": {"owner": owner, "segment": segment}}
        )
    assert await writer.drain()
    await writer.close()
    client = await start(redis_server.url, prefix)
    try:
        filters = await get(client, "/api/filters")
        assert filters == {
            "owners": {"Smith": 1, "Smith, Ana": 1},
            "segments": {" enterprise ": 1, "enterprise": 1},
            "owners_total": 2,
            "segments_total": 2,
            "limit": FILTER_NAMES,
            "unreadable": 0,
        }
        for params, expected in [
            ({"owner": "Smith, Ana"}, ["a1"]),
            ({"segment": " enterprise "}, ["a1"]),
            ({"segment": "enterprise"}, ["a2"]),
            ([("owner", "Smith"), ("owner", "Smith, Ana")], ["a1", "a2"]),
        ]:
            listed = await get(client, "/api/accounts", params=params)
            assert sorted(row["account_id"] for row in listed["items"]) == expected, params
    finally:
        await client.close()


async def test_filters_list_the_owners_and_segments_with_the_most_accounts(
    redis_server: RedisServer, prefix: str
) -> None:
    """One owner and segment per account made an answer of megabytes (20,000 owners: 7.9 MB,
    fetched by the dashboard every 5 s): at most `FILTER_NAMES` of each, those with the most
    accounts, with how many there are; a chosen one outside them is still listed, with its count."""
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    template = next(iter(scored().last.values()))
    owners = [f"o-{number:03d}" for number in range(FILTER_NAMES + 10)]
    accounts = [(f"a-{index}", owner) for index, owner in enumerate(owners)]
    accounts += [(f"b-{index}", owners[-1]) for index in range(2)]  # the last owner has 3 accounts
    for account_id, owner in accounts:
        profile = {"owner": owner, "segment": "smb" if account_id.endswith("0") else "mid"}
        writer.snapshot({**template, "account_id": account_id, "profile": profile})
    assert await writer.drain()
    await writer.close()
    client = await start(redis_server.url, prefix)
    try:
        filters = await get(client, "/api/filters")
        largest = [owners[-1], *owners[: FILTER_NAMES - 1]]  # then ties by name
        assert filters["owners"] == {owner: 3 if owner == owners[-1] else 1 for owner in sorted(largest)}
        assert list(filters["owners"]) == sorted(filters["owners"])
        assert (filters["owners_total"], filters["segments_total"], filters["limit"]) == (
            FILTER_NAMES + 10,
            2,
            FILTER_NAMES,
        )
        assert set(filters["segments"]) == {"smb", "mid"} and filters["unreadable"] == 0
        outside = owners[FILTER_NAMES + 5]
        chosen = await get(
            client, "/api/filters", params=[("owner", outside), ("owner", "constructor"), ("segment", "none")]
        )
        assert chosen["owners"] == {**filters["owners"], outside: 1, "constructor": 0}
        assert chosen["segments"] == {**filters["segments"], "none": 0}
        refused = await get(client, "/api/filters", 400, params={"owner": " "})
        assert refused == {"error": "'owner' is empty; leave it out or give a value"}
    finally:
        await client.close()


async def test_the_largest_names_are_found_across_scan_batches(
    redis_server: RedisServer, prefix: str
) -> None:
    """The reader keeps a bounded number of names while it scans: what it keeps is the obvious answer."""
    redis = Redis.from_url(redis_server.url)
    reader = ProjectionReader(redis, prefix)
    counts = {f"n{number:05d}": (number * 7919) % 97 + 1 for number in range(2 * NAME_BATCH + 500)}
    await redis.hset(reader.keys.owners, mapping=counts)
    await redis.hset(reader.keys.owners, "bad", "x")
    try:
        for limit in (1, 5, 200):
            names = await reader.names("owner", limit, ["n00003", "absent"])
            largest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
            assert names.counts == dict(
                sorted({**dict(largest), "n00003": counts["n00003"], "absent": 0}.items())
            )
            assert (names.total, names.unreadable) == (len(counts) + 1, 1)
    finally:
        await redis.aclose()


# -- the account list ----------------------------------------------------------------------------


def reference(query: dict[str, Any], data: Scored) -> tuple[int, list[str]]:
    """What /api/accounts must answer, computed the slow obvious way (`plan`: a list of plans)."""
    rows = [summary(snapshot) for snapshot in data.last.values()]
    now = max(engine.clock.stream_time for engine in data.run.engines)
    if "band" in query:
        rows = [r for r in rows if r["band"] in query["band"].split(",")]
    if "stage" in query:
        rows = [r for r in rows if r["lifecycle_stage"] in query["stage"].split(",")]
    if "plan" in query:
        rows = [r for r in rows if r["plan"] in query["plan"]]
    if "min_mrr" in query:
        rows = [r for r in rows if Decimal(r["mrr"]) >= Decimal(query["min_mrr"])]
    if query.get("at_risk") == "true":
        rows = [r for r in rows if r["band"] != "green" and Decimal(r["mrr"]) > 0]
    if "renewal_within_days" in query:
        end = now + int(query["renewal_within_days"]) * DAY
        rows = [r for r in rows if r["renewal_at"] and now <= epoch_ms(r["renewal_at"]) <= end]
    sort = query.get("sort", "score")
    field = sort.lstrip("-")
    if field == "renewal":
        rows = [r for r in rows if r["renewal_at"]]
    if field == "churn_risk":
        rows = [r for r in rows if r["churn_risk_60d"] is not None]

    def value(r: dict[str, Any]) -> float:
        if field == "score":
            return float(r["score"])
        if field == "churn_risk":
            return float(r["churn_risk_60d"])
        return float(Decimal(r["mrr"])) if field == "mrr" else float(epoch_ms(r["renewal_at"]))

    rows.sort(key=lambda r: (value(r), r["account_id"]), reverse=sort.startswith("-"))
    offset, limit = int(query.get("offset", 0)), int(query.get("limit", 50))
    return len(rows), [r["account_id"] for r in rows[offset : offset + limit]]


LIST_QUERIES = [
    {},
    {"limit": "5"},
    {"sort": "-score", "limit": "7", "offset": "3"},
    {"band": "yellow"},
    {"band": "red,yellow", "sort": "-mrr"},
    {"at_risk": "true", "sort": "-mrr"},
    {"at_risk": "true", "sort": "score"},
    {"sort": "mrr", "min_mrr": "100"},
    {"sort": "-mrr", "min_mrr": "1000", "limit": "3"},
    {"min_mrr": "500", "stage": "adopted,renewal"},
    {"sort": "mrr", "min_mrr": "29.000000000000001"},  # as a float, 29.0: accounts at 29.00 are not in
    {"sort": "-mrr", "min_mrr": "29.000000000000001", "at_risk": "true", "limit": "2"},
    {"min_mrr": "29.000000000000001"},
    {"sort": "renewal"},
    {"sort": "renewal", "renewal_within_days": "365"},
    {"band": "green", "sort": "renewal", "renewal_within_days": "200"},
    {"renewal_within_days": "400", "sort": "-score"},
    {"plan": ["team", "enterprise"], "sort": "-mrr"},
    {"sort": "-churn_risk"},
    {"sort": "churn_risk", "limit": "4", "offset": "2"},
    {"band": "yellow", "sort": "-churn_risk"},
    {"at_risk": "true", "sort": "-churn_risk"},
    {"stage": "churned", "sort": "-churn_risk"},
    {"band": "green", "at_risk": "true", "sort": "mrr"},
    # the sort's set within the at-risk set (one ZINTER): pages, ranges and residual filters
    {"at_risk": "true", "sort": "-score", "limit": "3", "offset": "2"},
    {"at_risk": "true", "sort": "renewal", "renewal_within_days": "300"},
    {"at_risk": "true", "sort": "score", "stage": "renewal,adopted"},
    {"at_risk": "true", "sort": "churn_risk", "band": "red"},
    {"offset": "1000"},
]


@pytest.mark.parametrize(
    "query", LIST_QUERIES, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()) or "default"
)
async def test_account_list_matches_the_obvious_answer(
    view: TestClient[Any, Any], query: dict[str, Any]
) -> None:
    answer = await get(view, "/api/accounts", params=query)
    total, ids = reference(query, scored())
    assert (answer["total"], [row["account_id"] for row in answer["items"]]) == (total, ids)
    assert answer["sort"] == query.get("sort", "score") and answer["as_of"] == "2024-03-31T23:23:00Z"
    for row in answer["items"]:
        assert row == summary(scored().last[row["account_id"]])


async def test_a_plan_with_a_comma_is_filtered_on_exactly(redis_server: RedisServer, prefix: str) -> None:
    """The contract takes a plan "Pro, annual": `plan=Pro, annual` listed the plans "Pro" and
    "annual" instead, and no query reached that plan."""
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    template = next(iter(scored().last.values()))
    for account_id, plan in (("plan-comma", "Pro, annual"), ("plan-pro", "Pro"), ("plan-annual", "annual")):
        writer.snapshot({**template, "account_id": account_id, "plan": plan})
    assert await writer.drain()
    await writer.close()
    client = await start(redis_server.url, prefix)
    try:
        for query, listed in [
            ([("plan", "Pro, annual")], ["plan-comma"]),
            ([("plan", "Pro")], ["plan-pro"]),
            ([("plan", "Pro"), ("plan", "annual")], ["plan-annual", "plan-pro"]),
        ]:
            answer = await get(client, "/api/accounts", params=query)
            assert sorted(row["account_id"] for row in answer["items"]) == listed, query
    finally:
        await client.close()


async def test_list_rows_are_the_summaries_and_cover_all_accounts(view: TestClient[Any, Any]) -> None:
    answer = await get(view, "/api/accounts", params={"limit": "500"})
    assert answer["total"] == len(scored().last) == len(answer["items"])


# -- portfolio -----------------------------------------------------------------------------------


async def test_portfolio_months_and_periods_equal_portfolio_json(
    view: TestClient[Any, Any], expected: dict[str, Any]
) -> None:
    now = await get(view, "/api/portfolio")
    assert now == {"currency": "USD", "as_of": "2024-03-31T23:23:00Z", "current": expected["current"]}
    months = await get(view, "/api/months")
    assert months["months"] == expected["months"]
    last = expected["months"][-1]
    period = await get(view, "/api/period", params={"month": last["month"]})
    assert {k: period[k] for k in last} == last
    quarter = await get(view, "/api/period", params={"from": "2024-01-01", "to": "2024-04-01"})
    assert quarter["months"] == 3 and quarter["from"] == "2024-01-01" and quarter["to"] == "2024-04-01"
    assert set(quarter) >= set(last) - {"month"}


async def test_a_period_outside_the_kept_history_is_a_400(view: TestClient[Any, Any]) -> None:
    body = await get(view, "/api/period", 400, params={"month": "1999-01"})
    assert body["error"].startswith("period 1999-01-01..1999-02-01 is outside the kept history")


# -- alerts --------------------------------------------------------------------------------------


async def test_recent_alerts_newest_first(view: TestClient[Any, Any]) -> None:
    alerts = scored().alerts
    newest = sorted(alerts, key=lambda a: (epoch_ms(a["raised_at"]), a["alert_id"]), reverse=True)
    answer = await get(view, "/api/alerts", params={"limit": "25"})
    assert answer["items"] == newest[:25]
    for alert in answer["items"]:
        Alert.model_validate(alert)
    critical = await get(view, "/api/alerts", params={"severity": "critical", "limit": "500"})
    assert critical["items"] == [a for a in newest if a["severity"] == "critical"]


# -- errors: 4xx with a message, never a 500 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/accounts?band=purple", 400, "'band' must be one of green, yellow, red; got 'purple'"),
        ("/api/accounts?limit=-1", 400, "'limit' must be between 1 and 500, got -1"),
        ("/api/accounts?sort=name", 400, "'sort' must be one of score, -score"),
        ("/api/accounts?lmit=5", 400, "unknown query parameter 'lmit'"),
        ("/api/period?month=2024-3-15", 400, "'month': expected a month 'YYYY-MM' or a first-of-month date"),
        ("/api/period?month=99999-01", 400, "'month' must be a month from 1970-01 to 2999-12"),
        ("/api/period?month=0000-01", 400, "'month' must be a month from 1970-01 to 2999-12"),
        ("/api/period?from=2024-01-01&to=99999-01-01", 400, "'to' must be a month from 1970-01"),
        ("/api/alerts?account_id=" + "a" * 300, 400, "'account_id' must be at most 256 characters"),
        ("/api/accounts?min_mrr=" + "9" * 200, 400, "'min_mrr' must be at most 1,000,000,000,000"),
        ("/api/accounts?min_mrr=1e3", 400, "'min_mrr' must be a decimal number in the digits 0-9"),
        ("/api/accounts?limit=%EF%BC%95", 400, "'limit' must be an integer in the digits 0-9, got '\uff15'"),
        ("/api/period?month=2024_0-02", 400, "'month': expected a month 'YYYY-MM' or a first-of-month"),
        ("/api/portfolio?x=1", 400, "unknown query parameter 'x'; expected: none"),
        ("/api/nothing", 404, "Not Found: GET /api/nothing"),
    ],
)
async def test_bad_requests_get_a_clear_message(
    view: TestClient[Any, Any], path: str, status: int, message: str
) -> None:
    body = await get(view, path, status)
    assert body["error"].startswith(message), body


async def test_the_view_is_read_only(view: TestClient[Any, Any]) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = await view.request(method, "/api/accounts")
        assert response.status == 405
        assert (await response.json())["error"].startswith("Method Not Allowed")


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
NAMES = st.sampled_from(["band", "stage", "plan", "renewal_within_days", "min_mrr", "at_risk", "sort"])
NAMES |= st.sampled_from(["limit", "offset", "month", "from", "to", "severity", "rule", "account_id"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/api/accounts", "/api/period", "/api/alerts", "/api/portfolio", "/api/months"]),
    query=st.lists(st.tuples(NAMES | TEXT, TEXT | st.integers(-5, 5000).map(str)), max_size=4),
)
async def test_no_query_string_makes_a_500(
    view: TestClient[Any, Any], path: str, query: list[tuple[str, str]]
) -> None:
    response = await view.get(path, params=query)
    assert response.status in (200, 400), await response.text()
    body = await response.json()
    assert response.status == 200 or body["error"]


# -- security ------------------------------------------------------------------------------------


async def test_a_token_guards_every_route_but_healthz(redis_server: RedisServer, projected: str) -> None:
    client = await start(redis_server.url, projected, token="s3cret")
    try:
        for path, _ in ROUTES:
            concrete = path.replace("{account_id:.+}", "acct-0001").replace(
                "/period", "/period?month=2024-03"
            )
            response = await client.get(concrete)
            if path == "/healthz":
                assert response.status == 200
                continue
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            wrong = await client.get(concrete, headers={"Authorization": "Bearer nope"})
            assert wrong.status == 401 and (await wrong.json())["error"] == "the bearer token is not valid"
            right = await client.get(concrete, headers={"Authorization": "Bearer s3cret"})
            assert right.status == 200, (path, await right.text())
        for path in ("/", "/accounts/acct-0001"):  # a browser cannot send the header: say how to open it
            bare = await client.get(path)
            assert bare.status == 401
            says = (await bare.json())["error"]
            assert says.startswith(f"this view needs its token: open {path}?access_token="), says
        assert "access_token" not in (await (await client.get("/api/portfolio")).json())["error"]
        api = await client.get("/api/portfolio", params={"access_token": "s3cret"})
        assert api.status == 401  # the query form is for the page only
        page = await client.get("/", params={"access_token": "s3cret"})  # (sets the page cookie)
        assert page.status == 200
    finally:
        await client.close()


async def test_a_page_opened_with_its_token_lets_the_browser_follow_links_reload_and_read(
    redis_server: RedisServer, projected: str
) -> None:
    """A browser sends no header on a page load: the links between the pages, a reload and a
    bookmark were 401s. The page opened with ?access_token= sets an HttpOnly, SameSite=Strict
    cookie derived from the token, which reads take; a write still needs the header."""
    client = await start(redis_server.url, projected, token="s3cret")
    try:
        page = await client.get("/", params={"access_token": "s3cret"})
        assert page.status == 200
        cookie = page.cookies[COOKIE]
        assert cookie.value == cookie_value("s3cret") and "s3cret" not in cookie.value
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert int(cookie["max-age"]) == 30 * 24 * 3600
        for path in ("/accounts/acct-0001", "/", "/api/portfolio", "/api/accounts?format=csv"):
            followed = await client.get(path)  # the session's jar sends the cookie, no header
            assert followed.status == 200, (path, await followed.text())
        write = await client.post("/api/accounts/acct-0001/override", json={"clear": True, "author": "a"})
        assert write.status == 401  # a write needs the header, whatever the cookie
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({COOKIE: cookie_value("the token before")})
        assert (await client.get("/api/portfolio")).status == 401  # a new token ends old cookies
        client.session.cookie_jar.clear()
        wrong = await client.get("/", params={"access_token": "nope"})
        assert wrong.status == 401 and COOKIE not in wrong.cookies
        by_header = await client.get("/", headers={"Authorization": "Bearer s3cret"})
        assert by_header.status == 200 and COOKIE not in by_header.cookies  # a client, not a browser
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("rebind.attacker.example:8000", 403),
        ("rebind.attacker.example.", 403),
        ("view.example.com:8000", 200),  # listed in HEALTHSTREAM_VIEW_ALLOWED_HOSTS
        ("VIEW.example.com.", 200),
        ("localhost:8000", 200),
        ("app.localhost", 200),
        ("127.0.0.1:8000", 200),
        ("10.1.2.3", 200),
        ("[::1]:8000", 200),
    ],
)
async def test_a_view_without_a_token_answers_only_addresses_localhost_and_listed_names(
    redis_server: RedisServer, projected: str, host: str, status: int
) -> None:
    """DNS rebinding: another site's page whose name is made to resolve to 127.0.0.1 reads the
    view as its own origin, and the browser sends that name as the Host."""
    settings = Settings(redis_url=redis_server.url, app_id=projected, kafka_bootstrap="127.0.0.1:1")
    view = ViewSettings(kafka_check=False, allowed_hosts=" view.example.com ,other.example")
    client = TestClient(TestServer(create_app(settings, view)))
    await client.start_server()
    try:
        status_code, body = await raw_get(client, "/api/portfolio", None, host=host.encode())
        assert status_code == status, body[:300]
        if status == 403:
            assert b"HEALTHSTREAM_VIEW_ALLOWED_HOSTS" in body
        assert (await raw_get(client, "/healthz", None, host=host.encode()))[0] in (200, 503)
    finally:
        await client.close()


async def test_a_view_with_a_token_or_any_host_allowed_answers_any_host(
    redis_server: RedisServer, projected: str
) -> None:
    settings = Settings(redis_url=redis_server.url, app_id=projected, kafka_bootstrap="127.0.0.1:1")
    for view in (
        ViewSettings(kafka_check=False, token="s3cret"),
        ViewSettings(kafka_check=False, allowed_hosts="*"),
    ):
        client = TestClient(TestServer(create_app(settings, view)))
        await client.start_server()
        try:
            status, body = await raw_get(client, "/api/portfolio", b"Bearer s3cret", host=b"any.example")
            assert status == 200, body[:300]
        finally:
            await client.close()


async def raw_get(
    client: TestClient[Any, Any], path: str, authorization: bytes | None, host: bytes = b"test"
) -> tuple[int, bytes]:
    """A request with the Authorization and Host headers' bytes exactly as given (a client library
    would refuse or re-encode non-ASCII; None, b"": no such header): the status and the body."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            b"GET "
            + path.encode()
            + b" HTTP/1.1\r\n"
            + (b"Host: " + host + b"\r\n" if host else b"")
            + b"Connection: close\r\n"
            + (b"Authorization: " + authorization + b"\r\n" if authorization is not None else b"")
            + b"\r\n"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer sécret".encode(),  # UTF-8, not ASCII
        b"Bearer s\xe9cret",  # Latin-1: not even UTF-8
        b"Bearer \xff\xfe\x00x",
        "Bearer s3cret\u2028".encode(),
        b"Bearer " + b"x" * 4000,
        b"Basic czNjcmV0",
    ],
)
async def test_a_malformed_token_is_a_401_not_a_500(
    redis_server: RedisServer, projected: str, authorization: bytes
) -> None:
    client = await start(redis_server.url, projected, token="s3cret")
    try:
        status, body = await raw_get(client, "/api/portfolio", authorization)
        assert status in (400, 401), body  # 400: aiohttp's parser refused the header itself
        if status == 401:
            assert json.loads(body)["error"].startswith(("the bearer token is not valid", "this view needs"))
        good, _ = await raw_get(client, "/api/portfolio", b"Bearer s3cret")
        assert good == 200
    finally:
        await client.close()


async def test_a_non_ascii_secret_matches_its_own_bytes(redis_server: RedisServer, projected: str) -> None:
    client = await start(redis_server.url, projected, token="sécret")
    try:
        assert (await raw_get(client, "/api/portfolio", "Bearer sécret".encode()))[0] == 200
        assert (await raw_get(client, "/api/portfolio", b"Bearer s\xe9cret"))[0] == 401
    finally:
        await client.close()


async def test_protective_headers(view: TestClient[Any, Any]) -> None:
    page = await view.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "'unsafe-inline'" not in csp
    assert "connect-src 'self'" in csp
    api = await view.get("/api/portfolio")
    for response in (page, api):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def static_text(name: str) -> str:
    return (resources.files("streamer.view") / "static" / name).read_text()


def test_the_page_puts_no_string_into_html_and_loads_nothing_external() -> None:
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function")
    for script in ("common.js", "dashboard.js", "account.js"):
        js = static_text(script)
        for sink in sinks:
            assert sink not in js, (script, sink)
    pages = ("head.html", "index.html", "account.html")
    for name in (*pages, "dashboard.css", "common.js", "dashboard.js", "account.js"):
        text = static_text(name)
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, (
            name
        )


async def test_the_page_is_self_contained(view: TestClient[Any, Any]) -> None:
    html = await get(view, "/")
    assert "<!--SCRIPT-->" not in html and "<!--STYLE-->" not in html
    # nothing loaded from elsewhere: the one <link> is the empty icon (a favicon 404 otherwise)
    assert " src=" not in html and html.count("<link") == 1 and '<link rel="icon" href="data:,">' in html
    # the shared head (head.html) is in place, once, before the page's own title
    assert html.startswith("<!doctype html>") and "<!--HEAD" not in html
    assert html.count("<head>") == 1 and html.index("<style>") < html.index("<title>") < html.index("</head>")


# -- health and metrics --------------------------------------------------------------------------


async def test_healthz_reports_redis_workers_and_lag(redis_server: RedisServer, projected: str) -> None:
    client = await start(redis_server.url, projected, kafka=True)
    try:
        body = await get(client, "/healthz")
        assert body["status"] == "ok" and body["redis"]["reachable"] and body["kafka"]["reachable"]
        assert body["workers"] == 1 and body["consumer_lag"] == 4 and body["stalled_workers"] == []
        assert body["as_of"] == "2024-03-31T23:23:00Z"
    finally:
        await client.close()
    client = await start(redis_server.url, projected, kafka=False)
    try:
        assert (await get(client, "/healthz"))["status"] == "degraded"
    finally:
        await client.close()


async def test_a_worker_that_reports_but_commits_nothing_is_a_problem(
    redis_server: RedisServer, prefix: str
) -> None:
    """A worker whose heartbeat is fresh but whose input has waited uncommitted past the view's
    `worker_stall_s` is named in `problems` and `stalled_workers`; below it, it is healthy."""
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    writer.worker("w-busy", STATS | {"stalled_s": 59.9})
    writer.worker("w-stuck", STATS | {"lag": 1234.0, "stalled_s": 75.0})
    assert await writer.drain()
    await writer.close()
    client = await start(redis_server.url, prefix, kafka=True)
    try:
        body = await get(client, "/healthz")
        assert body["status"] == "degraded" and body["stalled_workers"] == ["w-stuck"], body
        assert body["problems"] == [
            "worker w-stuck has left 1,234 input messages waiting and committed none for 75 s: "
            "its log says what it waits for"
        ]
        lines = set((await get(client, "/metrics")).splitlines())
        assert 'healthstream_worker_stalled_seconds{worker="w-stuck"} 75.0' in lines
        assert 'healthstream_worker_stalled_seconds{worker="w-busy"} 59.9' in lines
    finally:
        await client.close()


async def test_input_partitions_no_reporting_worker_lists_for_a_while_are_a_problem(
    redis_server: RedisServer, prefix: str
) -> None:
    """A worker with a hung event loop stops reporting while its consumer thread still
    heartbeats, so its partitions stay its own: /healthz said `ok` with the other worker's lag
    while half the input stood still. Between reports a rebalance moves partitions: the grace."""
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    writer.worker("w-alive", STATS | {"lag_partition.0": 0.0, "lag_partition.1": 3.0})
    assert await writer.drain()
    await writer.close()
    now = [1000.0]
    reader = ProjectionReader(Redis.from_url(redis_server.url), prefix)
    health = Health(reader, None, 30.0, partitions=4, clock=lambda: now[0])
    try:
        assert (await health.check())[1]["problems"] == []  # within the grace
        now[0] += 29.0
        assert (await health.check())[1]["problems"] == []
        now[0] += 1.0
        status, body = await health.check()
        assert status == 200 and body["status"] == "degraded", body
        assert body["problems"] == [
            "input partitions 2, 3 have had no worker reporting them for 30 s or more: their worker "
            "is hung or gone (the group moves its partitions once it misses its heartbeats); its log "
            "says which"
        ]
        writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
        writer.worker("w-new", STATS | {"lag_partition.2": 0.0, "lag_partition.3": 0.0})
        assert await writer.drain()
        await writer.close()
        assert (await health.check())[1]["status"] == "ok"  # taken over: covered again
    finally:
        await reader.redis.aclose()


async def test_a_redis_that_can_evict_or_refuse_the_projection_is_degraded_with_the_reason(
    tmp_path: Path, prefix: str
) -> None:
    """The projection's keys have no TTL: an `allkeys-*` policy at a memory limit evicts them
    without a word, and a full `noeviction` Redis refuses the workers' writes. `/healthz` says so
    (degraded, with the one-line problem) and `/metrics` carries the figures."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    await project(server.url, prefix, scored())
    client = await start(server.url, prefix, kafka=True)
    admin = Redis.from_url(server.url)
    try:
        body = await get(client, "/healthz")
        assert (body["status"], body["problems"]) == ("ok", [])
        assert body["redis"]["memory"]["maxmemory_policy"] == "noeviction"
        await admin.config_set("maxmemory", 256 << 20)
        await admin.config_set("maxmemory-policy", "allkeys-lru")
        body = await get(client, "/healthz")
        assert body["status"] == "degraded", body
        [problem] = body["problems"]
        assert problem.startswith("Redis evicts keys at its memory limit (maxmemory-policy allkeys-lru")
        assert body["redis"]["memory"]["maxmemory_bytes"] == 256 << 20
        lines = set((await get(client, "/metrics")).splitlines())
        assert "healthstream_redis_evicts_projection 1.0" in lines
        [limit] = [line for line in lines if line.startswith("healthstream_redis_maxmemory_bytes ")]
        assert float(limit.split()[1]) == 256 << 20
        assert "healthstream_redis_evicted_keys_total 0.0" in lines
        used = body["redis"]["memory"]["used_bytes"]
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", used)
        body = await get(client, "/healthz")
        assert body["status"] == "degraded" and body["problems"][0].startswith("Redis uses ")
        assert "of its memory limit" in body["problems"][0]
        assert "healthstream_redis_evicts_projection 0.0" in (await get(client, "/metrics")).splitlines()
    finally:
        await admin.aclose()
        await client.close()
        server.stop()


async def test_a_redis_user_without_info_rights_still_has_a_healthy_view(tmp_path: Path, prefix: str) -> None:
    """Managed Redis may deny INFO to an application user: the memory figures are then left out,
    and Redis is not taken for down."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    admin = Redis.from_url(server.url)
    try:
        await admin.execute_command("ACL", "SETUSER", "viewer", "on", ">pw", "~*", "&*", "+@all", "-info")
        await project(server.url, prefix, scored())
        client = await start(server.url.replace("redis://", "redis://viewer:pw@"), prefix, kafka=True)
        try:
            body = await get(client, "/healthz")
            assert body["status"] == "ok" and body["redis"]["reachable"] and "memory" not in body["redis"]
            lines = set((await get(client, "/metrics")).splitlines())
            assert "healthstream_redis_up 1.0" in lines
            assert not any(line.startswith("healthstream_redis_maxmemory_bytes") for line in lines)
        finally:
            await client.close()
    finally:
        await admin.aclose()
        server.stop()


async def test_metrics_in_prometheus_format(view: TestClient[Any, Any]) -> None:
    await get(view, "/api/portfolio")
    text = await get(view, "/metrics")
    lines = set(text.splitlines())
    assert 'healthstream_events_processed_total{worker="w-test"} 10.0' in lines
    assert 'healthstream_events_rejected_total{worker="w-test"} 1.0' in lines
    assert 'healthstream_alerts_raised_total{worker="w-test"} 3.0' in lines
    assert 'healthstream_events_reread_total{worker="w-test"} 6.0' in lines
    assert 'healthstream_offset_gaps_total{worker="w-test"} 2.0' in lines
    assert 'healthstream_alerts_raised_by_rule_total{rule="silence",worker="w-test"} 3.0' in lines
    assert 'healthstream_consumer_lag{partition="0",worker="w-test"} 4.0' in lines
    assert 'healthstream_processing_latency_seconds{worker="w-test"} 0.25' in lines
    assert 'healthstream_event_loop_stall_seconds{worker="w-test"} 1.5' in lines
    assert "healthstream_redis_up 1.0" in lines and "healthstream_workers 1.0" in lines
    current = scored().run.portfolio()["current"]
    counts, churned = current["accounts_by_band"], current["accounts_by_stage"]["churned"]
    assert f'healthstream_accounts{{band="red"}} {float(counts["red"])}' in lines
    assert sum(counts.values()) == current["accounts"] - churned > 0 < churned  # churned: in no band
    assert f'healthstream_accounts_by_stage{{stage="churned"}} {float(churned)}' in lines
    assert any(
        line.startswith('healthstream_view_requests_total{route="/api/portfolio",status="200"}')
        for line in lines
    )


async def test_redis_down_is_a_503_and_metrics_still_answer(tmp_path: Path, prefix: str) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    await project(server.url, prefix, scored())
    client = await start(server.url, prefix)
    try:
        assert (await get(client, "/api/portfolio"))["current"]["accounts"] == 30
        server.stop()
        body = await get(client, "/api/portfolio", 503)
        assert body["error"].startswith("the projection store (Redis) is unreachable")
        health = await get(client, "/healthz", 503)
        assert health["status"] == "down" and not health["redis"]["reachable"]
        assert "healthstream_redis_up 0.0" in (await get(client, "/metrics")).splitlines()
        server.start()  # empty again: the workers re-stage (see tests/projection/test_resync.py)
        await project(server.url, prefix, scored())
        assert (await get(client, "/api/portfolio"))["current"]["accounts"] == 30  # a view keeps no state
    finally:
        await client.close()
        server.stop()


async def test_healthz_keeps_the_error_of_an_unreachable_redis_in_the_log(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`/healthz`, which needs no token, answered Redis's error as it came: "Error 111 connecting
    to 127.0.0.1:6391", the store's address for anyone to read."""
    port = free_port()
    client = await start(f"redis://127.0.0.1:{port}/0", prefix)
    try:
        with caplog.at_level(logging.WARNING, "streamer.view.health"):
            health = await get(client, "/healthz", 503)
    finally:
        await client.close()
    assert health["problems"] == ["the projection store (Redis) is unreachable: the view's log says why"]
    assert str(port) not in json.dumps(health), health
    assert [str(port) in getattr(r, "error", "") for r in caplog.records] == [True], caplog.records


async def test_healthz_says_redis_refused_a_read_rather_than_that_it_is_unreachable(
    tmp_path: Path, prefix: str
) -> None:
    """A Redis that answers but refuses a command (a user without the right to it) was reported
    "unreachable" next to `"reachable": true`."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    admin = Redis.from_url(server.url)
    try:
        await admin.execute_command("ACL", "SETUSER", "viewer", "on", ">pw", "~*", "&*", "+@all", "-smembers")
        await project(server.url, prefix, scored())
        client = await start(server.url.replace("redis://", "redis://viewer:pw@"), prefix)
        try:
            health = await get(client, "/healthz")
        finally:
            await client.close()
    finally:
        await admin.aclose()
        server.stop()
    assert health["redis"]["reachable"] and health["status"] == "degraded", health
    assert "the projection store (Redis) refused a read: the view's log says why" in health["problems"], (
        health
    )
    assert not any("unreachable" in problem or "viewer" in problem for problem in health["problems"]), health


# -- the OpenAPI document ------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    return dict(json.loads((resources.files("streamer.view") / "openapi.json").read_text()))


async def test_every_route_is_documented_and_served(view: TestClient[Any, Any]) -> None:
    document = await get(view, "/openapi.json")
    served_at = f"http://{view.server.host}:{view.server.port}"
    assert document["servers"] == [{"url": served_at}]  # whatever the port, not always 8000
    assert document == openapi() | {"servers": [{"url": served_at}]}
    assert document["openapi"].startswith("3.1")
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in view.server.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes == documented


def test_documented_output_records_are_the_contract_models() -> None:
    schemas = openapi()["components"]["schemas"]
    for model in (HealthSnapshot, Alert):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            assert schemas[name] == definition, name
        assert schemas[model.__name__] == schema, model.__name__


def test_an_account_state_is_documented_as_the_snapshot_and_its_recent_alerts() -> None:
    """An `allOf` of `HealthSnapshot` (no other field allowed) and `recent_alerts` refused every
    account answer; the copy of the snapshot's fields must not drift from the contract model."""
    schemas = openapi()["components"]["schemas"]
    snapshot, state = schemas["HealthSnapshot"], schemas["AccountState"]
    recent = state["properties"]["recent_alerts"]
    assert state["properties"] == snapshot["properties"] | {"recent_alerts": recent}
    assert state["required"] == [*snapshot["required"], "recent_alerts"]
    assert state["additionalProperties"] is False and state["type"] == "object"


def test_documented_parameters_are_the_ones_accepted() -> None:
    from streamer.view.params import ACCOUNT_LIST, ALERT_LIST, SORT_CHOICES

    paths = openapi()["paths"]
    names = lambda path: {p["name"] for p in paths[path]["get"].get("parameters", []) if p["in"] == "query"}  # noqa: E731
    assert names("/api/accounts") == set(ACCOUNT_LIST)
    assert names("/api/alerts") == set(ALERT_LIST)
    assert names("/api/period") == {"month", "from", "to"}
    assert names("/api/filters") == {"owner", "segment"}
    filters = openapi()["components"]["schemas"]["Filters"]
    assert set(filters["properties"]) == set(filters["required"])  # what `filters` answers
    (sort,) = (p for p in paths["/api/accounts"]["get"]["parameters"] if p["name"] == "sort")
    assert tuple(sort["schema"]["enum"]) == SORT_CHOICES


async def test_a_route_that_refuses_an_unknown_parameter_documents_its_400(
    view: TestClient[Any, Any],
) -> None:
    """Every GET route answers an unknown query parameter with a 400: the document says so for
    each one that does (`/api/filters` once lacked it)."""
    account_id = next(iter(scored().last))
    undocumented = []
    for path, operations in openapi()["paths"].items():
        if "get" not in operations:
            continue
        response = await view.get(path.replace("{account_id}", account_id) + "?bogus=1")
        if response.status == 400 and "400" not in operations["get"]["responses"]:
            undocumented.append(path)
    assert undocumented == []


@pytest.mark.parametrize("host", [b"x:99999", b"x:-1", b"x:65536", b"a:b:c", b"@", b"\xff", b"x..y"])
async def test_a_malformed_host_header_gets_the_document_with_a_relative_server(
    redis_server: RedisServer, projected: str, caplog: pytest.LogCaptureFixture, host: bytes
) -> None:
    """It was a 500 and an "unexpected error" traceback, which anyone could fill the log with
    (the route needs no token on a view without one). A view without a token answers such a
    name only when every name is allowed; by default it is a 403, never a 500."""
    settings = Settings(redis_url=redis_server.url, app_id=projected, kafka_bootstrap="127.0.0.1:1")
    for allowed, status in (("*", 200), ("", 403)):
        view = TestClient(
            TestServer(create_app(settings, ViewSettings(kafka_check=False, allowed_hosts=allowed)))
        )
        await view.start_server()
        try:
            code, body = await raw_get(view, "/openapi.json", None, host=host)
        finally:
            await view.close()
        assert code == status, body[:300]
        if status == 200:
            assert json.loads(body) == openapi() | {"servers": [{"url": "/"}]}
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []
