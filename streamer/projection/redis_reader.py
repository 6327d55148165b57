"""Read-only access to the Redis projection, for the HTTP view (no writes, no Kafka)."""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Container, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from streamer.core.portfolio import PeriodSums
from streamer.core.totals import FIELDS, add_up
from streamer.projection import history
from streamer.projection.codec import decode_sums, epoch_ms, shown
from streamer.projection.keys import Keys
from streamer.projection.memory import StoreMemory, read_memory
from streamer.wideints import narrow

log = logging.getLogger(__name__)

CHUNK = 1000  # ids per HMGET
# Rows a page reads in one step at most (`PAGE`): a longer read (a CSV export, every alert for a
# filter) reads its ids, then their values in chunks, not to hold Redis up (100,000 rows in one
# script kept every other client waiting 0.2 s).
ONE_STEP = 1000

# One page of a list read in one step: its ids, their values and how many the list holds. Read
# apart, an alert trimmed between the read of its id and that of its value was counted
# unreadable (and logged as a value gone missing), and an account re-scored meanwhile showed its
# new score at its old place in the order.
# KEYS: a sorted set, the hash of its members' values, and optionally a sorted set whose members
#       alone are listed (the at-risk set: each keeps its score in the first).
# ARGV: low, high (score bounds as ZRANGEBYSCORE takes them), offset, count, '1' for highest first.
# Returns how many members are within the bounds, the page's members in order, and the value of
# each in the hash (nil where it holds none).
PAGE = """
local low, high, offset, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local total, ids
if KEYS[3] then
  local found = redis.call('ZINTER', 2, KEYS[1], KEYS[3], 'WEIGHTS', 1, 0, 'WITHSCORES')
  local members = {}
  for i = 1, #found, 2 do
    local score = tonumber(found[i + 1])
    if score >= tonumber(low) and score <= tonumber(high) then members[#members + 1] = found[i] end
  end
  total, ids = #members, {}
  for i = offset + 1, math.min(offset + count, total) do
    ids[#ids + 1] = members[ARGV[5] == '1' and total + 1 - i or i]
  end
else
  total = redis.call('ZCOUNT', KEYS[1], low, high)
  if ARGV[5] == '1' then
    ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], high, low, 'LIMIT', offset, count)
  else
    ids = redis.call('ZRANGEBYSCORE', KEYS[1], low, high, 'LIMIT', offset, count)
  end
end
local values = {}
if #ids > 0 then values = redis.call('HMGET', KEYS[2], unpack(ids)) end
return {total, ids, values}
"""

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


@dataclass(frozen=True, slots=True)
class Listed:
    """A page of a list (`ProjectionReader.rows_page`, `alerts`) and how many entries the list
    holds, counting those the view cannot read."""

    entries: Entries
    total: int


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


def _is_text(item: Any) -> bool:
    return isinstance(item, str)


def _reason(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("message"), str)


def summary_row(raw: bytes | str) -> Row:
    """A list row (`codec.summary`), its fields the view filters, sorts and exports on checked."""
    row = _object(raw)
    for name in ("account_id", "band", "lifecycle_stage", "mrr"):
        _expect(row, name, str)
    _expect(row, "score", int, float)
    _expect_each(row, "reasons", _is_text, "a text")
    _expect(row, "override", dict, type(None))
    _expect(row, "renewal_at", str, type(None))
    _finite(row, "mrr")
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


def _finite(row: Row, name: str) -> None:
    """`row[name]` is a finite decimal text (an amount)."""
    if not Decimal(row[name]).is_finite():
        raise ValueError(f"{name!r} is {row[name]!r}")


def _own(row: Row, name: str, listed_as: str) -> Row:
    """`row`, stored under the hash field `listed_as`, when its id (`name`) is that field: the row
    of another account stored there listed that account twice."""
    if row[name] != listed_as:
        raise ValueError(f"it holds the entry of {name} {str(row[name])[:80]!r}")
    return row


def summary_entry(account_id: str, raw: bytes | str) -> Row:
    """The list row stored under `account_id`'s field (`summary_row`, of that account)."""
    return _own(summary_row(raw), "account_id", account_id)


def alert_entry(alert_id: str, raw: bytes | str) -> Row:
    """The alert stored under `alert_id`'s field (`alert_row`, of that id)."""
    return _own(alert_row(raw), "alert_id", alert_id)


