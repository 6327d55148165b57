"""The bounded per-account history and the owner/segment indexes of the Redis projection, against a
real redis-server: a point per snapshot keyed by `as_of` (a re-delivery adds nothing), hourly for a
week and daily before, nothing older than 400 days, and what it costs in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from streamer.core.clock import DAY as DAY_MS
from streamer.core.clock import HOUR as HOUR_MS
from streamer.core.clock import iso
from streamer.projection import history
from streamer.projection.history import FINE_DAYS, KEEP_DAYS, MAX_POINTS
from streamer.projection.redis_reader import UNREADABLE
from streamer.projection.redis_writer import RedisProjection, connect
from streamer.projection.staging import Staged
from tests.fixtures import RedisServer

from .test_redis_writer import META, snapshot

START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
async def projection(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisProjection]:
    writer = RedisProjection(connect(redis_server.url), prefix, META, min_interval_s=0.0)
    yield writer
    await writer.close(timeout_s=1.0)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


def at(hours: float) -> str:
    return (START + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def points(client: Redis, projection: RedisProjection, account: str = "acct-1") -> list[history.Point]:
    raw = await client.zrange(projection.keys.history(account), 0, -1, withscores=True)
    return [history.decode(value, int(as_of)) for value, as_of in raw]


def test_a_point_round_trips_the_snapshot_facts_it_keeps() -> None:
    record = snapshot(as_of="2024-03-01T10:00:00Z", score=55.5, band="yellow", mrr="120.00")
    record["metrics"]["scheduled_cancellation_at"] = "2024-04-01T00:00:00Z"
    record["override"] = {"band": "red", "reason": "exec sponsor left", "author": "ann"}
    point = history.decode(history.point(record))
    assert (point.score, point.band, point.mrr, point.override_band) == (55.5, "yellow", "120.00", "red")
    assert iso(point.as_of) == "2024-03-01T10:00:00Z"
    assert iso(point.scheduled_cancellation_at or 0) == "2024-04-01T00:00:00Z"
    assert point.components == {name: record["components"][name]["score"] for name in history.COMPONENTS}
    assert history.decode(history.point(snapshot())).override_band is None  # no override field: None


def test_a_score_override_keeps_the_band_its_score_puts_the_account_in() -> None:
    """It asks for no band: it showed as no override in the history, the timeline and the CSV."""
    record = snapshot(score=12.5, band="red")
    record["override"] = {"band": None, "score": 12.5, "reason": "r", "author": "ann"}
    assert history.decode(history.point(record)).override_band == "red"


def line_with(**fields: str) -> bytes:
    """A point the workers write, with some of its `FIELDS` replaced."""
    values = history.point(snapshot(as_of="2024-03-01T10:00:00Z", mrr="120.00")).decode().split(",")
    for name, value in fields.items():
        values[history.FIELDS.index(name)] = value
    return ",".join(values).encode()


@pytest.mark.parametrize("mrr", ["0", "120.00", "0.5", "9223372036854.775807", "9223372036854.78"])
def test_an_mrr_an_account_can_have_is_read_as_written(mrr: str) -> None:
    assert history.decode(line_with(mrr=mrr)).mrr == mrr


@pytest.mark.parametrize(
    "mrr",
    [
        "1E+999990",  # took ~31 s to turn into micro-units, on the view's event loop
        "1E+3",
        "1e3",
        "-5.00",
        "+5",
        " 5",
        "5_0",
        "\u0665",  # an Arabic-Indic five: Decimal reads it
        "5.1234567",  # past micro-units
        "99999999999999",  # 14 digits before the point
        "9223372036854.79",  # a cent past what an account's MRR can reach
        ".5",
        "5.",
    ],
)
def test_an_mrr_that_is_no_plain_decimal_an_account_can_have_is_unreadable(mrr: str) -> None:
    with pytest.raises(UNREADABLE):
        history.decode(line_with(mrr=mrr))


@pytest.mark.parametrize(("name", "value"), [("score", "nan"), ("score", "inf"), ("adoption", "-inf")])
def test_a_figure_that_is_no_finite_number_is_unreadable(name: str, value: str) -> None:
    with pytest.raises(UNREADABLE):
        history.decode(line_with(**{name: value}))


async def test_a_redelivered_snapshot_adds_no_point(projection: RedisProjection, client: Redis) -> None:
    first, second = snapshot(as_of=at(0), score=60.0), snapshot(as_of=at(3), score=50.0)
    projection.snapshot(first)
    projection.snapshot(second)
    assert await projection.drain()
    before = await client.zrange(projection.keys.history("acct-1"), 0, -1, withscores=True)
    assert len(before) == 2
    for again in (first, second, first):  # at-least-once: the same snapshots again, even out of order
        projection.snapshot(again)
        assert await projection.drain()
    assert await client.zrange(projection.keys.history("acct-1"), 0, -1, withscores=True) == before


async def test_one_point_per_hour_the_latest_and_never_back_in_time(
    projection: RedisProjection, client: Redis
) -> None:
    for minute, score in ((5, 61.0), (40, 62.0), (20, 99.0)):  # the 20-minute one is older than 40
        projection.snapshot(snapshot(as_of=at(minute / 60), score=score))
        assert await projection.drain()
    assert [p.score for p in await points(client, projection)] == [62.0]
    # staged together between two writes: still each hour's latest, not only the newest snapshot
    for hour in range(1, 6):
        projection.snapshot(snapshot(as_of=at(hour), score=float(hour)))
        projection.snapshot(snapshot(as_of=at(hour + 0.5), score=float(hour) + 0.5))
    assert await projection.drain()
    assert [p.score for p in await points(client, projection)] == [62.0, 1.5, 2.5, 3.5, 4.5, 5.5]


async def test_hourly_for_a_week_daily_before_and_nothing_older_than_the_kept_days(
    projection: RedisProjection, client: Redis
) -> None:
    days = KEEP_DAYS + 30
    for hour in range(0, days * 24, 2):  # a snapshot every two hours for 430 days
        projection.snapshot(snapshot(as_of=at(hour), score=float(hour % 100)))
        if hour % 48 == 0:
            assert await projection.drain()
    assert await projection.drain()
    kept = await points(client, projection)
    newest = kept[-1].as_of
    assert newest == history.epoch_ms(at((days * 24) - 2))
    assert len(kept) <= MAX_POINTS
    assert kept[0].as_of >= newest - KEEP_DAYS * DAY_MS
    coarse = [p.as_of for p in kept if p.as_of < newest - FINE_DAYS * DAY_MS]
    fine = [p.as_of for p in kept if p.as_of >= newest - FINE_DAYS * DAY_MS]
    assert len({t // DAY_MS for t in coarse}) == len(coarse)  # one a day
    assert all(t % DAY_MS == 22 * HOUR_MS for t in coarse[:-2])  # the day's last (22:00)
    assert len(fine) == FINE_DAYS * 12 + 1  # every point of the fine window, both ends included
    assert len(coarse) >= KEEP_DAYS - FINE_DAYS - 1


async def test_the_memory_cost_of_a_full_history_is_bounded(
    projection: RedisProjection, client: Redis
) -> None:
    """Measured: prints MEMORY USAGE of one account's history at its bound (README: account page)."""
    for hour in range(0, (KEEP_DAYS + FINE_DAYS) * 24):
        record = snapshot(as_of=at(hour), score=float(hour % 97) + 0.3, mrr=f"{1000 + hour % 500}.00")
        projection.snapshot(record)
        if hour % 200 == 0:
            assert await projection.drain()
    assert await projection.drain()
    key = projection.keys.history("acct-1")
    count = await client.zcard(key)
    used = int(await client.memory_usage(key, samples=0) or 0)
    print(f"history: {count} points, {used} bytes, {used / count:.0f} bytes per point")
    assert MAX_POINTS - 8 <= count <= MAX_POINTS
    assert used < 80_000


