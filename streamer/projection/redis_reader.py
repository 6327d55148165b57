"""Read-only access to the Redis projection, for the HTTP view (no writes, no Kafka)."""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar, cast

import orjson
from redis.asyncio import Redis

from streamer.core.portfolio import PeriodSums
from streamer.core.totals import FIELDS, add_up
from streamer.projection import history
from streamer.projection.codec import decode_sums, epoch_ms, shown
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


class UnreadableValue(ValueError):
    """A value an answer needs and cannot read, named by its key and field (one of `UNREADABLE`:
    the error alone, `invalid literal for int()`, left the operator to search Redis for it)."""


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


def _number(value: Any) -> int:
    """An integer stored as text (a partition number, a stream time)."""
    return int(_text(value))


def _point_at(score: float, raw: bytes | str) -> history.Point:
    """The history point `raw` whose sorted-set score (its `as_of`) is `score`."""
    return history.decode(raw, int(score))  # OverflowError, an ArithmeticError, for a score of inf


def _score_text(score: float) -> str:
    """A sorted-set score as ZREMRANGEBYSCORE takes it back."""
    return str(int(score)) if score.is_integer() else repr(score)


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
    """The values of some ids in one hash, in the order asked: each decoded, or None where the
    hash holds a value the view cannot read, or none (logged, naming it)."""

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


def _expect_each(row: Row, name: str, check: Callable[[Any], bool], what: str) -> None:
    """`row[name]` is a list whose every item passes `check` (`what` says what each must be)."""
    _expect(row, name, list)
    for item in row[name]:
        if not check(item):
            raise TypeError(f"{name!r} holds {str(item)[:40]!r}, not {what}")


def _text_reason(item: Any) -> bool:
    return isinstance(item, str)


def _reason(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("message"), str)


def summary_row(raw: bytes | str) -> Row:
    """A list row (`codec.summary`), its fields the view filters, sorts and exports on checked."""
    row = _object(raw)
    for name in ("account_id", "band", "lifecycle_stage", "mrr"):
        _expect(row, name, str)
    _expect(row, "score", int, float)
    _expect_each(row, "reasons", _text_reason, "a text")
    _expect(row, "override", dict, type(None))
    _expect(row, "renewal_at", str, type(None))
    if not Decimal(row["mrr"]).is_finite():
        raise ValueError(f"'mrr' is {row['mrr']!r}")
    if row["renewal_at"] is not None:
        epoch_ms(row["renewal_at"])
    return row


def alert_row(raw: bytes | str) -> Row:
    """An alert (`cs.alerts`' JSON), its fields the view filters, exports and shows on an account's
    timeline checked: each reason an object with a `message` text."""
    row = _object(raw)
    for name in ("alert_id", "account_id", "raised_at", "rule", "severity"):
        _expect(row, name, str)
    _expect_each(row, "reasons", _reason, "an object with a 'message' text")
    _expect(row, "profile", dict, type(None))
    return row


def _snapshot(account_id: str, raw: bytes | str) -> Row:
    """The snapshot stored under `account_id`'s key: a JSON object of that account."""
    snapshot = _object(raw)
    if snapshot.get("account_id") != account_id:
        raise ValueError(f"the snapshot under it is of account {str(snapshot.get('account_id'))[:80]!r}")
    return snapshot


def _totals(raw: bytes | str) -> list[int]:
    """A partition's totals vector (`streamer.core.totals.FIELDS`), each an integer (past 64 bits a
    decimal string, `wide`): a short one added up silently into wrong portfolio totals."""
    value = orjson.loads(raw)
    if not isinstance(value, list) or len(value) != len(FIELDS):
        size = f"a list of {len(value)}" if isinstance(value, list) else f"a JSON {type(value).__name__}"
        raise ValueError(f"totals are {size}, not a list of {len(FIELDS)} integers")
    if not all(isinstance(v, int | str) and not isinstance(v, bool) for v in value):
        raise TypeError("totals hold a value that is no integer")
    return narrow(value)


