"""Read-only access to the Redis projection, for the HTTP view (no writes, no Kafka)."""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from streamer.core.portfolio import PeriodSums
from streamer.core.totals import add_up
from streamer.projection import history
from streamer.projection.codec import decode_sums, epoch_ms
from streamer.projection.keys import Keys
from streamer.projection.memory import StoreMemory, read_memory
from streamer.wideints import narrow

log = logging.getLogger(__name__)

CHUNK = 1000  # ids per HMGET

# What reading a value stored in Redis raises when it holds something other than what the workers
# write (anyone who may write Redis may have put it there): `int(b"abc")`, `orjson.loads(b"x")`,
# a missing field, a decimal that is not one.
UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError)

Row = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PartitionData:
    """One partition's projected portfolio state."""

    partition: int
    stream_time: int
    sums: PeriodSums
    totals: list[int]


@dataclass(frozen=True, slots=True)
class Range:
    """A score range of a sorted set; None is unbounded."""

    low: float | None = None
    high: float | None = None

    @property
    def bounds(self) -> tuple[str, str]:
        return (
            "-inf" if self.low is None else repr(float(self.low)),
            "+inf" if self.high is None else repr(float(self.high)),
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _point_at(as_of: int, raw: bytes | str) -> history.Point:
    return history.decode(raw, as_of)


def _name_count(name: Any, count: Any) -> tuple[str, int]:
    """An owner's or segment's name and its number of accounts, as `names` reads them."""
    number = int(_text(count))
    if number < 0:
        raise ValueError(f"a count of accounts below 0 ({number})")
    return _text(name), number


NAME_BATCH = 1000  # owners or segments per HSCAN


@dataclass(frozen=True, slots=True)
class Names:
    """Some owners or segments with their number of accounts (`ProjectionReader.names`)."""

    counts: dict[str, int]  # by name
    total: int  # how many the projection holds
    unreadable: int  # entries read that could not be (left out of `counts`, logged)


def _largest(counts: dict[str, int], limit: int) -> dict[str, int]:
    """The `limit` names with the most accounts, ties by name."""
    return dict(heapq.nsmallest(limit, counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True, slots=True)
class Entries:
    """The values of some ids in one hash, in the order asked (an id without a value is left out):
    each decoded, or None where the hash holds a value the view cannot read (logged, naming it)."""

    values: list[Row | None]

    @property
    def rows(self) -> list[Row]:
        """The readable values."""
        return [row for row in self.values if row is not None]

    @property
    def unreadable(self) -> int:
        """How many values were left out of `rows` as unreadable."""
        return sum(row is None for row in self.values)


def _object(raw: bytes | str) -> Row:
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise TypeError(f"a JSON {type(value).__name__}, not an object")
    return value


def _expect(row: Row, name: str, *kinds: type) -> None:
    if not isinstance(row.get(name), kinds):
        raise TypeError(f"{name!r} is {type(row.get(name)).__name__}")


def summary_row(raw: bytes | str) -> Row:
    """A list row (`codec.summary`), its fields the view filters, sorts and exports on checked."""
    row = _object(raw)
    for name in ("account_id", "band", "lifecycle_stage", "mrr"):
        _expect(row, name, str)
    _expect(row, "score", int, float)
    _expect(row, "reasons", list)
    _expect(row, "override", dict, type(None))
    _expect(row, "renewal_at", str, type(None))
    if not Decimal(row["mrr"]).is_finite():
        raise ValueError(f"'mrr' is {row['mrr']!r}")
    if row["renewal_at"] is not None:
        epoch_ms(row["renewal_at"])
    return row


def alert_row(raw: bytes | str) -> Row:
    """An alert (`cs.alerts`' JSON), its fields the view filters and exports on checked."""
    row = _object(raw)
    for name in ("alert_id", "account_id", "raised_at"):
        _expect(row, name, str)
    _expect(row, "reasons", list)
    _expect(row, "profile", dict, type(None))
    return row


class Unreadable:
    """Logs each value the view cannot read, once per `REPEAT_S` per (key, field): a dashboard
    refreshing every few seconds logged the same value several times a refresh."""

    REPEAT_S = 300.0
    KEPT = 1000  # values remembered at most

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._logged: dict[tuple[str, str], float] = {}

    def decoded(
        self,
        key: str,
        field: str,
        raw: bytes | str,
        decode: Callable[[bytes | str], T],
        remove_with: str | None = None,
    ) -> T | None:
        """`decode(raw)`, or None (logged) when the value cannot be read; `remove_with`: the
        command that removes it (the hash field's HDEL by default)."""
        try:
            return decode(raw)
        except UNREADABLE as error:
            self._report(key, field, error, remove_with or f"HDEL {key} {field}")
            return None

    def _report(self, key: str, field: str, error: Exception, remove_with: str) -> None:
        now = self.clock()
        last = self._logged.get((key, field))
        if last is not None and now - last < self.REPEAT_S:
            return
        if len(self._logged) >= self.KEPT:
            self._logged.clear()
        self._logged[key, field] = now
        log.error(
            "the projection holds a value the view cannot read, left out of the answer; the "
            "workers never write such a value: remove it",
            extra={
                "key": key,
                "field": field,
                "error": f"{type(error).__name__}: {str(error)[:200]}",
                "remove_with": remove_with,
            },
        )


class ProjectionReader:
    """Queries over the keys the workers' `RedisProjection` writes under `prefix`."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.unreadable = Unreadable()

    async def ping(self) -> float:
        """Round trip to Redis in milliseconds (raises when unreachable)."""
        started = time.perf_counter()
        await self.redis.ping()
        return (time.perf_counter() - started) * 1000

    async def memory(self) -> StoreMemory | None:
        """Redis's memory limit, use and eviction policy (None: not to be had, see `read_memory`)."""
        return await read_memory(self.redis)

    async def meta(self) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.meta)
        return {_text(key): _text(value) for key, value in raw.items()}

    async def account(self, account_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.keys.account(account_id), "snapshot")
        return None if raw is None else dict(orjson.loads(raw))

    async def count(self) -> int:
        """Accounts in the projection."""
        return int(await self.redis.zcard(self.keys.index("score")))

    async def page(
        self, key: str, where: Range, offset: int, count: int, *, descending: bool
    ) -> tuple[list[str], int]:
        """Ids of one page of a sorted set within a score range, and how many are in the range."""
        low, high = where.bounds
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(key, low, high)
        if descending:
            pipe.zrevrangebyscore(key, high, low, start=offset, num=count)
        else:
            pipe.zrangebyscore(key, low, high, start=offset, num=count)
        total, ids = await pipe.execute()
        return [_text(member) for member in ids], int(total)

    async def ids(self, key: str, where: Range, *, descending: bool) -> list[str]:
        """All ids of a sorted set within a score range, in order."""
        low, high = where.bounds
        if descending:
            members = await self.redis.zrevrangebyscore(key, high, low)
        else:
            members = await self.redis.zrangebyscore(key, low, high)
        return [_text(member) for member in members]

    async def _entries(self, key: str, ids: Sequence[str], decode: Callable[[bytes | str], Row]) -> Entries:
        values: list[Row | None] = []
        for start in range(0, len(ids), CHUNK):
            chunk = list(ids[start : start + CHUNK])
            for field, raw in zip(chunk, await self.redis.hmget(key, chunk), strict=True):
                if raw is not None:
                    values.append(self.unreadable.decoded(key, field, raw, decode))
        return Entries(values)

    async def summaries(self, ids: Sequence[str]) -> Entries:
        """The list rows of these accounts, in the same order (missing ones left out)."""
        return await self._entries(self.keys.summaries, ids, summary_row)

    async def alerts(self, limit: int, account_id: str | None = None, offset: int = 0) -> Entries:
        """The newest alerts first, overall or of one account, from the `offset`-th."""
        key = self.keys.alerts if account_id is None else self.keys.account_alerts(account_id)
        ids = [_text(member) for member in await self.redis.zrevrange(key, offset, offset + limit - 1)]
        return await self._entries(self.keys.alert_data, ids, alert_row)

    async def alert_count(self, account_id: str | None = None) -> int:
        """Alerts kept, overall or of one account."""
        key = self.keys.alerts if account_id is None else self.keys.account_alerts(account_id)
        return int(await self.redis.zcard(key))

    async def history(self, account_id: str) -> tuple[list[history.Point], int]:
        """The account's readable history points (see `streamer.projection.history`), oldest
        first, and how many it holds that the view cannot read (left out, logged)."""
        key = self.keys.history(account_id)
        found: Any = await self.redis.zrangebyscore(key, "-inf", "+inf", withscores=True)
        points: list[history.Point] = []
        for raw, score in found:
            as_of = int(score)
            point = self.unreadable.decoded(
                key,
                str(as_of),
                raw if isinstance(raw, bytes) else str(raw).encode(),
                partial(_point_at, as_of),
                remove_with=f"ZREMRANGEBYSCORE {key} {as_of} {as_of}",
            )
            if point is not None:
                points.append(point)
        return points, len(found) - len(points)

    async def names(self, which: str, limit: int, chosen: Sequence[str] = ()) -> Names:
        """Owners or segments (`which`): the `limit` with the most accounts (ties by name), any
        `chosen` ones with their count (0 when the projection has none), how many there are, and
        how many entries of those read could not be (left out, logged). The hash is read in
        HSCAN batches, keeping at most twice `limit` names at a time: one name per account can
        be tens of thousands, and a dashboard asks every minute."""
        key = self.keys.owners if which == "owner" else self.keys.segments
        kept: dict[str, int] = {}
        unreadable = 0
        cursor: int = 0
        while True:
            cursor, batch = await self.redis.hscan(key, cursor, count=NAME_BATCH)
            assert isinstance(batch, dict)  # fields with their values (a list only with `no_values`)
            for raw_name, raw_count in batch.items():
                entry = self._decoded_name_count(key, raw_name, raw_count)
                if entry is None:
                    unreadable += 1
                else:
                    kept[entry[0]] = entry[1]
            if len(kept) > 2 * limit:
                kept = _largest(kept, limit)
            if not cursor:
                break
        counts = _largest(kept, limit)
        if chosen:
            asked = list(dict.fromkeys(chosen))
            for name, stored in zip(asked, await self.redis.hmget(key, asked), strict=True):
                entry = None if stored is None else self._decoded_name_count(key, name, stored)
                counts[name] = 0 if entry is None else entry[1]
        return Names(dict(sorted(counts.items())), int(await self.redis.hlen(key)), unreadable)

    def _decoded_name_count(self, key: str, raw_name: Any, raw_count: Any) -> tuple[str, int] | None:
        """(name, count) of one hash entry, or None when it cannot be read (logged)."""
        field = raw_name.decode(errors="replace") if isinstance(raw_name, bytes) else str(raw_name)
        return self.unreadable.decoded(key, field, raw_count, partial(_name_count, raw_name))

    async def members(self, which: str, names: Sequence[str]) -> set[str]:
        """Ids of the accounts of these owners or segments (`which`)."""
        if not names:
            return set()
        key = self.keys.owner if which == "owner" else self.keys.segment
        found = await self.redis.sunion([key(name) for name in names])
        return {_text(member) for member in found}

    async def _partition_fields(self, *fields: str) -> list[tuple[int, list[Any]]]:
        """(number, the values of `fields`, None where unset) of every projected partition, by
        number."""
        numbers = sorted(int(_text(n)) for n in await self.redis.smembers(self.keys.partitions))
        if not numbers:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for number in numbers:
            pipe.hmget(self.keys.partition(number), list(fields))
        return list(zip(numbers, await pipe.execute(), strict=True))

    async def totals(self) -> list[int]:
        """The portfolio's current totals vector (`streamer.core.totals.FIELDS`), added up over the
        projected partitions."""
        rows = await self._partition_fields("totals")
        return add_up(narrow(orjson.loads(totals)) for _, (totals,) in rows if totals is not None)

    async def stream_times(self) -> dict[int, int]:
        """Each projected partition's stream time (epoch ms), by partition number."""
        rows = await self._partition_fields("stream_time")
        return {number: int(at) for number, (at,) in rows if at is not None}

    async def partitions(self) -> list[PartitionData]:
        """Every partition's period sums, totals and stream time, by partition number."""
        parts: list[PartitionData] = []
        rows = await self._partition_fields("stream_time", "sums", "totals")
        for number, (stream_time, sums, totals) in rows:
            if stream_time is None or sums is None or totals is None:
                continue
            parts.append(
                PartitionData(number, int(stream_time), decode_sums(sums), narrow(orjson.loads(totals)))
            )
        return parts

    async def stream_time(self) -> int | None:
        """The latest stream time of any partition (the portfolio's "now"), None before any data."""
        return max((await self.stream_times()).values(), default=None)

    async def workers(self, max_age_s: float) -> dict[str, dict[str, float]]:
        """Stats of the workers that reported within `max_age_s` (their keys expire after that)."""
        since = time.time() - max_age_s
        ids = [_text(member) for member in await self.redis.zrangebyscore(self.keys.workers, since, "+inf")]
        if not ids:
            return {}
        values = await self.redis.mget([self.keys.worker(worker_id) for worker_id in ids])
        return {
            worker_id: dict(orjson.loads(value))
            for worker_id, value in zip(ids, values, strict=True)
            if value is not None
        }
