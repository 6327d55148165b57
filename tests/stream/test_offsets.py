"""`ConsumerOffsets`: its broker clients (no broker: stand-in clients)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer

from streamer.stream.offsets import ConsumerOffsets


class Client:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error, self.stopped = error, False

    async def stop(self) -> None:
        self.stopped = True
        if self.error is not None:
            raise self.error


async def test_close_stops_every_client_whatever_the_first_one_met(caplog: pytest.LogCaptureFixture) -> None:
    offsets = ConsumerOffsets(cast(Any, None), cast(Any, None))
    failing, other = Client(RuntimeError("broker away")), Client()
    offsets._clients = {
        "read_committed": cast(AIOKafkaConsumer, failing),
        "read_uncommitted": cast(AIOKafkaConsumer, other),
    }
    await offsets.close()  # never raises: `_list` closes the clients from its error path
    assert failing.stopped and other.stopped
    assert offsets._clients == {}
    assert "could not close an offsets client" in caplog.text