def _number_stat(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _stat(value: Any) -> bool:
    """Whether a worker's stat is what the workers write: a finite number, never below 0 (each is
    a count, a duration or a lag: a negative one summed into the metrics went unnoticed)."""
    return _number_stat(value) and value >= 0


def _stat_kind(value: Any) -> str:
    """What a stat the view cannot read holds instead, as /healthz names it."""
    return "a negative number" if _number_stat(value) else type(value).__name__


@dataclass(frozen=True, slots=True)
class Workers:
    """The workers that reported recently (`ProjectionReader.workers`)."""

    stats: dict[str, dict[str, float]]  # by worker id: the stats the view can read
    # by worker id: each stat it cannot read, with what it holds instead ("" for the whole value)
    unreadable: dict[str, dict[str, str]]


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
            self.report(key, field, error, remove_with or f"HDEL {key} {field}")
            return None

    def required(
        self, key: str, field: str, raw: Any, decode: Callable[[Any], T], remove_with: str | None = None
    ) -> T:
        """`decode(raw)` of a value an answer cannot do without: when it cannot be read, logged
        (as `decoded` does) and raised as an `UnreadableValue` naming the key and field."""
        try:
            return decode(raw)
        except UNREADABLE as error:
            self.report(key, field, error, remove_with or f"HDEL {key} {field}")
            what = f"{type(error).__name__}: {str(error)[:200]}"
            raise UnreadableValue(f"{key} field {field!r} ({what})") from error

    def _due(self, key: str, field: str) -> bool:
        """Whether `key`'s `field` was not logged within `REPEAT_S` (noted as logged now)."""
        now = self.clock()
        last = self._logged.get((key, field))
        if last is not None and now - last < self.REPEAT_S:
            return False
        if len(self._logged) >= self.KEPT:
            self._logged.clear()
        self._logged[key, field] = now
        return True

    def missing(self, key: str, field: str) -> None:
        """Log that an id listed (in an index, the alert list) has no value in `key` (at most once
        per `REPEAT_S`): deleted or evicted, it is no value the workers wrote wrong."""
        if self._due(key, field):
            log.error(
                "an entry listed has no value in the projection, left out of the answer and "
                "counted unreadable; the worker writes it again at its next change",
                extra={"key": key, "field": field},
            )

    def report(self, key: str, field: str, error: Exception, remove_with: str) -> None:
        """Log that the value of `key`'s `field` cannot be read (at most once per `REPEAT_S`)."""
        if not self._due(key, field):
            return
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
        """The account's latest snapshot, None when the projection has none (raises when the value
        stored is no snapshot of this account)."""
        key = self.keys.account(account_id)
        raw = await self.redis.hget(key, "snapshot")
        return (
            None
            if raw is None
            else self.unreadable.required(key, "snapshot", raw, partial(_snapshot, account_id))
        )

    async def count(self) -> int:
        """Accounts in the projection."""
        return int(await self.redis.zcard(self.keys.index("score")))

    def _ids(self, key: str, members: Sequence[Any], remove: str) -> list[str | None]:
        """Members of a sorted set or set as ids; None (logged, `remove` then removes it) where one
        is not UTF-8 text, as no id the workers write is: its list leaves it out and counts it."""
        ids: list[str | None] = []
        for member in members:
            try:
                ids.append(_text(member))
            except UnicodeDecodeError:  # the rare case pays for the log's wording, not every id
                named = shown(member)
                ids.append(self.unreadable.decoded(key, named, member, _text, f"{remove} {key} {named}"))
        return ids

    async def page(
        self, key: str, where: Range, offset: int, count: int, *, descending: bool
    ) -> tuple[list[str | None], int]:
        """Ids of one page of a sorted set within a score range (None: unreadable, see `_ids`), and
        how many are in the range."""
        low, high = where.bounds
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(key, low, high)
        if descending:
            pipe.zrevrangebyscore(key, high, low, start=offset, num=count)
        else:
            pipe.zrangebyscore(key, low, high, start=offset, num=count)
        total, ids = await pipe.execute()
        return self._ids(key, ids, "ZREM"), int(total)

    async def ids(self, key: str, where: Range, *, descending: bool) -> list[str | None]:
        """All ids of a sorted set within a score range, in order (None: unreadable, see `_ids`)."""
        low, high = where.bounds
        if descending:
            members = await self.redis.zrevrangebyscore(key, high, low)
        else:
            members = await self.redis.zrangebyscore(key, low, high)
        return self._ids(key, members, "ZREM")

    async def ids_within(self, key: str, within: str, where: Range, *, descending: bool) -> list[str | None]:
        """All ids of the sorted set `key` that are also members of `within`, in `key`'s order
        and within a score range (None: unreadable, see `_ids`): one ZINTER, `within` weighing
        0 so that each id keeps its score in `key`."""
        members: list[Any]
        if where.low is None and where.high is None:  # no range: the members alone, half the bytes
            members = await self.redis.zinter({key: 1, within: 0})
        else:
            found = cast(
                list[tuple[bytes, float]], await self.redis.zinter({key: 1, within: 0}, withscores=True)
            )
            low = float("-inf") if where.low is None else float(where.low)
            high = float("inf") if where.high is None else float(where.high)
            members = [member for member, score in found if low <= score <= high]
        if descending:
            members.reverse()
        return self._ids(key, members, "ZREM")

    async def _entries(
        self, key: str, ids: Sequence[str | None], decode: Callable[[bytes | str], Row]
    ) -> Entries:
        """The values of `ids` in the hash `key`, decoded; an unreadable id (None), and an id the
        hash holds no value of (deleted or evicted by hand: the list lost it silently), is an
        unreadable entry."""
        values: list[Row | None] = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            fields = [field for field in chunk if field is not None]
            stored = iter(await self.redis.hmget(key, fields) if fields else [])
            for field in chunk:
                if field is None:
                    values.append(None)
                    continue
                raw = next(stored)
                if raw is None:
                    self.unreadable.missing(key, field)
                    values.append(None)
                else:
                    values.append(self.unreadable.decoded(key, field, raw, decode))
        return Entries(values)

    async def summaries(self, ids: Sequence[str | None]) -> Entries:
        """The list rows of these accounts, in the same order (a missing row, or an unreadable
        id, counted as an unreadable row)."""
        return await self._entries(self.keys.summaries, ids, summary_row)

    async def alerts(self, limit: int, account_id: str | None = None, offset: int = 0) -> Entries:
        """The newest alerts first, overall or of one account, from the `offset`-th."""
        key = self.keys.alerts if account_id is None else self.keys.account_alerts(account_id)
        ids = self._ids(key, await self.redis.zrevrange(key, offset, offset + limit - 1), "ZREM")
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
            at = _score_text(score)
            point = self.unreadable.decoded(
                key,
                at,
                raw if isinstance(raw, bytes) else str(raw).encode(),
                partial(_point_at, score),
                remove_with=f"ZREMRANGEBYSCORE {key} {at} {at}",
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
        field = shown(raw_name)
        return self.unreadable.decoded(key, field, raw_count, partial(_name_count, raw_name))

    async def members(self, which: str, names: Sequence[str]) -> set[str]:
        """Ids of the accounts of these owners or segments (`which`); a member that is not UTF-8
        text names no account a list can show (its own id would be unreadable): left out, logged."""
        if not names:
            return set()
        keys = [(self.keys.owner if which == "owner" else self.keys.segment)(name) for name in names]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.smembers(key)
        found: set[str] = set()
        for key, members in zip(keys, await pipe.execute(), strict=True):
            found.update(i for i in self._ids(key, members, "SREM") if i is not None)
        return found

    async def _partition_fields(self, *fields: str) -> list[tuple[int, list[Any]]]:
        """(number, the values of `fields`, None where unset) of every projected partition, by
        number."""
        key = self.keys.partitions
        numbers = sorted(
            self.unreadable.required(key, shown(n), n, _number, f"SREM {key} {shown(n)}")
            for n in await self.redis.smembers(key)
        )
        if not numbers:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for number in numbers:
            pipe.hmget(self.keys.partition(number), list(fields))
        return list(zip(numbers, await pipe.execute(), strict=True))

    def _field(self, number: int, field: str, raw: Any, decode: Callable[[Any], T]) -> T:
        """A partition's field decoded; raises an `UnreadableValue` naming it when it cannot be."""
        return self.unreadable.required(self.keys.partition(number), field, raw, decode)

    async def totals(self) -> list[int]:
        """The portfolio's current totals vector (`streamer.core.totals.FIELDS`), added up over the
        projected partitions."""
        rows = await self._partition_fields("totals")
        return add_up(
            self._field(n, "totals", totals, _totals) for n, (totals,) in rows if totals is not None
        )

    async def stream_times(self) -> dict[int, int]:
        """Each projected partition's stream time (epoch ms), by partition number."""
        rows = await self._partition_fields("stream_time")
        return {n: self._field(n, "stream_time", at, _number) for n, (at,) in rows if at is not None}

    async def partitions(self) -> list[PartitionData]:
        """Every partition's period sums, totals and stream time, by partition number."""
        parts: list[PartitionData] = []
        rows = await self._partition_fields("stream_time", "sums", "totals")
        for n, (stream_time, sums, totals) in rows:
            if stream_time is None or sums is None or totals is None:
                continue
            parts.append(
                PartitionData(
                    n,
                    self._field(n, "stream_time", stream_time, _number),
                    self._field(n, "sums", sums, decode_sums),
                    self._field(n, "totals", totals, _totals),
                )
            )
        return parts

    async def stream_time(self) -> int | None:
        """The latest stream time of any partition (the portfolio's "now"), None before any data."""
        return max((await self.stream_times()).values(), default=None)

    async def checked_stream_time(self) -> int | None:
        """`stream_time`, every partition's totals read in the same round trip (raises as `totals`
        does on one the portfolio cannot read): what /healthz asks."""
        return (await self.checked_totals())[0]

    async def checked_totals(self) -> tuple[int | None, list[int]]:
        """`stream_time` and `totals` in one round trip, raising as each does on a partition
        whose stream time or totals cannot be read: what /healthz and /metrics ask (a partition
        the portfolio cannot read makes /metrics report Redis down, as the README says)."""
        rows = await self._partition_fields("stream_time", "totals")
        totals = [self._field(n, "totals", raw, _totals) for n, (_, raw) in rows if raw is not None]
        times = [self._field(n, "stream_time", at, _number) for n, (at, _) in rows if at is not None]
        return max(times, default=None), add_up(totals)

    async def workers(self, max_age_s: float) -> Workers:
        """Stats of the workers that reported within `max_age_s` (their keys expire after that). A
        stat that is no finite number, or a whole value that is no JSON object, is left out and
        named in `unreadable` (logged); so is a worker whose id is not UTF-8 text."""
        since = time.time() - max_age_s
        members = await self.redis.zrangebyscore(self.keys.workers, since, "+inf")
        ids = self._ids(self.keys.workers, members, "ZREM")
        found = Workers({}, {})
        for member, worker_id in zip(members, ids, strict=True):
            if worker_id is None:
                found.unreadable[shown(member)] = {"": "an id that is not UTF-8"}
        known = [worker_id for worker_id in ids if worker_id is not None]
        values = await self.redis.mget([self.keys.worker(worker_id) for worker_id in known]) if known else []
        for worker_id, value in zip(known, values, strict=True):
            if value is not None:
                self._worker(found, worker_id, value)
        return found

    def _worker(self, found: Workers, worker_id: str, value: bytes | str) -> None:
        """Add one worker's stats to `found`: those that are finite numbers, and what the rest are."""
        key = self.keys.worker(worker_id)
        stats = self.unreadable.decoded(key, "", value, _object, remove_with=f"DEL {key}")
        if stats is None:
            found.stats[worker_id], found.unreadable[worker_id] = {}, {"": "no JSON object"}
            return
        found.stats[worker_id] = {name: float(v) for name, v in stats.items() if _stat(v)}
        bad = {name: _stat_kind(v) for name, v in stats.items() if not _stat(v)}
        if bad:
            found.unreadable[worker_id] = bad
            error = TypeError(", ".join(f"{name!r} is {kind}" for name, kind in bad.items()))
            self.unreadable.report(key, ",".join(bad), error, f"DEL {key}")
