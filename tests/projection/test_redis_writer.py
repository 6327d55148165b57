"""The Redis projection against a real redis-server: idempotent, never back in time, indexes kept
consistent, coalesced, and catching up after an outage without ever stopping the worker."""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from streamer.core.clock import iso
from streamer.core.snapshot import point_figures
from streamer.projection import history, redis_writer
from streamer.projection.codec import decode_sums
from streamer.projection.keys import LAYOUT, Keys
from streamer.projection.redis_writer import (
    KEEP_ACCOUNT_ALERTS,
    KEEP_ALERTS,
    RedisProjection,
    connect,
)
from tests.core.events import at, started, usage
from tests.core.harness import Feed
from tests.fixtures import RedisServer, wait_until_async

from .scored import scored

META = {"currency": "USD", "gross_margin": "1.0", "cs_cost_per_month": ""}


def completes_without_suspending(step: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine one step: it must finish without ever yielding to the event loop (so it
    cannot be waiting on Redis, however slow or absent Redis is)."""
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    pytest.fail("the coroutine suspended: it waited on something")


@pytest.fixture
async def projection(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisProjection]:
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    yield writer
    await writer.close(timeout_s=1.0)


def snapshot(account: str = "acct-1", as_of: str = "2024-03-01T00:00:00Z", **changes: Any) -> dict[str, Any]:
    base = copy.deepcopy(next(iter(scored().last.values())))
    base.update(account_id=account, as_of=as_of, **changes)
    return base


async def stored(client: Redis, keys: Keys, account: str) -> dict[str, Any] | None:
    raw = await client.hget(keys.account(account), "snapshot")
    return None if raw is None else dict(orjson.loads(raw))


async def test_snapshot_is_written_with_its_indexes(projection: RedisProjection, client: Redis) -> None:
    keys = projection.keys
    record = snapshot(band="red", score=12.5, mrr="250.00")
    record["metrics"]["renewal_at"] = "2024-04-15T00:00:00Z"
    projection.snapshot(record)
    assert await projection.drain()
    assert await stored(client, keys, "acct-1") == record
    assert await client.zscore(keys.index("score"), "acct-1") == 12.5
    assert await client.zscore(keys.index("score", "red"), "acct-1") == 12.5
    assert await client.zscore(keys.index("mrr", "red"), "acct-1") == 250.0
    assert await client.zscore(keys.index("renewal"), "acct-1") == 1713139200000
    assert await client.zscore(keys.risk, "acct-1") == 250.0
    row = orjson.loads(await client.hget(keys.summaries, "acct-1"))
    assert row["band"] == "red" and row["mrr"] == "250.00"
    assert await client.hget(keys.meta, "currency") == "USD"


async def test_band_change_moves_the_account_between_band_indexes(
    projection: RedisProjection, client: Redis
) -> None:
    keys = projection.keys
    projection.snapshot(snapshot(as_of="2024-03-01T00:00:00Z", band="red", score=20.0, mrr="100.00"))
    await projection.drain()
    projection.snapshot(snapshot(as_of="2024-03-02T00:00:00Z", band="green", score=80.0, mrr="100.00"))
    await projection.drain()
    assert await client.zscore(keys.index("score", "red"), "acct-1") is None
    assert await client.zscore(keys.index("mrr", "red"), "acct-1") is None
    assert await client.zscore(keys.index("score", "green"), "acct-1") == 80.0
    assert await client.zscore(keys.risk, "acct-1") is None  # green is not at risk


async def test_churn_risk_index_follows_the_snapshot_and_its_band(
    projection: RedisProjection, client: Redis
) -> None:
    keys = projection.keys
    projection.snapshot(snapshot(as_of="2024-03-01T00:00:00Z", band="red", score=20.0, churn_risk_60d=0.4125))
    await projection.drain()
    assert await client.zscore(keys.index("churn_risk"), "acct-1") == 0.4125
    assert await client.zscore(keys.index("churn_risk", "red"), "acct-1") == 0.4125
    projection.snapshot(snapshot(as_of="2024-03-02T00:00:00Z", band="yellow", score=50.0, churn_risk_60d=0.2))
    await projection.drain()
    assert await client.zscore(keys.index("churn_risk", "red"), "acct-1") is None
    assert await client.zscore(keys.index("churn_risk", "yellow"), "acct-1") == 0.2
    # churned (MRR 0): no churn_risk_60d, so it leaves the index; its other indexes stay
    projection.snapshot(
        snapshot(as_of="2024-03-03T00:00:00Z", band="red", score=5.0, mrr="0", churn_risk_60d=None)
    )
    await projection.drain()
    for band in (None, "red", "yellow"):
        assert await client.zscore(keys.index("churn_risk", band), "acct-1") is None, band
    assert await client.zscore(keys.index("score", "red"), "acct-1") == 5.0
    assert await client.zscore(keys.index("mrr"), "acct-1") == 0.0


async def test_an_older_snapshot_never_overwrites_a_newer_one(
    projection: RedisProjection, client: Redis
) -> None:
    newer = snapshot(as_of="2024-03-02T00:00:00Z", score=70.0, band="green")
    projection.snapshot(newer)
    await projection.drain()
    projection.snapshot(snapshot(as_of="2024-03-01T00:00:00Z", score=10.0, band="red"))  # a replay
    await projection.drain()
    assert await stored(client, projection.keys, "acct-1") == newer
    assert await client.zscore(projection.keys.index("score"), "acct-1") == 70.0
    assert await client.zscore(projection.keys.index("score", "red"), "acct-1") is None
    same_instant = snapshot(as_of="2024-03-02T00:00:00Z", score=71.0, band="green")
    projection.snapshot(same_instant)  # same event time, a later batch: replaces
    await projection.drain()
    assert await stored(client, projection.keys, "acct-1") == same_instant


async def test_a_re_derived_snapshot_never_replaces_the_one_published_at_its_instant(
    projection: RedisProjection, client: Redis
) -> None:
    """After a restart the worker re-stages every account's snapshot, evaluated again at its last
    scoring instant on state that may hold usage folded in since: it replaced the published row
    and history point of the same `as_of` (the view then differed from offline)."""
    published = snapshot(as_of="2024-03-02T00:00:00Z", score=70.0, band="green")
    projection.snapshot(published)
    await projection.drain()
    points = await client.zrange(projection.keys.history("acct-1"), 0, -1, withscores=True)
    projection.restage(snapshot(as_of="2024-03-02T00:00:00Z", score=70.4, band="green"))
    await projection.drain()
    assert await stored(client, projection.keys, "acct-1") == published
    assert await client.zscore(projection.keys.index("score"), "acct-1") == 70.0
    assert await client.zrange(projection.keys.history("acct-1"), 0, -1, withscores=True) == points
    later = snapshot(as_of="2024-03-03T00:00:00Z", score=65.0, band="yellow")
    projection.restage(later)  # newer than what Redis holds (a killed worker's, never written)
    fresh = snapshot(account="acct-2", as_of="2024-03-02T00:00:00Z", score=40.0, band="red")
    projection.restage(fresh)  # Redis holds nothing (it restarted empty)
    await projection.drain()
    assert await stored(client, projection.keys, "acct-1") == later
    assert await stored(client, projection.keys, "acct-2") == fresh


async def test_after_an_upgrade_of_the_layout_a_re_derived_snapshot_rewrites_the_account(
    projection: RedisProjection, client: Redis
) -> None:
    """Re-staging is how an index added by an upgrade fills at once: a stored snapshot written in
    another layout (here: before layouts were recorded) is rewritten at its own instant."""
    projection.snapshot(snapshot(as_of="2024-03-02T00:00:00Z", score=70.0, band="green"))
    await projection.drain()
    await client.hdel(projection.keys.account("acct-1"), "layout")  # as an older worker wrote it
    upgraded = snapshot(as_of="2024-03-02T00:00:00Z", score=70.4, band="green")
    projection.restage(upgraded)
    await projection.drain()
    assert await stored(client, projection.keys, "acct-1") == upgraded
    assert await client.hget(projection.keys.account("acct-1"), "layout") == str(LAYOUT)


async def content(client: Redis, key: str) -> Any:
    kind = await client.type(key)
    if kind == "hash":
        return await client.hgetall(key)
    if kind == "zset":
        return await client.zrange(key, 0, -1, withscores=True)
    if kind == "set":
        return await client.smembers(key)
    return await client.get(key)


async def test_writing_twice_changes_nothing(projection: RedisProjection, client: Redis) -> None:
    data = scored()
    for record in data.snapshots:
        projection.snapshot(record)
    for alert in data.alerts:
        projection.alert(alert)
    await projection.drain()
    bookkeeping = projection.keys.written(projection.writer_id)  # counts the writes, by design
    keys = [key async for key in client.scan_iter(f"{projection.keys.prefix}:*") if key != bookkeeping]
    before = {key: await content(client, key) for key in keys}
    for record in data.snapshots:
        projection.snapshot(record)
    for alert in data.alerts:
        projection.alert(alert)
    await projection.drain()
    after = {key: await content(client, key) for key in before}
    assert after == before


async def test_partition_sums_never_go_back_in_stream_time(
    projection: RedisProjection, client: Redis
) -> None:
    engine = scored().run.engines[0]
    sums, totals = engine.periods.sums, engine.totals.sums
    projection.partition(0, sums, totals, 2000)
    await projection.drain()
    projection.partition(0, type(sums)(), [0] * len(totals), 1000)
    await projection.drain()
    stored_sums = await client.hget(projection.keys.partition(0), "sums")
    assert decode_sums(stored_sums) == sums
    assert orjson.loads(await client.hget(projection.keys.partition(0), "totals")) == totals
    assert await client.smembers(projection.keys.partitions) == {"0"}


async def test_alerts_are_kept_newest_first_and_trimmed(projection: RedisProjection, client: Redis) -> None:
    keys = projection.keys
    template = scored().alerts[0]
    for index in range(KEEP_ACCOUNT_ALERTS + 5):
        alert = {**template, "alert_id": f"a{index:03d}", "account_id": "acct-1"}
        alert["raised_at"] = f"2024-03-01T00:{index:02d}:00Z"
        projection.alert(alert)
    for index in range(KEEP_ALERTS + 3):
        alert = {**template, "alert_id": f"b{index:04d}", "account_id": f"other-{index}"}
        alert["raised_at"] = f"2024-04-{1 + index // 1440:02d}T{index // 60 % 24:02d}:{index % 60:02d}:00Z"
        projection.alert(alert)
    await projection.drain()
    recent = await client.zrevrange(keys.alerts, 0, -1)
    assert len(recent) == KEEP_ALERTS and recent[0] == f"b{KEEP_ALERTS + 2:04d}"
    mine = await client.zrevrange(keys.account_alerts("acct-1"), 0, -1)
    assert mine == [f"a{index:03d}" for index in reversed(range(5, KEEP_ACCOUNT_ALERTS + 5))]
    # An alert's data goes once it is in neither set: a004 (trimmed from both), not b0000 (still
    # among its account's newest) nor a010.
    assert await client.hexists(keys.alert_data, "a004") is False
    assert await client.hexists(keys.alert_data, "a010") is True
    assert await client.hexists(keys.alert_data, "b0000") is True
    assert await client.hlen(keys.alert_data) == KEEP_ALERTS + 3 + KEEP_ACCOUNT_ALERTS


async def test_worker_stats_expire(projection: RedisProjection, client: Redis) -> None:
    projection.worker("w-1", {"processed": 5.0, "lag": 2.0})
    await projection.drain()
    assert orjson.loads(await client.get(projection.keys.worker("w-1"))) == {"processed": 5.0, "lag": 2.0}
    assert 0 < await client.ttl(projection.keys.worker("w-1")) <= 30
    assert await client.zscore(projection.keys.workers, "w-1") == pytest.approx(time.time(), abs=5)


async def test_flush_coalesces_and_never_waits_for_redis(redis_server: RedisServer, prefix: str) -> None:
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=60.0)
    try:
        writer.snapshot(snapshot(as_of="2024-03-01T00:00:00Z"))
        await writer.flush()  # starts the first write in the background ...
        assert writer.writes == 0  # ... and returns without waiting for Redis
        await wait_until_async("the first write", lambda: writer.writes == 1)
        for day in range(2, 9):
            writer.snapshot(snapshot(as_of=f"2024-03-0{day}T00:00:00Z"))
            await writer.flush()  # not due: staged and coalesced
        assert len(writer.staged.snapshots) == 1
        assert orjson.loads(writer.staged.snapshots["acct-1"][1])["as_of"] == "2024-03-08T00:00:00Z"
        assert await writer.drain()
        assert writer.writes == 2 and writer.written == 2
    finally:
        await writer.close()


async def test_lost_data_is_noticed(projection: RedisProjection, client: Redis) -> None:
    projection.snapshot(snapshot())
    await projection.drain()
    assert projection.lost  # the first write finds no meta key: nothing was there
    projection.lost = False
    projection.snapshot(snapshot(as_of="2024-03-05T00:00:00Z"))
    await projection.drain()
    assert not projection.lost
    await client.delete(projection.keys.meta)  # as after a restart without persistence
    projection.snapshot(snapshot(as_of="2024-03-06T00:00:00Z"))
    await projection.drain()
    assert projection.lost


async def test_every_worker_notices_that_the_data_was_lost_not_only_the_first_to_write(
    redis_server: RedisServer, prefix: str, client: Redis
) -> None:
    """The first write after a loss recreated the `meta` key; the other workers' next writes found
    it and took the data for there: their quiet accounts, partition sums and alerts stayed out of
    the view until the next rebalance."""
    writers = [RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0) for _ in range(3)]
    try:
        for number, writer in enumerate(writers):
            writer.snapshot(snapshot(f"acct-{number}"))
            assert await writer.drain()
        assert [writer.lost for writer in writers] == [True, False, False]  # the first found nothing
        for writer in writers:
            writer.lost = False
            writer.worker("w", {"lag": 0.0})
            assert await writer.drain()
        assert not any(writer.lost for writer in writers)  # nothing lost: nobody re-stages
        await client.delete(*[key async for key in client.scan_iter(f"{prefix}:*")])  # Redis came back empty
        for writer in writers:
            writer.worker("w", {"lag": 0.0})
            assert await writer.drain()
        assert [writer.lost for writer in writers] == [True, True, True]
    finally:
        for writer in writers:
            await writer.close(timeout_s=1.0)


@dataclass
class OwnRedis:
    """A redis-server of the test's own (stopped, restarted or filled up by it), a writer with
    short backoffs, and a client."""

    server: RedisServer
    writer: RedisProjection
    client: Redis


@pytest.fixture
async def own(tmp_path: Any, prefix: str) -> AsyncIterator[OwnRedis]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    writer = RedisProjection(
        connect(server.url), prefix, META, min_interval_s=0.0, first_backoff_s=0.05, max_backoff_s=0.2
    )
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        yield OwnRedis(server, writer, client)
    finally:
        await client.aclose()
        await writer.close(timeout_s=0.5)
        server.stop()


async def test_redis_down_keeps_staging_and_catches_up(own: OwnRedis) -> None:
    server, writer, client = own.server, own.writer, own.client
    writer.snapshot(snapshot("acct-1", "2024-03-01T00:00:00Z"))
    assert await writer.drain()
    server.stop()
    for day in range(2, 6):
        writer.snapshot(snapshot("acct-1", f"2024-03-0{day}T00:00:00Z"))
        writer.snapshot(snapshot("acct-2", f"2024-03-0{day}T00:00:00Z"))
        completes_without_suspending(writer.flush())  # never raises, never blocks
        await asyncio.sleep(0.1)
    await wait_until_async("a failed write", lambda: writer.failures >= 1)
    assert writer.failures >= 1 and writer.last_error
    assert set(writer.staged.snapshots) == {"acct-1", "acct-2"}
    assert orjson.loads(writer.staged.snapshots["acct-1"][1])["as_of"] == "2024-03-05T00:00:00Z"
    server.start()  # empty: no persistence
    assert await writer.drain(timeout_s=5.0)
    assert writer.failing == 0 and writer.lost
    for account in ("acct-1", "acct-2"):
        record = await stored(client, writer.keys, account)
        assert record is not None and record["as_of"] == "2024-03-05T00:00:00Z"


async def test_hour_finals_are_staged_as_figures_and_formatted_when_a_write_fails(own: OwnRedis) -> None:
    """An hour final is staged as its figures and formatted only if it is still kept when written;
    staged through an outage, each would hold 15 objects for as long as it lasts: a failed write
    formats them."""
    server, writer, client = own.server, own.writer, own.client
    feed = Feed()
    feed(started("acct-1", at(0), "100"), usage("acct-1", at(1)))
    earlier, later = feed.evaluate("acct-1", at(2)), feed.evaluate("acct-1", at(2, 1))
    server.stop()
    writer.point("acct-1", point_figures(earlier))
    writer.snapshot(snapshot("acct-1", iso(later.now)))
    assert isinstance(writer.staged.points["acct-1"][earlier.now][1], tuple)
    completes_without_suspending(writer.flush())
    await wait_until_async("a failed write", lambda: writer.failures >= 1)
    assert all(isinstance(point, bytes) for _, point in writer.staged.points["acct-1"].values())
    server.start()
    assert await writer.drain(timeout_s=5.0)
    raw = await client.zrangebyscore(writer.keys.history("acct-1"), earlier.now, earlier.now)
    assert raw == [history.point_of(earlier).decode()]


async def test_no_commands_are_built_while_redis_is_away(tmp_path: Any, prefix: str) -> None:
    """Every write to an absent Redis fails at its first round trip; what is staged (all the alerts
    raised meanwhile, in a worker) is turned into commands only once Redis answers, not again on
    every attempt."""
    built: list[int] = []

    class Counting(RedisProjection):
        def _commands(self, batch: Any) -> Any:
            built.append(len(batch))
            return super()._commands(batch)

    server = RedisServer(tmp_path / "redis")  # not started yet: nothing listens on its port
    writer = Counting(
        connect(server.url), prefix, META, min_interval_s=0.0, first_backoff_s=0.01, max_backoff_s=0.02
    )
    try:
        template = scored().alerts[0]
        for index in range(20):
            writer.alert({**template, "alert_id": f"a{index:03d}", "account_id": "acct-1"})
        writer.snapshot(snapshot())
        deadline = time.monotonic() + 30  # bounds a hang: each attempt fails at once
        while writer.failures < 3:
            assert time.monotonic() < deadline, writer.last_error
            await writer.flush()
            await asyncio.sleep(0.02)
        assert built == []
        server.start()
        assert await writer.drain(timeout_s=5.0)
        assert built == [21]
    finally:
        await writer.close(timeout_s=0.5)
        server.stop()


async def test_alerts_staged_while_redis_is_away_are_only_those_it_would_keep(
    tmp_path: Any, prefix: str
) -> None:
    """However long Redis is away, the alerts staged stay within twice what it keeps (here the
    newest 30 overall and 4 per account): the others are dropped and counted, and once it is
    back it holds the newest 30 and each account's newest 4, as without the outage. Raised at
    ten instants only, so which of those raised at the same instant it keeps goes by the ids as
    bytes ("a-10" before "a-9")."""
    server = RedisServer(tmp_path / "redis")  # not started yet: nothing listens on its port
    writer = RedisProjection(
        connect(server.url),
        prefix,
        META,
        min_interval_s=0.0,
        first_backoff_s=0.01,
        max_backoff_s=0.02,
        keep_alerts=30,
        keep_account_alerts=4,
    )
    template = scored().alerts[0]
    alerts = [
        {
            **template,
            "alert_id": f"a-{index}",
            "account_id": f"acct-{index % 5 if index % 4 == 0 else 0}",  # one busy account
            "raised_at": iso(1_709_251_200_000 + index % 10 * 1000),
        }
        for index in range(1000)
    ]
    random.Random(3).shuffle(alerts)
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        for index, alert in enumerate(alerts + alerts[:300]):  # the first 300 staged again
            writer.alert(alert)
            if index % 100 == 99:
                await writer.flush()
                await asyncio.sleep(0.03)
        await wait_until_async(
            "a failed write", lambda: writer.failures >= 1 and writer.pending == len(writer.staged)
        )
        assert len(writer.staged.alerts) <= 2 * (30 + 4 * 5)
        assert writer.pruned_alerts > 900
        server.start()
        assert await writer.drain(timeout_s=5.0)
        newest = sorted(alerts, key=lambda alert: (alert["raised_at"], alert["alert_id"]), reverse=True)
        kept = newest[:30]
        assert await client.zrevrange(writer.keys.alerts, 0, -1) == [alert["alert_id"] for alert in kept]
        for account in range(5):
            mine = [alert for alert in newest if alert["account_id"] == f"acct-{account}"][:4]
            stored_ids = await client.zrevrange(writer.keys.account_alerts(f"acct-{account}"), 0, -1)
            assert stored_ids == [alert["alert_id"] for alert in mine]
            kept += mine
        data = await client.hgetall(writer.keys.alert_data)
        assert data == {alert["alert_id"]: orjson.dumps(alert).decode() for alert in kept}
    finally:
        await client.aclose()
        await writer.close(timeout_s=0.5)
        server.stop()


async def test_a_full_redis_refuses_the_writes_which_wait_and_are_written_once_it_has_room(
    own: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """`maxmemory` reached with the default `noeviction`: Redis answers every write with an
    OutOfMemoryError. The writes stay staged (nothing is lost), the log says the store refused
    them (not that it is unreachable: it answered), and they are written once it has room."""
    writer, client = own.writer, own.client
    writer.snapshot(snapshot("acct-1", "2024-03-01T00:00:00Z"))
    assert await writer.drain()
    # Far below what it uses: full whatever its use does meanwhile (set to the use measured
    # just before, a drop of a few hundred bytes under a busy machine let a write through).
    await client.config_set("maxmemory", 1)
    writer.snapshot(snapshot("acct-1", "2024-03-02T00:00:00Z"))
    writer.snapshot(snapshot("acct-2", "2024-03-02T00:00:00Z"))
    await writer.flush()
    await wait_until_async(
        "Redis to refuse the writes", lambda: "OutOfMemoryError" in (writer.last_error or "")
    )
    assert set(writer.staged.snapshots) == {"acct-1", "acct-2"}
    assert not await writer.drain(timeout_s=0.5)  # refused again: still staged
    messages = [record.getMessage() for record in caplog.records]
    assert "projection store refused the writes; staging until it takes them" in messages
    assert "projection store unreachable; staging until it returns" not in messages
    await client.config_set("maxmemory", 0)
    assert await writer.drain(timeout_s=5.0)
    for account in ("acct-1", "acct-2"):
        record = await stored(client, writer.keys, account)
        assert record is not None and record["as_of"] == "2024-03-02T00:00:00Z"


async def test_a_key_of_another_type_skips_its_write_and_lets_the_others_through(
    own: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A string planted at one account's key (by hand, say): Redis answers its write WRONGTYPE
    for good. The whole batch was retried for ever, so no other account, heartbeat or stream
    time was written again until someone found the key. Its write is skipped with an error; the
    rest is written, and the account comes back once the key is deleted."""
    writer, client = own.writer, own.client
    await client.set(writer.keys.account("acct-1"), "planted")
    writer.snapshot(snapshot("acct-1", "2024-03-01T00:00:00Z"))
    writer.snapshot(snapshot("acct-2", "2024-03-01T00:00:00Z"))
    assert await writer.drain(timeout_s=5.0)
    record = await stored(client, writer.keys, "acct-2")
    assert record is not None and record["as_of"] == "2024-03-01T00:00:00Z"
    assert writer.skipped_writes == 1
    [error] = [r for r in caplog.records if "refuses for good" in r.getMessage()]
    assert error.key == writer.keys.account("acct-1")  # type: ignore[attr-defined]
    assert error.error.startswith("WRONGTYPE: it holds a string where the workers write a hash")  # type: ignore[attr-defined]
    await client.delete(writer.keys.account("acct-1"))
    writer.snapshot(snapshot("acct-1", "2024-03-02T00:00:00Z"))
    assert await writer.drain(timeout_s=5.0)
    record = await stored(client, writer.keys, "acct-1")
    assert record is not None and record["as_of"] == "2024-03-02T00:00:00Z"


async def test_a_large_write_is_built_a_pipeline_at_a_time(
    redis_server: RedisServer, prefix: str, client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a midnight a write holds a snapshot of every active account: its commands are made
    as each pipeline is sent, so the loop turns between them, not after building all of them."""
    monkeypatch.setattr(redis_writer, "COMMANDS_PER_PIPELINE", 2)
    sent = [0]  # pipelines Redis answered
    built: list[int] = []  # for each snapshot command: pipelines answered when it was made

    class Watched(RedisProjection):
        def _snapshot_command(self, *args: Any) -> Any:
            built.append(sent[0])
            return super()._snapshot_command(*args)

    writer = Watched(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    pipeline = writer.redis.pipeline

    def counted(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        async def answered(*args: Any, **kwargs: Any) -> Any:
            result = await execute(*args, **kwargs)
            sent[0] += 1
            return result

        pipe.execute = answered
        return pipe

    monkeypatch.setattr(writer.redis, "pipeline", counted)
    try:
        for number in range(5):
            writer.snapshot(snapshot(f"acct-{number}"))
        assert await writer.drain(timeout_s=5.0)
        assert built == [1, 1, 2, 2, 3]  # after the meta check, two per pipeline
        assert all([await stored(client, writer.keys, f"acct-{number}") for number in range(5)])
    finally:
        await writer.close(timeout_s=1.0)


async def test_a_write_that_fails_in_the_worker_is_not_called_an_outage(
    redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A defect while building the commands (here a KeyError) was logged as "projection store
    unreachable": an operator would look for a Redis outage that was never there."""

    class Broken(RedisProjection):
        def _commands(self, batch: Any) -> Any:
            raise KeyError("a field the writer expected")

    writer = Broken(connect(redis_server.url), prefix, META, min_interval_s=0.0, first_backoff_s=0.01)
    try:
        writer.snapshot(snapshot())
        with caplog.at_level("WARNING", logger=redis_writer.__name__):
            deadline = time.monotonic() + 30  # bounds a hang
            while writer.failures < 1:
                assert time.monotonic() < deadline, writer.last_error
                await writer.flush()
                await asyncio.sleep(0.01)
        messages = [record.getMessage() for record in caplog.records]
        assert any("failed in the worker, not in Redis" in message for message in messages), messages
        assert not any("unreachable" in message for message in messages)
        assert writer.staged  # kept for the next attempt: the worker never stops for the projection
    finally:
        await writer.close(timeout_s=0.5)
