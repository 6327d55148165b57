"""Every answer of the read routes is what the OpenAPI document says of its route, status and
content type: a JSON body validates against the schema, with no top-level field the schema
leaves out, and a header of the view's own is documented. `AccountState` was an `allOf` of
`HealthSnapshot`, whose `additionalProperties: false` refused `recent_alerts`: no account answer
validated, and nothing noticed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from projection.scored import scored

from streamer.settings import Settings
from streamer.view.app import create_app
from streamer.view.settings import ViewSettings
from tests.fixtures import RedisServer
from tests.view.test_account_http import with_profiles
from tests.view.test_http import openapi, project, start

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (a dev dependency) validates the answers")

DOCUMENT = openapi()
DATA = with_profiles(scored())
ACCOUNTS = sorted(DATA.last)
WITH_ALERTS = sorted({alert["account_id"] for alert in DATA.alerts})


def reads(accounts: list[str] = ACCOUNTS) -> list[tuple[str, str]]:
    """(route, address) of a read of every GET route, of each of `accounts` for an account's."""
    found = [
        ("/api/accounts", "/api/accounts?limit=500"),
        ("/api/accounts", "/api/accounts?at_risk=true&sort=-churn_risk"),
        ("/api/accounts", "/api/accounts?q=acct&sort=renewal&limit=5"),
        ("/api/accounts", "/api/accounts?format=csv"),
        ("/api/accounts", "/api/accounts?limit=x"),
        ("/api/filters", "/api/filters?owner=nobody"),
        ("/api/portfolio", "/api/portfolio"),
        ("/api/months", "/api/months"),
        ("/api/period", "/api/period?from=2024-01-01&to=2024-04-01"),
        ("/api/period", "/api/period?month=1999-01"),
        ("/api/alerts", "/api/alerts?limit=500"),
        ("/api/alerts", "/api/alerts?severity=critical,warning&format=csv"),
        ("/healthz", "/healthz"),
        ("/metrics", "/metrics"),
        ("/openapi.json", "/openapi.json"),
        ("/", "/"),
        ("/api/accounts/{account_id}", "/api/accounts/nobody"),
        ("/api/accounts/{account_id}/history", "/api/accounts/nobody/history"),
        ("/accounts/{account_id}", "/accounts/nobody"),
    ]
    for account_id in accounts:
        found += [
            ("/api/accounts/{account_id}", f"/api/accounts/{account_id}"),
            ("/api/accounts/{account_id}/history", f"/api/accounts/{account_id}/history?days=400"),
            ("/api/accounts/{account_id}/history", f"/api/accounts/{account_id}/history?days=1&format=csv"),
            ("/api/accounts/{account_id}/timeline", f"/api/accounts/{account_id}/timeline?per_kind=50"),
            ("/accounts/{account_id}", f"/accounts/{account_id}"),
        ]
    for account_id in set(WITH_ALERTS) & set(accounts):
        found.append(("/api/accounts/{account_id}/alerts", f"/api/accounts/{account_id}/alerts?limit=500"))
    return found


def resolved(node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its `$ref` points to in the document."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def documented(route: str, status: int) -> dict[str, Any]:
    """The document's response of `GET route` with `status`."""
    responses = DOCUMENT["paths"][route]["get"]["responses"]
    assert str(status) in responses, f"GET {route} answers {status}, which the document does not list"
    return resolved(responses[str(status)])


def problems(schema: dict[str, Any], body: Any) -> list[str]:
    """Where `body` breaks `schema` (its `$ref`s read in the document), and each top-level field
    of `body` that the schema does not list."""
    validator = jsonschema.Draft202012Validator({**schema, "components": DOCUMENT["components"]})
    found = [f"{list(e.absolute_path)}: {e.message[:300]}" for e in validator.iter_errors(body)]
    listed = resolved(schema).get("properties")
    if isinstance(body, dict) and listed is not None:
        found += [f"{name!r} is not documented" for name in sorted(set(body) - set(listed))]
    return found


async def check(client: TestClient[Any, Any], route: str, address: str, **options: Any) -> int:
    """Read `address` and check its answer against the document; its status."""
    response = await client.get(address, **options)
    body = await response.read()
    response_doc = documented(route, response.status)
    content = response_doc.get("content", {})
    assert response.content_type in content, (address, response.status, response.content_type, list(content))
    own = {name for name in response.headers if name.lower().startswith("x-healthstream-")}
    assert own <= set(response_doc.get("headers", {})), (address, own)
    if response.content_type == "application/json":
        found = problems(content["application/json"]["schema"], json.loads(body))
        assert found == [], (address, response.status, found[:10])
    return response.status


@pytest.fixture
async def view(redis_server: RedisServer, prefix: str) -> AsyncIterator[TestClient[Any, Any]]:
    await project(redis_server.url, prefix, DATA)
    client = await start(redis_server.url, prefix)
    yield client
    await client.close()


async def test_every_answer_of_every_read_route_is_as_documented(view: TestClient[Any, Any]) -> None:
    statuses = {address: await check(view, route, address) for route, address in reads()}
    assert {route for route, _ in reads()} == {
        path for path, item in DOCUMENT["paths"].items() if "get" in item
    }  # every read route read
    assert set(statuses.values()) == {200, 400, 404}, statuses


async def test_an_answer_the_projection_cannot_give_is_as_documented(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    """A 503 of a value the view cannot read, and a page that leaves one out."""
    from tests.view.test_unreadable import plant

    await plant(redis_server.url, "HSET", f"{prefix}:summaries", ACCOUNTS[0], "notjson")
    await plant(redis_server.url, "HSET", f"{prefix}:account:{ACCOUNTS[0]}", "snapshot", "notjson")
    for route, address in [
        ("/api/accounts", "/api/accounts"),
        ("/api/accounts", "/api/accounts?format=csv"),
        ("/api/accounts/{account_id}", f"/api/accounts/{ACCOUNTS[0]}"),
    ]:
        await check(view, route, address)


async def test_a_read_refused_for_its_token_or_host_is_as_documented(
    redis_server: RedisServer, prefix: str
) -> None:
    """A view with a token answers a read without it with a 401; one without a token answers a
    request addressed to a name it does not know with a 403, which no read route documented."""
    await project(redis_server.url, prefix, DATA)
    settings = Settings(redis_url=redis_server.url, app_id=prefix, kafka_bootstrap="127.0.0.1:1")
    routes = [(route, address) for route, address in reads(WITH_ALERTS[:1]) if route != "/healthz"]
    for view_settings, status, options in [
        (ViewSettings(kafka_check=False, token="s3cret"), 401, {}),
        (ViewSettings(kafka_check=False), 403, {"headers": {"Host": "rebound.example"}}),
    ]:
        client = TestClient(TestServer(create_app(settings, view_settings)))
        await client.start_server()
        try:
            for route, address in routes:
                assert await check(client, route, address, **options) == status, address
        finally:
            await client.close()
