"""A projection key damaged by hand (a value that is no number, a key of another type) costs only
the writes to that key: every other write goes through, heartbeats included, and one error names
the key and says what to do. One such value froze the whole projection: its batch was retried for
ever. And a Redis that comes back with older data than the workers wrote is filled again."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from streamer.projection import redis_writer, scripts
from streamer.projection.keys import Keys
from streamer.projection.redis_writer import RedisProjection, connect
from tests.fixtures import RedisServer

from .scored import scored
from .test_redis_writer import META, OwnRedis, own, snapshot, stored

__all__ = ["own"]  # the fixture, imported to be found


@pytest.fixture
async def projection(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisProjection]:
    writer = RedisProjection(
        connect(redis_server.url), prefix, META, min_interval_s=0.0, first_backoff_s=0.05, max_backoff_s=0.1
    )
    yield writer
    await writer.close(timeout_s=0.5)


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.getMessage().startswith("projection writes to a key Redis refuses")
    ]


async def write_everything(writer: RedisProjection, day: int, *accounts: str) -> bool:
    """Stage a snapshot of each account, a partition's stream time and a heartbeat; drain."""
    for account in accounts:
        writer.snapshot(snapshot(account, f"2024-03-{day:02d}T00:00:00Z", profile={"segment": "smb"}))
    engine = scored().run.engines[0]
    writer.partition(0, type(engine.periods.sums)(), [0] * len(engine.totals.sums), 1_709_251_200_000 + day)
    writer.worker("w1", {"lag": 0.0})
    return await writer.drain(timeout_s=3.0)


async def test_an_as_of_that_is_no_number_is_overwritten_and_holds_up_no_other_write(
    projection: RedisProjection, client: Redis
) -> None:
    """`HSET <prefix>:account:<id> as_of abc`: the snapshot script compared nil with a number,
    and the whole batch (every account, stream time and heartbeat) was retried for ever."""
    keys = projection.keys
    assert await write_everything(projection, 1, "acct-1", "acct-2")
    await client.hset(keys.account("acct-1"), "as_of", "abc")
    assert await write_everything(projection, 2, "acct-1", "acct-2")
    for account in ("acct-1", "acct-2"):
        record = await stored(client, keys, account)
        assert record is not None and record["as_of"] == "2024-03-02T00:00:00Z"
    assert await client.hget(keys.partition(0), "stream_time") == str(1_709_251_200_002)


async def test_a_stream_time_that_is_no_number_is_overwritten(
    projection: RedisProjection, client: Redis
) -> None:
    keys = projection.keys
    assert await write_everything(projection, 1)
    await client.hset(keys.partition(0), "stream_time", "abc")
    assert await write_everything(projection, 2)
    assert await client.hget(keys.partition(0), "stream_time") == str(1_709_251_200_002)


async def test_a_count_that_is_no_integer_is_set_again_from_its_set(
    projection: RedisProjection, client: Redis
) -> None:
    """`HSET <prefix>:segments smb abc`: HINCRBY refused, and the whole batch waited for ever."""
    keys = projection.keys
    assert await write_everything(projection, 1, "acct-1")
    await client.hset(keys.segments, "smb", "abc")
    assert await write_everything(projection, 2, "acct-2")
    assert await client.hget(keys.segments, "smb") == "2"
    assert await client.smembers(keys.segment("smb")) == {"acct-1", "acct-2"}


async def test_counts_stay_the_size_of_their_sets_when_an_account_hash_is_deleted(
    projection: RedisProjection, client: Redis
) -> None:
    """An account hash deleted (as the WRONGTYPE log advised) or evicted: its next snapshot found
    no owner or segment and counted the account again."""
    keys = projection.keys
    assert await write_everything(projection, 1, "acct-1", "acct-2")
    for day in (2, 3):
        await client.delete(keys.account("acct-1"))
        assert await write_everything(projection, day, "acct-1")
    assert await client.hget(keys.segments, "smb") == "2"
    projection.snapshot(snapshot("acct-1", "2024-03-04T00:00:00Z", profile={"segment": "mid"}))
    assert await projection.drain()
    assert await client.hgetall(keys.segments) == {"smb": "1", "mid": "1"}


