"""`KafkaSink.flush`: outputs are taken when flushed and delivered after those flushed before."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamer.contract.dead_letter import dead_letter_record
from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream.app import create_app
from streamer.stream.sink import KafkaSink


@pytest.fixture
def sink(tmp_path: Path) -> KafkaSink:
    settings = Settings(app_id="hs-test", data_dir=tmp_path)
    return KafkaSink(create_app(settings, ScoreConfig(), store="memory://"), settings)


def snapshot(account: str, score: int) -> dict[str, object]:
    return {"account_id": account, "health_score": score}


async def test_a_later_flush_is_delivered_after_the_one_before_even_when_that_one_is_slow(
    sink: KafkaSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scorer hands a checkpoint's outputs over and goes on: the next batch's snapshot of the
    same account must not reach the compacted topic before the older one."""
    published: list[bytes] = []
    held: list[asyncio.Future[None]] = []  # the first record's acknowledgement, held back

    async def publish(topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        published.append(value)
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(published) == 1:
            held.append(acknowledged)
        else:
            acknowledged.set_result(None)
        return acknowledged

    monkeypatch.setattr(sink, "_publish", publish)
    sink.snapshot(snapshot("acme", 40))
    older = sink.flush()
    sink.snapshot(snapshot("acme", 70))  # queued after the flush: not part of it
    newer = sink.flush()
    for _ in range(50):
        await asyncio.sleep(0)
    assert published == [b'{"account_id":"acme","health_score":40}']  # the newer waits its turn
    assert not older.done() and not newer.done()
    held[0].set_result(None)  # the broker acknowledges the older one
    await asyncio.wait_for(newer, 5)
    assert older.done() and published[1] == b'{"account_id":"acme","health_score":70}'
    assert sink.flush() is newer  # nothing new: done when the last one is


async def test_a_flush_after_a_failed_one_fails_too_and_delivers_nothing(
    sink: KafkaSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries are retried until the broker has them; what fails for good (here: finding where
    the dead-letter topic ends) fails every later flush too, so nothing is delivered past it."""
    published: list[bytes] = []

    async def publish(topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        published.append(value)
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged

    async def unreachable(letters: object) -> None:
        raise ConnectionError("dead-letter topic unreachable")

    monkeypatch.setattr(sink, "_publish", publish)
    monkeypatch.setattr(sink, "_landed_since_now", unreachable)
    sink.dead_letter(dead_letter_record(b"{", topic="in", partition=0, offset=3, key=b"a", error="bad"))
    first = sink.flush()
    sink.snapshot(snapshot("acme", 70))
    second = sink.flush()
    for flushed in (first, second):
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(flushed, 5)
    assert published == []


async def test_outputs_given_up_at_the_fence_raise_fenced_and_leave_no_failure_unretrieved() -> None:
    """A rebalance while the membership is in doubt gives the outputs up: the delivery ends with
    `Fenced` (not sent again for ever), and every record already handed to the producer is
    awaited; before, asyncio logged 'Future exception was never retrieved' by the hundred."""
    import gc

    from streamer.stream.membership import Fenced
    from streamer.stream.sink import deliver_in_order

    loop = asyncio.get_running_loop()
    unretrieved: list[str] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(str(context.get("message"))))
    handed: list[asyncio.Future[None]] = []

    async def publish(topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        if handed:
            raise Fenced("outputs")
        handed.append(loop.create_future())
        loop.call_soon(handed[-1].set_exception, Fenced("produce requests"))
        return handed[-1]

    records = [("t", b"a", b"1"), ("t", b"b", b"2"), ("t", b"c", b"3")]
    with pytest.raises(Fenced):
        await deliver_in_order(records, publish, "alerts and snapshots")
    handed.clear()
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert not unretrieved


async def test_discarding_the_outputs_drops_what_the_producer_holds_unsent(sink: KafkaSink) -> None:
    """A rebalance while the membership is in doubt: the batches the producer has not put in a
    produce request yet are dropped with the sink's own queue (`faust_private.drop_unsent`)."""
    from aiokafka import TopicPartition

    from streamer.stream.membership import Fenced

    producer = sink.app.producer._producer = sink.app.producer._new_producer()  # not started
    try:
        record = await producer._message_accumulator.add_message(
            TopicPartition("cs.health", 0), b"acme", b"{}", timeout=5
        )
        await sink.discard()
        with pytest.raises(Fenced):
            await asyncio.wait_for(record, 5)  # bounds a hang: a record kept is never answered here
    finally:
        await producer.stop()
