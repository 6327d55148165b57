"""`HttpSender` against a raw HTTP server on 127.0.0.1 answering what a hostile receiver might."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from streamer.notify.config import Destination
from streamer.notify.delivery import HttpSender, Outcome, Response

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    await reader.readexactly(length)


@asynccontextmanager
async def receiver(answer: Answer) -> AsyncIterator[str]:
    """A server answering every request with `answer`; yields its URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()


async def post(url: str, timeout_seconds: float = 5.0) -> Response:
    sender = HttpSender()
    destination = Destination(name="hook", url=url, timeout_seconds=timeout_seconds)  # type: ignore[arg-type]
    try:
        return await sender.post(destination, {"alerts": []}, "key-1")
    finally:
        await sender.close()


def raw(head: bytes) -> Answer:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        await writer.drain()

    return answer


async def test_a_429_whose_retry_after_is_a_superscript_digit_is_retried_with_plain_backoff() -> None:
    head = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: \xc2\xb2\r\nContent-Length: 0\r\n\r\n"
    async with receiver(raw(head)) as url:
        response = await post(url)
    assert (response.outcome, response.retry_after) == (Outcome.retry, None)


async def test_a_retry_after_that_is_not_utf8_is_ignored() -> None:
    head = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: \xff\xfe\r\nContent-Length: 0\r\n\r\n"
    async with receiver(raw(head)) as url:
        response = await post(url)
    assert (response.outcome, response.retry_after) == (Outcome.retry, None)


async def test_a_retry_after_date_reaches_the_worker_as_seconds() -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=120)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    head = f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {soon}\r\nContent-Length: 0\r\n\r\n"
    async with receiver(raw(head.encode())) as url:
        response = await post(url)
    assert response.outcome is Outcome.retry
    assert response.retry_after is not None and 110 <= response.retry_after <= 120
