"""Retry-After as a receiver may send it: whatever the text, a wait in seconds or none at all."""

from __future__ import annotations

import asyncio

import pytest

from streamer.notify.delivery import Outcome, classify

from .fakes import FakeSender, alert
from .test_delivery import make


@pytest.mark.parametrize(
    "text",
    [
        "²",  # a Unicode digit: str.isdigit() says yes, float() says no
        "١٢",  # Arabic-Indic digits, which float() would take
        "1.5",
        "-3",
        "+3",
        "",
        "   ",
        "soon",
        "3 s",
        "\udcff",  # an undecodable byte as aiohttp hands it over
    ],
)
def test_a_retry_after_that_is_not_ascii_seconds_counts_as_absent(text: str) -> None:
    response = classify(429, text)
    assert (response.outcome, response.retry_after) == (Outcome.retry, None)


def test_retry_after_seconds_are_read_around_whitespace_and_bounded() -> None:
    assert classify(429, " 7\t").retry_after == 7
    assert classify(503, "0").retry_after == 0
    assert classify(429, "9" * 60).retry_after == 86_400  # a day at most (max_seconds clamps further)
    assert classify(429, "9" * 5000).retry_after is None  # not even parsed: no int() digit-limit error


async def test_a_worker_given_an_unreadable_retry_after_backs_off_as_usual() -> None:
    class Superscript(FakeSender):
        async def post(self, destination, payload, key):  # type: ignore[no-untyped-def]
            response = await super().post(destination, payload, key)
            return classify(429, "²") if len(self.requests) == 1 else response

    sender = Superscript()
    worker, clock, _ = make(sender)
    acks: list[str] = []
    worker.submit(alert("a1"), lambda: acks.append("a1"))
    task = asyncio.create_task(worker.run())
    for _ in range(1000):
        await asyncio.sleep(0)
        if not worker.pending:
            break
    assert not task.done(), "the destination's worker died"
    task.cancel()
    assert clock.sleeps == [1] and acks == ["a1"] and len(sender.requests) == 2
