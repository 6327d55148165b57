"""Retry-After as a receiver may send it: whatever the text, a wait in seconds or none at all."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from streamer.notify.delivery import Outcome, classify

from .fakes import FakeSender, alert
from .test_delivery import drain, make


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


NOW = datetime(2026, 10, 21, 7, 27, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Wed, 21 Oct 2026 07:28:00 GMT", 30),  # IMF-fixdate, the form RFC 9110 senders use
        ("Wed, 21 Oct 2026 07:27:30 GMT", 0),
        ("Tue, 20 Oct 2026 07:28:00 GMT", 0),  # already past: no extra wait
        ("Thu, 22 Oct 2026 07:28:00 GMT", 86_400),  # a day at most
        ("Wed, 21 Oct 2026 09:28:00 +0200", 30),
        ("Wed, 21 Oct 2026 07:28:00 -0000", 30),  # no zone given: UTC
    ],
)
def test_a_retry_after_date_is_the_time_left_until_it(text: str, seconds: float) -> None:
    assert classify(503, text, NOW).retry_after == seconds


@pytest.mark.parametrize(
    "text",
    [
        "Wed, 32 Oct 2026 07:28:00 GMT",
        "Wed, 21 Foo 2026 07:28:00 GMT",
        "Wed, 21 Oct 2026 \u0660\u0667:28:00 GMT",
    ],
)
def test_a_retry_after_that_is_neither_seconds_nor_a_date_counts_as_absent(text: str) -> None:
    assert classify(429, text, NOW).retry_after is None


def test_without_a_time_given_a_date_is_measured_from_the_wall_clock() -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=100)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    wait = classify(429, soon).retry_after
    assert wait is not None and 90 <= wait <= 100


async def test_a_worker_waits_until_a_retry_after_date_clamped_to_max_seconds() -> None:
    class Dated(FakeSender):
        async def post(self, destination, payload, key):  # type: ignore[no-untyped-def]
            response = await super().post(destination, payload, key)
            if len(self.requests) == 1:
                return classify(429, "Wed, 21 Oct 2026 07:27:36 GMT", NOW)
            if len(self.requests) == 2:
                return classify(429, "Wed, 21 Oct 2026 08:00:00 GMT", NOW)
            return response

    worker, clock, _ = make(Dated())
    worker.submit(alert("a1"), lambda: None)
    await drain(worker)
    assert clock.sleeps == [6, 8]  # 6 s to the date (> 1 s backoff); then max_seconds


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