async def test_a_meta_key_of_another_type_holds_up_no_other_write(
    projection: RedisProjection, client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A string at `<prefix>:meta`: the first round trip of every write failed, so no heartbeat,
    stream time or account was written until someone found the key."""
    keys = projection.keys
    assert await write_everything(projection, 1, "acct-1")
    await client.delete(keys.meta)
    await client.set(keys.meta, "planted")
    await client.delete(keys.worker("w1"))
    assert await write_everything(projection, 2, "acct-1")
    assert await client.get(keys.worker("w1")) is not None
    record = await stored(client, keys, "acct-1")
    assert record is not None and record["as_of"] == "2024-03-02T00:00:00Z"
    [error] = refusals(caplog)
    assert error.key == keys.meta  # type: ignore[attr-defined]
    assert "holds a string where the workers write a hash" in error.error  # type: ignore[attr-defined]


async def test_the_key_that_refuses_writes_is_named_with_what_to_do_once(
    projection: RedisProjection, client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The log named the keys of the refused writes sorted and cut to 20: the summaries hash, the
    21st of a snapshot's, fell off; and it advised to delete it, which drops every account's row."""
    keys = projection.keys
    await client.set(keys.summaries, "planted")
    assert await write_everything(projection, 1, "acct-1")
    assert await write_everything(projection, 2, "acct-1")
    [error] = refusals(caplog)  # once, not at every write
    assert error.key == keys.summaries  # type: ignore[attr-defined]
    assert "many accounts" in error.repair and f"'{keys.prefix}:'" in error.repair  # type: ignore[attr-defined]
    assert projection.skipped_writes == 2
    assert await client.get(keys.worker("w1")) is not None


async def test_a_set_the_script_names_itself_is_the_key_logged(
    projection: RedisProjection, client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The segment's set is no key a snapshot's write declares: the log never named it."""
    keys = projection.keys
    await client.set(keys.segment("smb"), "notaset")
    assert await write_everything(projection, 1, "acct-1")
    [error] = refusals(caplog)
    assert error.key == keys.segment("smb")  # type: ignore[attr-defined]
    assert "holds a string where the workers write a set" in error.error  # type: ignore[attr-defined]
    assert await stored(client, keys, "acct-1") is not None  # written before the set was met


async def test_an_error_a_retry_may_mend_still_retries_the_whole_write() -> None:
    """A full, loading or read-only Redis: the write waits for it, nothing is skipped."""
    assert redis_writer.retried(redis_writer.OutOfMemoryError("command not allowed"))
    assert redis_writer.retried(redis_writer.ResponseError("ERR Error running script: -OOM command not"))
    assert redis_writer.retried(redis_writer.ResponseError("MASTERDOWN Link with MASTER is down"))
    assert not redis_writer.retried(redis_writer.ResponseError("WRONGTYPE Operation against a key"))
    # a key built from an owner's name: "-BUSY" in it is no error code (retried for ever)
    named = "WRONGTYPE the key holds a string where the workers write a set: hs:owner:team-BUSY"
    assert scripts.NAMED_WRONGTYPE.fullmatch(named) and not redis_writer.retried(
        redis_writer.ResponseError(named)
    )
    assert not redis_writer.retried(redis_writer.ResponseError("hash value is not an integer"))


async def test_a_redis_back_with_older_data_is_filled_again(
    own: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarted from its last save (or a failover to a lagging replica) keeps its epoch:
    only a loss of everything was noticed, and what was written after the save stayed lost."""
    server, writer, client = own.server, own.writer, own.client
    assert await write_everything(writer, 1, "acct-1")
    writer.lost = False
    await client.save()
    assert await write_everything(writer, 2, "acct-1")
    assert not writer.lost
    server.stop()
    server.start()  # from the save: the day-2 writes are gone
    await client.connection_pool.disconnect()  # the test's own connection died with it
    record = await stored(client, writer.keys, "acct-1")
    assert record is not None and record["as_of"] == "2024-03-01T00:00:00Z"
    writer.worker("w1", {"lag": 0.0})
    assert await writer.drain(timeout_s=5.0)
    assert writer.lost
    assert any("holds older data than this worker wrote" in r.getMessage() for r in caplog.records)
    writer.lost = False
    assert await write_everything(writer, 3)
    assert not writer.lost  # once


def test_each_kind_of_key_gets_its_own_advice(prefix: str) -> None:
    """Deleting a key one account or partition writes loses nothing its next write does not
    bring back; deleting a key of many accounts' entries loses those of all the quiet ones."""
    keys = Keys(prefix)
    assert redis_writer.repair(keys, keys.account("a")).startswith("delete it: it is one account's alone")
    assert redis_writer.repair(keys, keys.history("a")).startswith("delete it: it is one account's alone")
    assert redis_writer.repair(keys, keys.partition(3)).startswith("delete it: the partition's")
    assert redis_writer.repair(keys, keys.meta).startswith("delete it: the next write")
    for shared in (keys.summaries, keys.index("score"), keys.owners, keys.owner("ann"), keys.alerts):
        assert "many accounts" in redis_writer.repair(keys, shared)
