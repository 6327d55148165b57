"""The worker's producer: idempotent, so a batch aiokafka sends again after a lost
acknowledgement (a broker restart) is not appended twice (no broker needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream.app import create_app
from streamer.stream.faust_private import drop_unsent, hold_produce_requests, renew_producer_id
from streamer.stream.membership import Fenced


async def test_the_workers_producer_asks_the_broker_for_idempotence(tmp_path: Path) -> None:
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    producer = app.producer._new_producer()  # built, not started: no connection
    # aiokafka keeps its producer id and sequence numbers here, only when idempotence is on.
    try:
        assert producer._txn_manager is not None
        assert producer._sender._acks in (-1, "all")
    finally:
        await producer.stop()


async def test_a_renewed_producer_asks_for_a_new_id_with_every_sequence_back_at_zero(tmp_path: Path) -> None:
    """After a batch the broker refused for good, the next ones of its partition would be refused
    as out of order for ever: the sink renews the producer id before it sends again."""
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    assert not renew_producer_id(app.producer)  # not started: nothing to renew
    producer = app.producer._producer = app.producer._new_producer()
    try:
        manager, health = producer._txn_manager, TopicPartition("cs.health", 0)
        manager.set_pid_and_epoch(7, 0)
        manager.increment_sequence_number(health, 5)  # a refused batch of 5 took 0-4
        assert renew_producer_id(app.producer)
        assert not manager.has_pid() and manager.sequence_number(health) == 0
        manager.set_pid_and_epoch(8, 0)  # the broker's answer to the sender's InitProducerId
        assert manager.has_pid() and manager.producer_id == 8
    finally:
        await producer.stop()


def drop(producer: object) -> int:
    return drop_unsent(producer, Fenced("records of a membership that ended in doubt"))


async def test_dropping_unsent_records_fails_them_and_the_sends_waiting_for_room(tmp_path: Path) -> None:
    """What a worker whose membership ended in doubt still holds unsent: a batch not drained yet,
    a send waiting for that batch to make room, a table record in faust's send buffer. Before,
    the fence failed them one produce request at a time while the group rebalanced, and what
    was still queued went out once the next generation's lease held."""
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    producer = app.producer._producer = app.producer._new_producer()
    try:
        accumulator, health = producer._message_accumulator, TopicPartition("cs.health", 0)
        large = b"x" * (accumulator._batch_size * 2 // 3)  # two do not fit in one batch
        queued = await accumulator.add_message(health, b"acme", large, timeout=5)
        waiting = asyncio.ensure_future(accumulator.add_message(health, b"acme", large, timeout=5))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # the batch is full: the send waits for it to be drained
        buffered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        app.producer.buffer.pending.put_nowait(buffered)

        assert drop(app.producer) == 2
        # The waiting send goes on as if the batch had been sent (an exception there ends faust's
        # send-buffer task), and its record waits in a new batch for the next drop.
        appended = await asyncio.wait_for(waiting, 5)  # bounds a hang only
        assert drop(app.producer) == 1
        for future in (queued, buffered, appended):
            with pytest.raises(Fenced):
                await asyncio.wait_for(future, 5)
        assert not accumulator._batches and app.producer.buffer.pending.empty()
        assert drop(app.producer) == 0  # nothing is left to drop
    finally:
        await producer.stop()


async def test_a_produce_request_held_at_the_fence_as_unsent_records_are_dropped_is_not_sent() -> None:
    """Its batches were drained before the drop: released once the next generation's lease held,
    they went out over the new owner's records."""
    client = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started: no connection
    sent: list[object] = []

    async def send(node_id: int, batches: object) -> None:
        sent.append(batches)

    client._sender._send_produce_req = send
    lease = asyncio.Event()

    async def held() -> None:
        await lease.wait()

    hold_produce_requests(client, held, writable=lambda: True)
    health = TopicPartition("cs.health", 0)
    accumulator = client._message_accumulator
    try:
        record = await accumulator.add_message(health, b"acme", b"old", timeout=5)
        batch = accumulator._pop_batch(health)
        request = asyncio.ensure_future(client._sender._send_produce_req(1, {health: batch}))
        await asyncio.sleep(0.01)
        assert drop(SimpleNamespace(buffer=SimpleNamespace(pending=asyncio.Queue()), _producer=client)) == 0
        lease.set()  # the next generation's lease holds
        await asyncio.wait_for(request, 5)
        assert not sent
        with pytest.raises(Fenced):
            await asyncio.wait_for(record, 5)  # bounds a hang only
    finally:
        await client.stop()


class Writer:
    """A connection's stream writer, as far as a write goes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


async def test_a_produce_request_is_not_written_once_the_membership_is_in_doubt() -> None:
    """`held()` returns before the request is built, encoded and written: a process stopped in
    between wrote it the moment it resumed, over the new owner's records (the stood-still
    test: 27 of 120 snapshots, twice in ten runs here). The write itself asks the lease again."""
    client = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started: no connection
    writer = Writer()
    conn = SimpleNamespace(_writer=writer)

    async def get_conn(*args: object, **kwargs: object) -> object:
        return conn

    client.client._get_conn = get_conn
    lease = [True]

    async def held() -> None:
        return None

    hold_produce_requests(client, held, writable=lambda: lease[0])
    try:
        assert await client.client._get_conn(1) is conn
        produce, metadata = (
            b"\x00\x00\x00\x0a" + b"\x00\x00" + b"rest",
            b"\x00\x00\x00\x0a" + b"\x00\x03" + b"rest",
        )
        conn._writer.write(produce)
        lease[0] = False  # the process stood still past its lease
        with pytest.raises(OSError, match="membership came into doubt"):
            conn._writer.write(produce)
        conn._writer.write(metadata)  # only produce requests wait for the lease
        assert writer.written == [produce, metadata]
        assert await client.client._get_conn(1) is conn  # wrapped once, however often asked
        with pytest.raises(OSError):
            conn._writer.write(produce)
    finally:
        await client.stop()
