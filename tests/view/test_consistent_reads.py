"""A page of a list is one consistent cut of the projection, whatever the workers write while the
view reads it: its ids, their values and its total come from one step. Read one command at a
time, an alert trimmed between the read of the ids and the read of the bodies was counted
unreadable and logged as a value gone missing, and an account re-scored meanwhile came out of
its page's sort order."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from projection.scored import scored
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from streamer.core.clock import MINUTE, iso
from streamer.projection.codec import epoch_ms
from streamer.projection.keys import Keys
from streamer.projection.redis_reader import ProjectionReader
from streamer.projection.redis_writer import RedisProjection, connect
from streamer.view.queries import AccountQuery, AlertQuery
from streamer.view.service import ViewService
from tests.fixtures import RedisServer
from tests.view.test_http import META, project

KEEP = 20  # alerts kept, overall and per account
PAGE = 5

Write = Callable[[], Awaitable[None]]


def written_between(write: Write) -> type[Connection]:
    """A connection after each of whose answers `write` runs: as a worker may write between any
    two commands of the view's read."""

    class WrittenBetween(Connection):
        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            answer = await super().read_response(*args, **kwargs)
            await write()
            return answer

    return WrittenBetween


async def service_writing(url: str, prefix: str, write: Write) -> AsyncIterator[ViewService]:
    redis = Redis.from_url(url, connection_class=written_between(write))
    try:
        yield ViewService(ProjectionReader(redis, prefix))
    finally:
        await redis.aclose()


@pytest.fixture
async def alert_writer(redis_server: RedisServer, prefix: str) -> AsyncIterator[Write]:
    """`KEEP` alerts of one account in the projection, at the limits it keeps, and a write of one
    more (the oldest then trimmed, as a worker does)."""
    limits = {"keep_alerts": KEEP, "keep_account_alerts": KEEP}
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0, **limits)
    base = ALERT
    made = itertools.count()
    start = epoch_ms(base["raised_at"])

    async def write() -> None:
        n = next(made)
        writer.alert({**base, "alert_id": f"race-{n}", "raised_at": iso(start + n * MINUTE)})
        assert await writer.drain()

    for _ in range(KEEP):
        await write()
    yield write
    await writer.close()


ALERT = scored().alerts[-1]


@pytest.mark.parametrize(
    ("query", "total"),
    [
        (AlertQuery(limit=PAGE, offset=KEEP - PAGE), KEEP),
        (AlertQuery(limit=PAGE, offset=KEEP - PAGE, account_id=ALERT["account_id"]), KEEP),
        # every kept alert read for a filter (not in one step: it may be thousands): the one
        # trimmed meanwhile is left out of the list, which then holds one alert less
        (AlertQuery(limit=PAGE, offset=KEEP - PAGE, severities=(ALERT["severity"],)), KEEP - 1),
    ],
    ids=["page", "account", "filtered"],
)
async def test_an_alert_trimmed_while_its_page_is_read_is_neither_counted_nor_logged(
    redis_server: RedisServer,
    prefix: str,
    alert_writer: Write,
    query: AlertQuery,
    total: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`/api/alerts?offset=50&limit=10` at the keep limit answered 9 alerts and `unreadable: 1`,
    and logged "an entry listed has no value", for an alert trimmed during the read."""
    async for service in service_writing(redis_server.url, prefix, alert_writer):
        with caplog.at_level(logging.ERROR, "streamer.projection.redis_reader"):
            answer = await service.alerts(query)
        page = min(PAGE, total - query.offset)
        assert (answer["total"], len(answer["items"]), answer["unreadable"]) == (total, page, 0), answer
        assert caplog.records == []


@pytest.fixture
async def projected(redis_server: RedisServer, prefix: str) -> None:
    await project(redis_server.url, prefix, scored())


@pytest.fixture
async def rescorer(redis_server: RedisServer, prefix: str, projected: None) -> AsyncIterator[Write]:
    """A write that re-scores the account lowest in the score index to the top score, as a
    worker may at any moment (at a later instant each time)."""
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    index = Keys(prefix).index("score")
    later = itertools.count(1)

    async def write() -> None:
        ((lowest, _),) = await writer.redis.zrange(index, 0, 0, withscores=True)
        snapshot = scored().last[lowest.decode()]
        at = iso(epoch_ms(snapshot["as_of"]) + next(later) * MINUTE)
        writer.snapshot({**snapshot, "as_of": at, "score": 100.0})
        assert await writer.drain()

    yield write
    await writer.close()


@pytest.mark.parametrize(
    "query",
    [AccountQuery(sort="score", limit=10), AccountQuery(at_risk=True, sort="score", limit=10)],
    ids=["index", "at-risk"],
)
async def test_an_account_rescored_while_its_page_is_read_keeps_the_page_in_order(
    redis_server: RedisServer, prefix: str, rescorer: Write, query: AccountQuery
) -> None:
    """The ids came from the sorted set and the rows from a later read: an account re-scored
    in between showed its new score at its old place."""
    async for service in service_writing(redis_server.url, prefix, rescorer):
        for _ in range(3):
            answer = await service.accounts(query)
            scores = [row["score"] for row in answer["items"]]
            assert len(scores) == min(query.limit, answer["total"]) and scores == sorted(scores), scores
