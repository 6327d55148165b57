"""The worker's producer: idempotent, so a batch aiokafka sends again after a lost
acknowledgement (a broker restart) is not appended twice (no broker needed)."""

from __future__ import annotations

from pathlib import Path

from aiokafka import TopicPartition

from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream.app import create_app
from streamer.stream.faust_private import renew_producer_id


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