async def test_days_of_points_staged_between_two_writes_go_out_as_the_history_keeps_them(
    projection: RedisProjection, client: Redis
) -> None:
    """A backfill stages days of hourly points between two writes, most of which the history keeps
    only as their day's last: they are thinned before they are sent (a script call per point cost
    the worker a tenth of its CPU), and Redis ends as if every point had been written."""
    hours = 10 * 24
    for hour in range(hours):
        projection.snapshot(snapshot("one-by-one", as_of=at(hour), score=float(hour % 90)))
        assert await projection.drain()
    calls = int((await client.info("commandstats"))["cmdstat_evalsha"]["calls"])
    for hour in range(hours):
        projection.snapshot(snapshot("at-once", as_of=at(hour), score=float(hour % 90)))
    assert await projection.drain()
    sent = int((await client.info("commandstats"))["cmdstat_evalsha"]["calls"]) - calls
    kept = await points(client, projection, "at-once")
    assert [(p.as_of, p.score) for p in kept] == [
        (p.as_of, p.score) for p in await points(client, projection, "one-by-one")
    ]
    assert sent == 1 + len(kept)  # the snapshot and one per point kept
    assert len(kept) == FINE_DAYS * 24 + 1 + (10 - FINE_DAYS)


def test_staged_points_are_bounded_while_redis_is_away() -> None:
    staged = Staged()
    start = history.epoch_ms(at(0))
    for hour in range(0, 900 * 24):
        staged.point("acct-1", start + hour * HOUR_MS, b"[]")
    assert len(staged.points["acct-1"]) <= MAX_POINTS + 1
    newest = max(as_of for as_of, _ in staged.points["acct-1"].values())
    assert newest == start + (900 * 24 - 1) * HOUR_MS
    assert min(as_of for as_of, _ in staged.points["acct-1"].values()) >= newest - KEEP_DAYS * DAY_MS


