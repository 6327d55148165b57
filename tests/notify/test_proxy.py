"""`HttpSender` honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as most HTTP clients do: a network
that reaches the internet only through a proxy delivered nothing (every request was retried)."""

from __future__ import annotations

import asyncio

import pytest

from streamer.notify.config import Destination
from streamer.notify.delivery import HttpSender, Outcome


async def test_a_request_goes_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_lines.append(head.split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    sender = HttpSender()
    try:
        destination = Destination(name="hook", url="http://hooks.example.invalid/x", timeout_seconds=5)
        response = await sender.post(destination, {"alerts": []}, "a1")
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()
    assert response.outcome is Outcome.sent, response.detail
    assert request_lines == [b"POST http://hooks.example.invalid/x HTTP/1.1"]
