"""A browser that opens a page of a view with a token, without it, gets an HTML page saying how to
open it (it got the API's raw JSON); a client that asks for JSON still gets JSON."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streamer.settings import Settings
from streamer.view.app import create_app
from streamer.view.settings import ViewSettings
from tests.fixtures import RedisServer

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def start(url: str, prefix: str) -> TestClient[Any, Any]:
    settings = Settings(redis_url=url, app_id=prefix, kafka_bootstrap="127.0.0.1:1")
    client = TestClient(TestServer(create_app(settings, ViewSettings(token="s3cret", kafka_check=False))))
    await client.start_server()
    return client


@pytest.mark.parametrize("path", ["/", "/accounts/acct-0001", "/accounts/<b>x</b>"])
async def test_a_page_without_the_token_is_an_html_page_saying_how_to_open_it(
    redis_server: RedisServer, prefix: str, path: str
) -> None:
    client = await start(redis_server.url, prefix)
    try:
        response = await client.get(path, headers=BROWSER)
        body = await response.text()
        assert response.status == 401 and response.content_type == "text/html", body[:300]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert "<script" not in body  # a page without a script: nothing to run, nothing to allow
        assert "this view needs its token: open " in body and "?access_token=&lt;token&gt;" in body
        assert "<b>x</b>" not in body  # the path is in the message as text
        wrong = await client.get(path, params={"access_token": "nope"}, headers=BROWSER)
        assert wrong.status == 401 and wrong.content_type == "text/html"
        assert "the bearer token is not valid" in await wrong.text()
    finally:
        await client.close()


async def test_the_api_and_a_client_that_asks_for_json_still_get_json(
    redis_server: RedisServer, prefix: str
) -> None:
    client = await start(redis_server.url, prefix)
    try:
        for path, headers in (
            ("/api/portfolio", BROWSER),  # the pages' fetches: an API answer is JSON whatever it accepts
            ("/", {"Accept": "application/json"}),
            ("/", {}),
            ("/accounts/acct-0001", {"Accept": "*/*"}),
        ):
            response = await client.get(path, headers=headers)
            assert response.status == 401 and response.content_type == "application/json", (path, headers)
            assert (await response.json())["error"]
    finally:
        await client.close()
