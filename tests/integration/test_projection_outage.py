"""Alerts staged through a Redis outage, against the local stack's Redis: the worker stages only
the alerts Redis would keep (the newest overall and per account), and once Redis is back it holds
exactly the alerts, with the same JSON, that writing each alert as it came would have left.

The outage is a TCP proxy in front of the stack's Redis that the test cuts (connections are
closed and new ones dropped), so the writer meets a real unreachable store and retries with its
backoff, and restores. The same random alerts are written into one key prefix batch by batch
without an outage and into another through the outage; both prefixes must end up the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from streamer.core.clock import iso
from streamer.local.stack import StackInfo
from streamer.projection.keys import Keys
from streamer.projection.redis_writer import RedisProjection, connect

pytestmark = pytest.mark.integration

META = {"currency": "USD", "gross_margin": "1.0", "cs_cost_per_month": ""}
KEEP, KEEP_MINE, ACCOUNTS = 40, 5, 7  # small limits, so many more alerts than Redis keeps are fast
BASE_MS = 1_709_251_200_000


class CuttableProxy:
    """Forwards TCP connections to Redis until `cut()`; then drops them until `restore()`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.down = False
        self.listen_port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listen_port}/0"

    def cut(self) -> None:
        self.down = True
        for writer in list(self._open):
            writer.close()

    def restore(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}
            writer.close()
            up_writer.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()


@pytest.fixture
async def proxy(stack: StackInfo) -> AsyncIterator[CuttableProxy]:
    where = urlsplit(stack.redis_url)
    proxy = CuttableProxy(where.hostname or "127.0.0.1", where.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def client(stack: StackInfo) -> AsyncIterator[Redis]:
    redis = Redis.from_url(stack.redis_url)
    yield redis
    await redis.aclose()


def alerts(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """`count` alerts of `ACCOUNTS` accounts, most of one busy account (so the others' newest are
    not all among the newest overall), out of order, many raised at the same instant, with ids
    whose order as bytes is not their order ("r-10" < "r-9"); then some raised again, unchanged
    (as re-staged from the alerts topic), interleaved and as a tail after the last new alert."""
    raised: list[dict[str, Any]] = []
    for number in range(count):
        account = 0 if rng.random() < 0.6 else rng.randrange(ACCOUNTS)
        raised.append(
            {
                "alert_id": f"{rng.choice('pqr')}-{number}",
                "account_id": f"acct-{account}",
                "raised_at": iso(BASE_MS + rng.randrange(count // 100) * 1000 + rng.choice((0, 0, 250))),
                "rule": rng.choice(("score_drop", "payment_failed")),
                "severity": rng.choice(("high", "critical")),
                "number": number,
            }
        )
    for _ in range(count // 20):
        position = rng.randrange(len(raised))
        raised.insert(position, dict(rng.choice(raised[: position + 1])))
    return raised + [dict(alert) for alert in rng.sample(raised, count // 5)]


def writer(url: str, prefix: str) -> RedisProjection:
    return RedisProjection(
        connect(url),
        prefix,
        META,
        min_interval_s=0.0,
        first_backoff_s=0.001,
        max_backoff_s=0.005,
        keep_alerts=KEEP,
        keep_account_alerts=KEEP_MINE,
    )


async def stored_alerts(client: Redis, keys: Keys) -> dict[str, Any]:
    """Everything the projection keeps of alerts under `keys`' prefix."""
    mine = {}
    for number in range(ACCOUNTS):
        account = f"acct-{number}"
        mine[account] = await client.zrange(keys.account_alerts(account), 0, -1, withscores=True)
    return {
        "recent": await client.zrange(keys.alerts, 0, -1, withscores=True),
        "mine": mine,
        "data": await client.hgetall(keys.alert_data),
        "owners": await client.hgetall(keys.alert_owner),
    }


async def forget(client: Redis, prefix: str) -> None:
    async for key in client.scan_iter(f"{prefix}:*"):
        await client.delete(key)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_redis_holds_the_same_alerts_after_an_outage_as_without_one(
    stack: StackInfo, proxy: CuttableProxy, client: Redis, seed: int
) -> None:
    rng = random.Random(seed)
    raised = alerts(rng, 3000)
    before = rng.randrange(0, 300)  # written before the outage (they can only push others out)
    run = uuid.uuid4().hex[:8]
    direct = writer(stack.redis_url, f"test-outage-{run}-direct")
    outage = writer(proxy.url, f"test-outage-{run}-staged")
    try:
        # Without an outage: batch by batch, each written before the next is staged.
        position = 0
        while position < len(raised):
            size = rng.randrange(1, 60)
            for alert in raised[position : position + size]:
                direct.alert(alert)
            assert await direct.drain(timeout_s=10.0)
            position += size

        # Through the outage: the first alerts written, then Redis away while all the others are
        # staged (failed writes put back under the newer stagings), then one write of all of it.
        for alert in raised[:before]:
            outage.alert(alert)
        assert await outage.drain(timeout_s=10.0)
        written = outage.writes
        proxy.cut()
        largest = 0
        for number, alert in enumerate(raised[before:], start=1):
            outage.alert(alert)
            largest = max(largest, len(outage.staged.alerts))
            if number % 97 == 0:
                await outage.flush()
                await asyncio.sleep(0.01)
        deadline = time.monotonic() + 30  # bounds a hang; each attempt fails at once on the cut
        while outage.failures < 5:
            assert time.monotonic() < deadline, outage.last_error
            await outage.flush()
            await asyncio.sleep(0.01)
        assert outage.writes == written, outage.last_error
        assert outage.pruned_alerts > len(raised) // 2
        assert largest <= 2 * (KEEP + KEEP_MINE * ACCOUNTS)
        proxy.restore()
        assert await outage.drain(timeout_s=10.0)
        assert outage.writes == written + 1  # the staged alerts, in one write

        expected = await stored_alerts(client, direct.keys)
        assert len(expected["recent"]) == KEEP and len(expected["data"]) > KEEP
        assert all(len(mine) == KEEP_MINE for mine in expected["mine"].values())
        assert await stored_alerts(client, outage.keys) == expected
    finally:
        await direct.close(timeout_s=1.0)
        await outage.close(timeout_s=1.0)
        await forget(client, direct.keys.prefix)
        await forget(client, outage.keys.prefix)
