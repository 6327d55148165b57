"""Re-staging a worker's partitions: once per new engine, and all again after Redis lost its data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis

from streamer.core.engine import PartitionEngine
from streamer.core.published import Published
from streamer.projection.codec import epoch_ms
from streamer.projection.redis_writer import RedisProjection, connect
from streamer.projection.resync import Resync
from tests.fixtures import RedisServer

from .scored import scored

META = {"currency": "USD", "gross_margin": "1.0", "cs_cost_per_month": ""}


@pytest.fixture
async def projection(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisProjection]:
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    yield writer
    await writer.close(timeout_s=1.0)


async def projected_ids(redis_server: RedisServer, projection: RedisProjection) -> set[str]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        return set(await client.zrange(projection.keys.index("score"), 0, -1))
    finally:
        await client.aclose()


async def test_new_engines_are_restaged_once_and_after_a_loss(
    redis_server: RedisServer, projection: RedisProjection
) -> None:
    engines: dict[int, PartitionEngine] = dict(enumerate(scored().run.engines))
    resync = Resync(projection, lambda: engines, asyncio.Lock())
    await resync.run()
    assert await projection.drain()
    members = {account for engine in engines.values() for account in engine.members}
    assert await projected_ids(redis_server, projection) == members
    assert resync.restaged == len(members)

    projection.lost = False
    await resync.run()  # nothing new: nothing re-staged
    assert resync.restaged == len(members)

    projection.lost = True  # as when a write found Redis empty
    await resync.run()
    assert resync.restaged == 2 * len(members)


async def test_restaged_snapshots_are_the_accounts_current_ones(
    redis_server: RedisServer, projection: RedisProjection
) -> None:
    engine = scored().run.engines[1]
    await Resync(projection, lambda: {1: engine}, asyncio.Lock()).run()
    assert await projection.drain()
    client = Redis.from_url(redis_server.url)
    try:
        for account_id in sorted(engine.members)[:5]:
            raw = await client.hget(projection.keys.account(account_id), "snapshot")
            assert orjson.loads(raw) == engine.snapshot(account_id)
        assert (
            await client.hget(projection.keys.partition(1), "stream_time")
            == str(engine.clock.stream_time).encode()
        )
    finally:
        await client.aclose()


async def test_an_engine_replaced_by_a_rebalance_is_skipped(projection: RedisProjection) -> None:
    engines: dict[int, PartitionEngine] = {0: scored().run.engines[0]}
    lock = asyncio.Lock()
    resync = Resync(projection, lambda: engines, lock)
    async with lock:
        task = asyncio.create_task(resync.run())
        await asyncio.sleep(0)
        engines.clear()  # revoked while the resync waited for the lock
    await task
    assert resync.restaged == 0
    assert not resync.synced


async def test_each_restaged_partition_stages_its_recent_alerts_again(
    redis_server: RedisServer, projection: RedisProjection
) -> None:
    """Alerts a killed worker staged and never wrote come back from the alerts topic."""
    engines: dict[int, PartitionEngine] = dict(enumerate(scored().run.engines))
    alerts = {p: [a for a in scored().alerts if a["account_id"] in engines[p].members] for p in engines}
    assert sum(map(len, alerts.values())) > 0
    asked: list[int] = []
    failing = {2}

    async def recent(partition: int) -> list[dict[str, object]]:
        asked.append(partition)
        if partition in failing:
            raise ConnectionError("broker away")
        return alerts[partition]

    resync = Resync(projection, lambda: engines, asyncio.Lock(), recent)
    await resync.run()
    assert await projection.drain()
    assert sorted(asked) == sorted(engines)
    assert 2 not in {p for p, e in engines.items() if e in resync.synced}  # read again next time
    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        projected = set(await client.zrange(projection.keys.alerts, 0, -1))
    finally:
        await client.aclose()
    assert projected == {a["alert_id"] for p in engines if p not in failing for a in alerts[p]}

    failing.clear()
    asked.clear()
    projection.lost = False  # the first write found Redis empty (fresh): not a loss here
    await resync.run()
    assert asked == [2]  # only the partition that failed
    assert resync.restaged_alerts == sum(map(len, alerts.values()))


async def test_a_resync_rebuilds_the_lists_history_point_and_owner_sets(
    redis_server: RedisServer, projection: RedisProjection
) -> None:
    engine = scored().run.engines[2]
    await Resync(projection, lambda: {2: engine}, asyncio.Lock()).run()
    assert await projection.drain()
    client = Redis.from_url(redis_server.url)
    try:
        for account_id in sorted(engine.members):
            current = engine.snapshot(account_id)
            (point,) = await client.zrange(projection.keys.history(account_id), 0, -1, withscores=True)
            assert point[1] == epoch_ms(current["as_of"])  # the current point; older ones are not kept
            assert await client.hexists(projection.keys.summaries, account_id)
            owner = (current.get("profile") or {}).get("owner")
            if owner:  # once snapshots carry a profile
                assert await client.sismember(projection.keys.owner(owner), account_id)
    finally:
        await client.aclose()


async def test_a_refill_after_a_loss_is_logged_with_what_it_restaged(
    projection: RedisProjection, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis found empty (or gone back to older data): the workers filled it again, silently."""
    engines: dict[int, PartitionEngine] = dict(enumerate(scored().run.engines))
    resync = Resync(projection, lambda: engines, asyncio.Lock())
    await resync.run()  # the assignment's re-staging: no loss, nothing said
    assert not [r for r in caplog.records if "re-staged whole" in r.getMessage()]
    projection.lost = True
    with caplog.at_level("INFO", logger="streamer.projection.resync"):
        await resync.run()
        await resync.run()  # said once
    [said] = [r for r in caplog.records if "re-staged whole" in r.getMessage()]
    members = sum(len(engine.members) for engine in engines.values())
    assert (said.accounts, said.partitions) == (members, len(engines))  # type: ignore[attr-defined]
    assert said.alerts == 0  # type: ignore[attr-defined]


async def test_a_published_snapshot_is_restaged_over_an_earlier_one_of_its_instant(
    redis_server: RedisServer, projection: RedisProjection
) -> None:
    """An event arriving late is scored at the account's latest instant, so one account can
    publish two snapshots with the same `as_of`. Redis restored from a save taken between them
    held the first; the re-staging after the loss, refused at that `as_of` as a re-derived
    snapshot is, left it there (and the portfolio totals, re-staged, disagreed with the row)."""
    engine = scored().run.engines[1]
    account_id = sorted(engine.members)[0]
    published = engine.snapshot(account_id)
    earlier = {**published, "score": published["score"] - 5.5}  # the same instant, before
    projection.snapshot(earlier)
    assert await projection.drain()
    projection.lost = True  # as when a write found Redis restored from an older save
    await Resync(projection, lambda: {1: engine}, asyncio.Lock()).run()
    assert await projection.drain()
    client = Redis.from_url(redis_server.url)
    try:
        raw = await client.hget(projection.keys.account(account_id), "snapshot")
        assert orjson.loads(raw) == published
    finally:
        await client.aclose()


def test_a_snapshot_evaluated_again_after_a_recovery_is_so_at_every_restaging() -> None:
    """The first re-staging after a recovery kept the snapshot it evaluated again, and the next
    one (Redis lost again) took that kept snapshot for a publication: written over the one
    published at its instant, with usage folded in since."""
    engine = scored().run.engines[1]
    engine.published, engine.evaluations = Published(), {}  # as an engine rebuilt from the tables
    account_id = sorted(engine.members)[0]
    first, again = engine.snapshot_again(account_id)
    assert again
    assert engine.snapshot_again(account_id) == (first, True)