def snapshot_row(raw: bytes | str) -> Row:
    """A snapshot (`cs.health`'s JSON), the fields every snapshot holds checked as list rows are:
    one lacking a band or a score was answered as it was, and the account page showed
    "undefined"."""
    row = _object(raw)
    for name in ("account_id", "as_of", "band", "lifecycle_stage", "currency", "mrr", "arr"):
        _expect(row, name, str)
    _expect(row, "score", int, float)
    _expect(row, "churn_risk_60d", int, float, type(None))
    _expect(row, "plan", str, type(None))
    _expect(row, "components", dict)
    _expect(row, "metrics", dict)
    _expect(row, "comments", list)
    _expect_each(row, "missing", _is_text, "a text")
    _expect_each(row, "reasons", _reason, "an object with a 'message' text")
    _finite(row, "mrr")
    _finite(row, "arr")
    epoch_ms(row["as_of"])
    return row


def _snapshot(account_id: str, raw: bytes | str) -> Row:
    """The snapshot stored under `account_id`'s key: a JSON object of that account."""
    snapshot = snapshot_row(raw)
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

    def wrong_type(self, key: str, held: str, want: str) -> UnreadableValue:
        """The error of an answer that needs `key`, which holds a `held` where the workers write a
        `want`: logged as `report` logs, with the DEL that removes it."""
        error = TypeError(f"WRONGTYPE: it holds a {held} where the workers write a {want}")
        self.report(key, "", error, f"DEL {key}")
        return UnreadableValue(f"{key} ({error})")

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
        self._page_script = redis.register_script(PAGE)

    async def ping(self) -> float:
        """Round trip to Redis in milliseconds (raises when unreachable)."""
        started = time.perf_counter()
        await self.redis.ping()
        return (time.perf_counter() - started) * 1000

    async def memory(self) -> StoreMemory | None:
        """Redis's memory limit, use and eviction policy (None: not to be had, see `read_memory`)."""
        return await read_memory(self.redis)

    @asynccontextmanager
    async def _reading(self, kinds: Mapping[str, str]) -> AsyncIterator[None]:
        """A read of the keys of `kinds`, each with the type the workers write there: a key that
        holds another type (Redis's WRONGTYPE, which names no key) is raised as an
        `UnreadableValue` naming it, logged with the DEL that removes it."""
        try:
            yield
        except ResponseError as error:
            wrong = await self._wrong_type(kinds) if "WRONGTYPE" in str(error) else None
            if wrong is None:
                raise
            raise wrong from error

    async def _wrong_type(self, kinds: Mapping[str, str]) -> UnreadableValue | None:
        """The error of the first key of `kinds` that holds another type than the workers write
        there (None: none does, or no longer)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in kinds:
            pipe.type(key)
        for (key, want), held in zip(kinds.items(), map(_text, await pipe.execute()), strict=True):
            if held not in (want, "none"):
                return self.unreadable.wrong_type(key, held, want)
        return None

    async def meta(self) -> dict[str, str]:
        async with self._reading({self.keys.meta: "hash"}):
            raw = await self.redis.hgetall(self.keys.meta)
        return {_text(key): _text(value) for key, value in raw.items()}

    async def account(self, account_id: str) -> dict[str, Any] | None:
        """The account's latest snapshot, None when the projection has none (raises when the value
        stored is no snapshot of this account)."""
        key = self.keys.account(account_id)
        async with self._reading({key: "hash"}):
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

    async def rows_page(
        self, key: str, where: Range, offset: int, count: int, *, descending: bool, within: str | None = None
    ) -> Listed:
        """One page of the list rows of the sorted set `key` within a score range (only its members
        that `within` holds too, when given) and how many are in the range: one consistent cut
        (`PAGE`) for a page of at most `ONE_STEP` rows, else its ids, then their rows."""
        if count <= ONE_STEP:
            summaries = self.keys.summaries
            return await self._page(
                key, summaries, summary_entry, where, offset, count, descending=descending, within=within
            )
        if within is None:
            ids = await self.ids(key, where, descending=descending)
        else:
            ids = await self.ids_within(key, within, where, descending=descending)
        return Listed(await self.summaries(ids[offset : offset + count]), len(ids))

    async def _page(
        self,
        key: str,
        data: str,
        decode: Callable[[str, bytes | str], Row],
        where: Range,
        offset: int,
        count: int,
        *,
        descending: bool,
        within: str | None = None,
    ) -> Listed:
        """One page of the sorted set `key` with its members' values in the hash `data`, read in
        one step (`PAGE`)."""
        kinds = {key: "zset", data: "hash"} | ({} if within is None else {within: "zset"})
        low, high = where.bounds
        async with self._reading(kinds):
            total, members, stored = await self._page_script(
                keys=list(kinds), args=[low, high, offset, count, "1" if descending else ""]
            )
        ids = self._ids(key, members, "ZREM")
        readable = (raw for raw, field in zip(stored, ids, strict=True) if field is not None)
        return Listed(Entries(self._values(data, ids, readable, decode)), int(total))

    async def ids(self, key: str, where: Range, *, descending: bool) -> list[str | None]:
        """All ids of a sorted set within a score range, in order (None: unreadable, see `_ids`)."""
        low, high = where.bounds
        async with self._reading({key: "zset"}):
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
        async with self._reading({key: "zset", within: "zset"}):
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

    def _values(
        self,
        key: str,
        ids: Sequence[str | None],
        stored: Iterator[Any],
        decode: Callable[[str, bytes | str], Row],
        gone: Container[str] = (),
    ) -> list[Row | None]:
        """The values `stored` (of the readable ids, in order) decoded: None for an unreadable id,
        and for an id the hash `key` holds no value of (deleted or evicted by hand: the list lost
        it silently), unless it is `gone` (no longer listed: trimmed while it was read), which is
        left out."""
        values: list[Row | None] = []
        for field in ids:
            if field is None:
                values.append(None)
                continue
            raw = next(stored)
            if raw is not None:
                values.append(self.unreadable.decoded(key, field, raw, partial(decode, field)))
            elif field not in gone:
                self.unreadable.missing(key, field)
                values.append(None)
        return values

    async def _entries(
        self,
        key: str,
        ids: Sequence[str | None],
        decode: Callable[[str, bytes | str], Row],
        listed_in: str | None = None,
    ) -> Entries:
        """The values of `ids` in the hash `key`, decoded, a chunk at a time (see `_values`); an id
        that has no value and that the sorted set `listed_in` no longer holds was trimmed
        while it was read, and is left out."""
        values: list[Row | None] = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            fields = [field for field in chunk if field is not None]
            async with self._reading({key: "hash"}):
                stored = await self.redis.hmget(key, fields) if fields else []
            absent = [field for field, raw in zip(fields, stored, strict=True) if raw is None]
            gone = await self._unlisted(listed_in, absent) if listed_in and absent else set()
            values += self._values(key, chunk, iter(stored), decode, gone)
        return Entries(values)

    async def _unlisted(self, key: str, ids: list[str]) -> set[str]:
        """Those of `ids` that the sorted set `key` does not hold."""
        async with self._reading({key: "zset"}):
            scores = await self.redis.zmscore(key, ids)
        return {member for member, score in zip(ids, scores, strict=True) if score is None}

    async def summaries(self, ids: Sequence[str | None]) -> Entries:
        """The list rows of these accounts, in the same order (a missing row, or an unreadable
        id, counted as an unreadable row)."""
        return await self._entries(self.keys.summaries, ids, summary_entry)

    async def alerts(self, limit: int | None, account_id: str | None = None, offset: int = 0) -> Listed:
        """The newest alerts first, overall or of one account, from the `offset`-th (`limit` None:
        all), and how many are kept: one consistent cut for a page of at most `ONE_STEP`, else
        the ids, then the alerts, leaving out one trimmed meanwhile."""
        key = self.keys.alerts if account_id is None else self.keys.account_alerts(account_id)
        if limit is not None and limit <= ONE_STEP:
            return await self._page(
                key, self.keys.alert_data, alert_entry, Range(), offset, limit, descending=True
            )
        ids = await self.ids(key, Range(), descending=True)
        listed = ids[offset:] if limit is None else ids[offset : offset + limit]
        return Listed(await self._entries(self.keys.alert_data, listed, alert_entry, key), len(ids))

    async def history(self, account_id: str) -> tuple[list[history.Point], int]:
        """The account's readable history points (see `streamer.projection.history`), oldest
        first, and how many it holds that the view cannot read (left out, logged)."""
        key = self.keys.history(account_id)
        async with self._reading({key: "zset"}):
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
        async with self._reading({key: "hash"}):
            return await self._names(key, limit, chosen)

    async def _names(self, key: str, limit: int, chosen: Sequence[str]) -> Names:
        """`names` of the hash `key`."""
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
        async with self._reading(dict.fromkeys(keys, "set")):
            answers = await pipe.execute()
        found: set[str] = set()
        for key, members in zip(keys, answers, strict=True):
            found.update(i for i in self._ids(key, members, "SREM") if i is not None)
        return found

    async def _partition_fields(self, *fields: str) -> list[tuple[int, list[Any]]]:
        """(number, the values of `fields`, None where unset) of every projected partition, by
        number."""
        key = self.keys.partitions
        async with self._reading({key: "set"}):
            members = await self.redis.smembers(key)
        numbers = sorted(
            self.unreadable.required(key, shown(n), n, _number, f"SREM {key} {shown(n)}") for n in members
        )
        if not numbers:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for number in numbers:
            pipe.hmget(self.keys.partition(number), list(fields))
        async with self._reading({self.keys.partition(number): "hash" for number in numbers}):
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
        async with self._reading({self.keys.workers: "zset"}):
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
