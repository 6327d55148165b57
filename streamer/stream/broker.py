"""Is a Kafka broker answering? Wait for one a bounded time, or say in one line what to do."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

RETRY_PAUSE_S = 0.5


class BrokerUnavailable(Exception):
    """No broker answered in time; the message names the address and what to do."""


def unreachable(bootstrap: str, seconds: float, doing: str) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker answered at {bootstrap} within {seconds:g} s ({doing}); start it "
        "(`streamer local up`, or `docker compose up -d kafka`) or point HEALTHSTREAM_KAFKA_BOOTSTRAP "
        "(or --bootstrap) at a running one"
    )


@contextlib.contextmanager
def _client_logs_silenced() -> Iterator[None]:
    """aiokafka logs each refused connection as an error; while waiting, that is expected."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _answers(bootstrap: str, timeout_s: float) -> bool:
    timeout_ms = max(int(timeout_s * 1000), 1000)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        # never started: nothing to close
        with contextlib.suppress(KafkaError, OSError, TimeoutError, AttributeError):
            async with asyncio.timeout(5.0):
                await admin.close()


async def wait_for_broker(bootstrap: str, timeout_s: float, doing: str = "connecting") -> None:
    """Return once a broker at `bootstrap` answers; BrokerUnavailable after `timeout_s`."""
    started = time.monotonic()
    while True:
        remaining = timeout_s - (time.monotonic() - started)
        with _client_logs_silenced():
            answered = await _answers(bootstrap, max(min(remaining, 10.0), 0.5))
        if answered:
            return
        if time.monotonic() - started + RETRY_PAUSE_S >= timeout_s:
            raise unreachable(bootstrap, timeout_s, doing)
        await asyncio.sleep(RETRY_PAUSE_S)


def probe(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when a broker at `bootstrap` answers (for /healthz; call it from a thread, not a loop)."""
    with _client_logs_silenced():
        return asyncio.run(_answers(bootstrap, timeout))
