"""The worker's producer: idempotent, so a batch aiokafka sends again after a lost
acknowledgement (a broker restart) is not appended twice (no broker needed)."""

from __future__ import annotations

from pathlib import Path

from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream.app import create_app


async def test_the_workers_producer_asks_the_broker_for_idempotence(tmp_path: Path) -> None:
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    producer = app.producer._new_producer()  # built, not started: no connection
    # aiokafka keeps its producer id and sequence numbers here, only when idempotence is on.
    try:
        assert producer._txn_manager is not None
        assert producer._sender._acks in (-1, "all")
    finally:
        await producer.stop()
