"""`/openapi.json` names the server from the request's Host header: whatever a client sends
there, the answer is the document (never a 500 and an error traceback any client could fill the
log with), its server the origin the header names, or `/` when the header names none."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from streamer.view import handlers
from streamer.view.handlers import server_url


async def servers(headers: dict[str, str]) -> Any:
    response = await handlers.openapi(make_mocked_request("GET", "/openapi.json", headers))
    assert response.status == 200 and isinstance(response.body, bytes)
    return orjson.loads(response.body)["servers"]


@pytest.mark.parametrize(
    "host",
    [
        "x:99999",  # port out of range
        "x:-1",
        "x:65536",
        "x:0",  # no port to reach
        "x:",
        "a:b:c",  # port not a number
        "@",  # no host at all
        ":80",
        "",
        "\udcff",  # a raw 0xff byte, as aiohttp keeps an undecodable header byte
        "x..y",  # an empty label
        "ü.de",  # not ASCII (a browser sends the xn-- form)
        "a b",  # no URI host, but yarl would take them into the origin
        "x/y",
        "x?y",
        "x#y",
        "u:p@x",
        "<script>",
        "[zz]",  # brackets around no IPv6 address
        "[::1",
    ],
)
def test_a_host_header_that_names_no_origin_gets_the_relative_server(host: str) -> None:
    assert server_url("http", host) == "/"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("view.example.com", "http://view.example.com"),
        ("View.Example.COM:80", "http://view.example.com"),
        ("healthstream_view:8000", "http://healthstream_view:8000"),  # a compose service name
        ("[::1]:8000", "http://[::1]:8000"),
        ("localhost:65535", "http://localhost:65535"),
    ],
)
async def test_a_host_header_names_the_origin_served(host: str, url: str) -> None:
    assert server_url("http", host) == url
    assert await servers({"Host": host}) == [{"url": url}]


async def test_the_document_names_the_origin_or_else_the_relative_server() -> None:
    assert server_url("https", "view.example.com:443") == "https://view.example.com"
    assert await servers({"Host": "x:99999"}) == [{"url": "/"}]
    assert await servers({}) == [{"url": "/"}]  # HTTP/1.0 without a Host: no port to name