async def test_owner_and_segment_indexes_follow_the_profile(
    projection: RedisProjection, client: Redis
) -> None:
    keys = projection.keys
    projection.snapshot(
        snapshot("a-1", as_of=at(0), profile={"name": "Acme", "owner": "ann", "segment": "smb"})
    )
    projection.snapshot(
        snapshot("a-2", as_of=at(0), profile={"name": "Bolt", "owner": "ann", "segment": None})
    )
    projection.snapshot(snapshot("a-3", as_of=at(0), profile=None))  # no profile (yet)
    assert await projection.drain()
    assert await client.smembers(keys.owner("ann")) == {b"a-1", b"a-2"}
    assert await client.hgetall(keys.owners) == {b"ann": b"2"}
    assert await client.hgetall(keys.segments) == {b"smb": b"1"}
    projection.snapshot(
        snapshot("a-1", as_of=at(1), profile={"name": "Acme", "owner": "bo", "segment": "smb"})
    )
    projection.snapshot(
        snapshot("a-2", as_of=at(1), profile={"name": "Bolt", "owner": "ann", "segment": "mid"})
    )
    assert await projection.drain()
    projection.snapshot(snapshot("a-1", as_of=at(0), profile={"owner": "zed"}))  # older: changes nothing
    assert await projection.drain()
    assert await client.smembers(keys.owner("ann")) == {b"a-2"}
    assert await client.smembers(keys.owner("bo")) == {b"a-1"}
    assert await client.hgetall(keys.owners) == {b"ann": b"1", b"bo": b"1"}
    assert await client.hgetall(keys.segments) == {b"smb": b"1", b"mid": b"1"}
    row = await client.hget(keys.summaries, "a-1")
    assert row is not None and b'"name":"Acme"' in row and b'"owner":"bo"' in row


async def test_a_jump_of_many_days_still_leaves_one_point_per_day_behind(
    projection: RedisProjection, client: Redis
) -> None:
    for hour in range(48):  # two busy days, then the account goes quiet: weekly re-scores
        projection.snapshot(snapshot(as_of=at(hour), score=float(hour)))
    assert await projection.drain()
    projection.snapshot(snapshot(as_of=at(48 + 10 * 24), score=1.0))
    assert await projection.drain()
    assert [(iso(p.as_of), p.score) for p in await points(client, projection)] == [
        (at(23), 23.0),
        (at(47), 47.0),
        (at(48 + 10 * 24), 1.0),
    ]
