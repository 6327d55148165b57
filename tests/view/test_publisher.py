"""The view's publisher with fake producers: a failed start is closed even when it fails near the
start's bound, and a failed write says whether the event may be in the topic all the same."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RequestTimedOutError

from streamer.stream import clients
from streamer.view import publisher
from streamer.view.errors import Unavailable
from streamer.view.publisher import KafkaPublisher


class FakeProducer:
    """Starts, sends and stops as the test says; records what it was asked."""

    made: list[FakeProducer] = []
    start_s = 0.0
    start_error: Exception | None = None
    send_s = 0.0
    send_error: Exception | None = None

    def __init__(self, **_options: Any) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        FakeProducer.made.append(self)

    async def start(self) -> None:
        await asyncio.sleep(self.start_s)
        if self.start_error is not None:
            raise self.start_error

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append(value)  # in the broker's log ...
        await asyncio.sleep(self.send_s)  # ... and the acknowledgement on its way
        if self.send_error is not None:
            raise self.send_error

    async def stop(self) -> None:
        await asyncio.sleep(0.1)  # closing its sender and connections takes a moment
        self.closed = True


class Access:
    bootstrap = "127.0.0.1:1"

    def client_options(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    class Producer(FakeProducer):
        pass

    async def abort(made: FakeProducer) -> None:
        made.closed = True

    FakeProducer.made = []
    monkeypatch.setattr(publisher, "AIOKafkaProducer", Producer)
    monkeypatch.setattr(publisher, "SEND_TIMEOUT_S", 0.2)
    monkeypatch.setattr(clients, "abort_producer", abort)
    return Producer


async def failure(producer: type[FakeProducer]) -> str:
    with pytest.raises(Unavailable) as raised:
        await KafkaPublisher(Access())("topic", b"acme", b"event")  # type: ignore[arg-type]
    return raised.value.message


async def test_a_start_that_fails_near_its_bound_is_still_closed(producer: type[FakeProducer]) -> None:
    """The start's bound once enclosed the clean-up too: a start failing just before it had its
    stop cancelled, and the producer's sender and connections leaked, one per write attempt."""
    producer.start_s, producer.start_error = 0.15, KafkaConnectionError("refused")
    message = await failure(producer)
    assert "could not be reached" in message and "nothing was published" in message
    assert [made.closed for made in FakeProducer.made] == [True]


async def test_a_start_that_never_answers_is_closed_and_nothing_was_published(
    producer: type[FakeProducer],
) -> None:
    producer.start_s = 5.0
    assert "nothing was published" in await failure(producer)
    assert [made.closed for made in FakeProducer.made] == [True]


async def test_an_acknowledgement_that_does_not_come_says_the_event_may_be_published(
    producer: type[FakeProducer],
) -> None:
    producer.send_s = 5.0
    message = await failure(producer)
    assert FakeProducer.made[0].sent == [b"event"]
    assert "may have been published" in message and "nothing was published" not in message


@pytest.mark.parametrize(
    ("error", "published"),
    [
        (RequestTimedOutError(), "may have been published"),  # appended, acknowledged too late
        (MessageSizeTooLargeError(), "nothing was published"),  # refused
    ],
)
async def test_a_broker_error_says_whether_the_event_may_be_in_the_topic(
    producer: type[FakeProducer], error: Exception, published: str
) -> None:
    producer.send_error = error
    assert published in await failure(producer)
    assert FakeProducer.made[0].closed  # the next write starts a new producer
