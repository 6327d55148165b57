"""`HttpSender` against a raw HTTP server on 127.0.0.1 answering what a hostile receiver might."""

from __future__ import annotations

import asyncio
import contextlib
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
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
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
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def post(url: str, timeout_seconds: float = 5.0) -> Response:
    sender = HttpSender()
    destination = Destination.model_validate({"name": "hook", "url": url, "timeout_seconds": timeout_seconds})
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


async def test_an_endless_body_is_not_read_past_a_small_cap_nor_waited_for() -> None:
    """A 200 announcing 8 GiB: the old code read it all into memory until the timeout, then
    retried. Now the reply is taken as sent after a few KiB and the connection dropped."""
    streamed = 0
    limit = 128 * 2**20  # the server sends this much, then holds the connection open
    dropped = asyncio.Event()

    async def endless(writer: asyncio.StreamWriter) -> None:
        nonlocal streamed
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8589934592\r\n\r\n")
        chunk = b"x" * 2**16
        try:
            while streamed < limit:
                writer.write(chunk)
                await writer.drain()
                streamed += len(chunk)
        except ConnectionError:
            dropped.set()
            raise
        await asyncio.sleep(60)

    async with receiver(endless) as url:
        response = await post(url, timeout_seconds=30)  # read to the end, this would be a retry
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):  # the server learns of the close at its next write
                await dropped.wait()
    assert response.outcome is Outcome.sent
    assert dropped.is_set(), "the connection was not closed"
    assert streamed < limit / 4  # what the kernel buffers took, not the body


async def test_a_2xx_whose_body_breaks_off_is_still_an_acknowledgement() -> None:
    """The status decides: retrying a delivery the receiver took would send it twice."""

    async def stalled(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
        await asyncio.sleep(60)

    async with receiver(stalled) as url:
        response = await post(url, timeout_seconds=0.5)
    assert response.outcome is Outcome.sent


async def test_a_receiver_that_never_answers_is_retried_saying_what_ran_out() -> None:
    """The detail read `TimeoutError: ` (its text is empty)."""

    async def silent(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    async with receiver(silent) as url:
        response = await post(url, timeout_seconds=0.5)
    assert (response.outcome, response.detail) == (Outcome.retry, "no answer within timeout_seconds (0.5 s)")


async def test_a_status_past_599_is_rejected_not_retried_for_ever() -> None:
    async with receiver(raw(b"HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n")) as url:
        response = await post(url)
    assert (response.outcome, response.detail) == (Outcome.rejected, "HTTP 999")
