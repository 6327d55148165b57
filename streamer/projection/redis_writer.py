"""The Redis projection a worker writes: staged per batch, coalesced, written in the background.

`flush()` never waits on Redis: when a write is due it starts a background task that writes what
was staged, and keeps writing what gets staged meanwhile, at most every `min_interval_s`. A write
that fails (Redis unreachable, or refusing writes at its memory limit) puts its data back under
what was staged meanwhile (newer values win) and the next
attempt waits a backoff that doubles up to `max_backoff_s`, so a worker keeps processing while
Redis is down and the projection catches up when it returns. Every write is an idempotent Lua
script that refuses to go back in time (an older `as_of` or stream time never overwrites a newer
one), so replays and recovered workers write the same values. Staged alerts are bounded like
the stored ones (`staging.AlertLimits`): an outage does not grow them without end, and Redis
ends up holding the same alerts as if each had been written as it was raised.

When Redis answers with another projection `epoch` than the one a writer saw before, or with
none, its data was lost (a restart without persistence, a flush) or never written: `lost` is then
set, and the worker re-stages the full state of its partitions (see
`streamer.projection.resync`). The epoch is a random token in the `meta` hash that the first
write after a loss sets: every worker's next write sees the change, not only the one that wrote
first (which would recreate a `meta` key that the others then took for the data). A Redis that
comes back with older data (restarted from its last save, or a failover to a lagging replica)
keeps its epoch: each writer also counts its completed writes in a key of its own
(`Keys.written`), set after a write's last command, and one that finds fewer there than it
completed sets `lost` the same way.

A write Redis refuses for good (a key of the projection holding another type, planted by hand)
costs only that write: the others go through, heartbeats and stream times included, and an
error names the key, what it holds and what to do (`repair`), once per `REPORT_EVERY_S` per key.
Only errors a retry may mend (`retried`: Redis full, loading, read-only) fail the whole write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from operator import itemgetter
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.typing import EncodableT, FieldT

from streamer.contract.vocabulary import BANDS
from streamer.core.clock import DAY
from streamer.core.portfolio import PeriodSums
from streamer.core.snapshot import PointFigures
from streamer.jsonbytes import kept_json
from streamer.projection import history, scripts
from streamer.projection.codec import at_risk, encode_sums, epoch_ms, index_values, profile, shown, summary
from streamer.projection.history import thin
from streamer.projection.keys import INDEXES, LAYOUT, Keys
from streamer.projection.staging import AlertLimits, PartitionState, Staged, StagedAlert
from streamer.wideints import wide

log = logging.getLogger(__name__)

EPOCH = "epoch"  # the `meta` field that tells one life of the store's data from the next

COMMANDS_PER_PIPELINE = 500
WORKER_TTL_S = 30
KEEP_ALERTS = 5000  # newest alerts kept overall (pages of the alert list) ...
KEEP_ACCOUNT_ALERTS = 50  # ... and per account (the account page)
WRITTEN_TTL_S = 86_400  # a writer's count of writes (`Keys.written`) outlives any pause of it
REPORT_EVERY_S = 300.0  # a key that refuses writes is logged at most this often

# Errors a retry may mend: the whole write fails and is retried after a backoff. Any other error
# Redis answers a command with stays until someone mends the key: that command is skipped.
RETRIED_ERRORS = (
    AuthenticationError,
    BusyLoadingError,
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
)
RETRIED_CODES = re.compile(
    r"(?:^|-)(?:OOM|LOADING|BUSY|READONLY|MASTERDOWN|TRYAGAIN|NOREPLICAS|CLUSTERDOWN|NOAUTH"
    r"|NOPERM|MISCONF|NOSCRIPT|EXECABORT|MOVED|ASK)\b"
)
COMMAND_TYPES = {  # the type a key holds that the writer's other commands write
    "HSETNX": "hash",
    "HGET": "hash",
    "HSET": "hash",
    "GET": "string",
    "ZADD": "zset",
    "ZREMRANGEBYSCORE": "zset",
}


def retried(error: Exception) -> bool:
    """Whether a command's error may be mended by retrying the write (Redis full, loading,
    read-only, a failover under way) rather than by mending a key."""
    if not isinstance(error, ResponseError) or isinstance(error, RETRIED_ERRORS):
        return True
    message = str(error)
    if message.startswith("WRONGTYPE"):  # ends with a key name, which may hold "-BUSY" or "-ASK"
        return False
    return RETRIED_CODES.search(message) is not None


def repair(keys: Keys, key: str) -> str:
    """What to do about a projection key that holds another type than the workers write there."""
    alone = {
        keys.account(""): "delete it: it is one account's alone, and its next snapshot writes it again",
        keys.history(""): "delete it: it is one account's alone (its older history points are lost)",
        keys.account_alerts_prefix: "delete it: it is one account's alone, and its next alerts fill it",
        keys.partition(0)[:-1]: "delete it: the partition's next write writes it again",
    }
    if key == keys.meta:
        return "delete it: the next write writes it again, and the workers re-stage the projection"
    for start, advice in alone.items():
        if key.startswith(start):
            return advice
    return (
        "it holds the entries of many accounts: deleted, it holds again only those of the "
        "accounts written since; to rebuild it whole, delete every key under "
        f"'{keys.prefix}:' and the workers re-stage the projection (the history charts start again)"
    )


UNEXPLAINED = (
    "one of these keys holds a value the workers never write (by hand, say): its writes are "
    "skipped until it is mended; the error says which value"
)


def connect(url: str) -> Redis:
    """A client that fails fast (the writer has its own backoff; the view answers 503)."""
    return Redis.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


class RedisProjection:
    """The `Projection` port over Redis (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        meta: Mapping[str, str],
        *,
        min_interval_s: float = 0.5,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        keep_alerts: int = KEEP_ALERTS,
        keep_account_alerts: int = KEEP_ACCOUNT_ALERTS,
    ) -> None:
        """`keep_alerts`, `keep_account_alerts`: the newest alerts Redis keeps overall and per
        account (the defaults but in tests)."""
        self.redis = redis
        self.keys = Keys(prefix)
        self.meta: dict[FieldT, EncodableT] = {key: value for key, value in meta.items()}
        self.min_interval_s = min_interval_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.alert_limits = AlertLimits(keep_alerts, keep_account_alerts)
        self.staged = Staged(self.alert_limits)
        self.lost = False
        self._epoch: bytes | None = None  # the store's `epoch` at this writer's last write
        self.writer_id = uuid.uuid4().hex
        self._completed = 0  # writes completed, as this writer's `Keys.written` should say
        self._reported: dict[str, float] = {}  # when each key that refused writes was logged
        self.writes = 0  # successful writes
        self.written = 0  # staged values written
        self.skipped_writes = 0  # writes refused for good: a key of another type (WRONGTYPE)
        self.pruned_alerts = 0  # staged alerts dropped unwritten: Redis would have trimmed them
        self.failures = 0  # failed writes, in total
        self.failing = 0  # failed writes in a row
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # cuts the pause between writes short (drain)
        self._next_write = 0.0
        self._down_since: float | None = None
        self._scripts = {
            name: redis.register_script(source)
            for name, source in (
                ("snapshot", scripts.SNAPSHOT),
                ("partition", scripts.PARTITION),
                ("alert", scripts.ALERT),
                ("history", scripts.HISTORY),
            )
        }

    # -- staging (the Projection port) -----------------------------------------------------------

    def snapshot(self, snapshot: dict[str, Any]) -> None:
        as_of = epoch_ms(snapshot["as_of"])
        self.staged.snapshot(as_of, snapshot)
        self.staged.point(str(snapshot["account_id"]), as_of, history.point(snapshot))

    def point(self, account_id: str, figures: PointFigures) -> None:
        self.staged.point(account_id, figures[0], figures)  # formatted if still kept when written

    def restage(self, snapshot: dict[str, Any], *, evaluated_again: bool = True) -> None:
        """An account's snapshot staged again (`streamer.projection.resync`). One a recovery
        evaluated again is written where Redis holds nothing as recent for the account, never
        over the one published at its `as_of` (unless that one was written in an older
        `keys.LAYOUT`: an upgrade's new index fills). One this worker published
        (`evaluated_again` False) is written as a publication is, over an earlier one of the same
        `as_of`: Redis restored from an older save held one, and kept it for good."""
        as_of = epoch_ms(snapshot["as_of"])
        account_id = str(snapshot["account_id"])
        self.staged.encoded(account_id, as_of, kept_json(snapshot), restaged=evaluated_again)
        self.staged.point(account_id, as_of, history.point(snapshot), restaged=evaluated_again)

    def alert(self, alert: dict[str, Any]) -> None:
        self.pruned_alerts += self.staged.alert(
            str(alert["alert_id"]), str(alert["account_id"]), epoch_ms(alert["raised_at"]), alert
        )

    def partition(self, partition: int, sums: PeriodSums, totals: list[int], stream_time: int) -> None:
        self.staged.partition(
            partition, PartitionState(stream_time, encode_sums(sums), kept_json(wide(totals)))
        )

    def worker(self, worker_id: str, stats: dict[str, float]) -> None:
        self.staged.workers[worker_id] = dict(stats)

    async def flush(self) -> None:
        """Start writing what was staged when a write is due; never waits on Redis, never raises."""
        if self._task is not None and not self._task.done():
            return
        if not self.staged or self.clock() < self._next_write:
            return
        self._task = asyncio.create_task(self._writing())

    # -- draining (shutdown, tests) --------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Values staged and not yet written (including a write in flight)."""
        return len(self.staged) + (0 if self._task is None or self._task.done() else 1)

    async def drain(self, timeout_s: float = 10.0) -> bool:
        """Write everything staged now, ignoring the interval and backoff; True when all was written."""
        deadline = self.clock() + timeout_s
        while self.clock() < deadline:
            if self._task is not None and not self._task.done():
                self._next_write = 0.0
                self._wake.set()
                await asyncio.wait({self._task}, timeout=max(0.0, deadline - self.clock()))
                continue
            if not self.staged:
                return True
            self._next_write = 0.0
            await self.flush()
            if self._task is not None:
                await asyncio.wait({self._task}, timeout=max(0.0, deadline - self.clock()))
            if self.failing:
                await asyncio.sleep(min(0.2, max(0.0, deadline - self.clock())))
        return not self.staged and (self._task is None or self._task.done())

    async def close(self, timeout_s: float = 5.0) -> None:
        """Write what is left (for at most `timeout_s`) and close the connection."""
        await self.drain(timeout_s)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self.redis.aclose()

    # -- writing ---------------------------------------------------------------------------------

    async def _writing(self) -> None:
        """Write what is staged, and again every `min_interval_s` while more is staged meanwhile;
        after a failure, stop (the next `flush` after the backoff tries again)."""
        while self.staged:
            batch, self.staged = self.staged, Staged(self.alert_limits)
            if not await self._write(batch):
                return
            delay = self._next_write - self.clock()
            if delay > 0 and self.staged:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def _write(self, batch: Staged) -> bool:
        started = self.clock()
        try:
            await self._send(batch)
        except Exception as error:  # the worker never stops for the projection
            self.pruned_alerts += batch.absorb(self.staged)
            batch.encode_points()
            self.staged = batch
            self.failures += 1
            self.failing += 1
            self.last_error = f"{type(error).__name__}: {error}"
            backoff = min(self.max_backoff_s, self.first_backoff_s * 2 ** (self.failing - 1))
            self._next_write = self.clock() + backoff
            if self._down_since is None:
                self._down_since = started
                if isinstance(error, (RedisError, OSError, TimeoutError)):
                    log.warning(
                        # an answer that is an error (a full Redis: OutOfMemoryError) is no outage
                        "projection store refused the writes; staging until it takes them"
                        if isinstance(error, ResponseError)
                        else "projection store unreachable; staging until it returns",
                        extra={"error": self.last_error, "staged": len(batch)},
                    )
                else:  # building the commands failed: no outage, and no retry will mend it
                    log.error(
                        "projection writes failed in the worker, not in Redis (a defect: please "
                        "report it with this log); staging and retrying",
                        exc_info=error,
                        extra={"error": self.last_error, "staged": len(batch)},
                    )
            return False
        if self._down_since is not None:
            log.info(
                "projection store back; caught up",
                extra={"down_s": round(self.clock() - self._down_since, 1), "written": len(batch)},
            )
            self._down_since = None
        self.writes += 1
        self.written += len(batch)
        self.failing = 0
        self._next_write = self.clock() + self.min_interval_s
        return True

    async def _send(self, batch: Staged) -> None:
        await self._check_store()
        # Built once Redis answered: while it is away every attempt failed here, and building
        # a command per staged value (all the alerts raised meanwhile) first was wasted CPU.
        # Built a pipeline at a time, and the loop turns at each: after a midnight a batch
        # holds a snapshot of every active account of the worker's partitions.
        commands = self._commands(batch)
        while chunk := list(islice(commands, COMMANDS_PER_PIPELINE)):
            pipe = self.redis.pipeline(transaction=False)
            for command in chunk:
                command(pipe)
            sent = [args for args, _options in pipe.command_stack]
            results = await pipe.execute(raise_on_error=False)
            await self._skip_refused(sent, results)
        # Set after every other command of the write: a Redis holding fewer lost some of them.
        await self.redis.set(self.keys.written(self.writer_id), self._completed + 1, ex=WRITTEN_TTL_S)
        self._completed += 1

    async def _check_store(self) -> None:
        """Set `lost` (logged) when Redis lost the projection's data (another `epoch`, or none) or
        went back to older data (fewer writes of this writer than it completed: restarted from an
        older save, a failover to a lagging replica). A `meta` key of another type is reported
        like any key that refuses writes, and the writes go on."""
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(keys.meta, EPOCH, uuid.uuid4().hex)
        pipe.hget(keys.meta, EPOCH)
        pipe.hset(keys.meta, mapping=self.meta)
        pipe.get(keys.written(self.writer_id))
        sent = [args for args, _options in pipe.command_stack]
        results = await pipe.execute(raise_on_error=False)
        await self._skip_refused(sent, results)
        created, epoch, _, written = results
        first = self._epoch is None
        if not isinstance(created, Exception) and not isinstance(epoch, Exception):
            if created or (epoch != self._epoch and not first):
                self._lose(
                    "the projection store holds no projection yet; staging it whole"
                    if first
                    else "the projection store lost its data (a restart without persistence, "
                    "a flush); re-staging every partition"
                )
            self._epoch = epoch
        if isinstance(written, Exception) or not self._completed or self.lost:
            return
        if self._count(written) < self._completed:
            self._lose(
                "the projection store holds older data than this worker wrote (restarted from "
                "an older save, or a failover to a lagging replica); re-staging every partition"
            )

    @staticmethod
    def _count(written: Any) -> int:
        """This writer's count of completed writes as Redis holds it (-1: none, or unreadable)."""
        try:
            return int(written)
        except (TypeError, ValueError):
            return -1

    def _lose(self, why: str) -> None:
        self.lost = True
        extra = {"writes_completed": self._completed}
        if self._epoch is None:
            log.info(why, extra=extra)
        else:
            log.warning(why, extra=extra)

    async def _skip_refused(self, sent: list[tuple[Any, ...]], results: list[Any]) -> None:
        """Raise the first error of a pipeline a retry may mend (`retried`); skip the commands
        Redis refused for good: a key of the projection holding another type (written by hand,
        say) refuses its writes until someone mends it, and retrying the whole batch for ever
        kept every other write out too: heartbeats, stream times, every other account. Each key
        that refused is logged (`_report`)."""
        refused = [
            (args, result)
            for args, result in zip(sent, results, strict=True)
            if isinstance(result, Exception)
        ]
        for _args, error in refused:
            if retried(error):
                raise error
        if refused:
            self.skipped_writes += len(refused)
            await self._report(refused)

    async def _report(self, refused: list[tuple[tuple[Any, ...], Exception]]) -> None:
        """Log the keys that refused writes: found by the error itself (a key a script built, see
        `scripts.NAMED_WRONGTYPE`) or by the type each key the commands declare holds; a refusal
        no key explains is logged with the error and the keys its command writes."""
        named: dict[str, tuple[str, str]] = {}  # key -> (type it holds, type the workers write)
        declared: dict[str, str] = {}  # key -> type the workers write, to be checked
        unexplained: list[tuple[list[str], Exception]] = []
        for args, error in refused:
            found = scripts.NAMED_WRONGTYPE.fullmatch(str(error))
            if found:
                named[found[3]] = (found[1], found[2])
            else:
                wanted = self._declared(args)
                declared.update(wanted)
                unexplained.append((list(wanted), error))
        held = await self._types(list(declared))
        wrong = {
            key: (held[key], want)
            for key, want in declared.items()
            if held.get(key, want) not in (want, "none")
        }
        for key, (kind, want) in {**wrong, **named}.items():
            self._log_key(key, f"WRONGTYPE: it holds a {kind} where the workers write a {want}")
        for written, error in unexplained:
            if not any(key in wrong for key in written):
                self._log_key(", ".join(written), f"{type(error).__name__}: {error}", UNEXPLAINED)

    def _declared(self, args: tuple[Any, ...]) -> dict[str, str]:
        """The keys a command writes, each with the type the workers write there."""
        command = shown(args[0]).upper()
        if command == "EVALSHA":
            names = {script.sha: name for name, script in self._scripts.items()}
            keys = [shown(key) for key in args[3 : 3 + int(args[2])]]
            return scripts.declared_types(names.get(shown(args[1]), ""), keys)
        return {shown(args[1]): COMMAND_TYPES.get(command, "none")} if len(args) > 1 else {}

    async def _types(self, keys: list[str]) -> dict[str, str]:
        """The type each key holds (left out: Redis did not say)."""
        if not keys:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        answers = await pipe.execute(raise_on_error=False)
        return {
            key: shown(kind)
            for key, kind in zip(keys, answers, strict=True)
            if not isinstance(kind, Exception)
        }

    def _log_key(self, key: str, what: str, advice: str | None = None) -> None:
        """Log that the writes to `key` are skipped and what to do (`advice`, by default
        `repair`'s), at most once per `REPORT_EVERY_S` (a busy account's key is written every
        half second)."""
        now = self.clock()
        last = self._reported.get(key)
        if last is not None and now - last < REPORT_EVERY_S:
            return
        if len(self._reported) >= 1000:
            self._reported.clear()
        self._reported[key] = now
        log.error(
            "projection writes to a key Redis refuses for good are skipped, the others go on",
            extra={"key": key, "error": what[:300], "repair": advice or repair(self.keys, key)},
        )

    def _commands(self, batch: Staged) -> Iterator[Callable[[Any], None]]:
        """One callable per write, each adding its commands to a pipeline (made as they are
        taken)."""
        for account_id, (as_of, encoded) in batch.snapshots.items():
            yield self._snapshot_command(as_of, orjson.loads(encoded), encoded, account_id in batch.restaged)
        for account_id, points in batch.points.items():
            # thinned against the newest staged first, as the script would leave them: a backfill
            # stages days of hourly points per write, most of which keep only their day's last
            for as_of, point in sorted(thin(points).values(), key=itemgetter(0)):
                restaged = (account_id, as_of) in batch.restaged_points
                yield self._history_command(account_id, as_of, history.as_written(point), restaged)
        for alert_id, alert in batch.alerts.items():
            yield self._alert_command(alert_id, alert)
        for partition, state in batch.partitions.items():
            yield self._partition_command(partition, state)
        now = time.time()
        for worker_id, stats in batch.workers.items():
            yield self._worker_command(worker_id, stats, now)

    def _eval(self, pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
        script = self._scripts[name]
        pipe.scripts.add(script)
        pipe.evalsha(script.sha, len(keys), *keys, *args)

    def _snapshot_command(
        self, as_of: int, snapshot: dict[str, Any], encoded: bytes, restaged: bool
    ) -> Callable[[Any], None]:
        keys = self.keys
        account_id = str(snapshot["account_id"])
        key_list = [
            keys.account(account_id),
            keys.summaries,
            *(keys.index(field) for field in INDEXES),
            keys.risk,
            *keys.band_indexes(),
            keys.owners,
            keys.segments,
        ]
        about = profile(snapshot)
        values = index_values(snapshot)
        args = [
            account_id,
            as_of,
            encoded,
            orjson.dumps(summary(snapshot)),
            BANDS.index(snapshot["band"]) + 1,
            len(BANDS),
            len(INDEXES),
            values["mrr"] if at_risk(snapshot) else "",
            str(about.get("owner") or ""),
            str(about.get("segment") or ""),
            keys.owner_prefix,
            keys.segment_prefix,
            "1" if restaged else "",
            LAYOUT,
            *(values[field] for field in INDEXES),
        ]
        return lambda pipe: self._eval(pipe, "snapshot", key_list, args)

    def _history_command(
        self, account_id: str, as_of: int, point: bytes, restaged: bool
    ) -> Callable[[Any], None]:
        key_list = [self.keys.history(account_id)]
        args = [as_of, point, history.FINE_DAYS * DAY, history.KEEP_DAYS * DAY, "1" if restaged else ""]
        return lambda pipe: self._eval(pipe, "history", key_list, args)

    def _alert_command(self, alert_id: str, staged: StagedAlert) -> Callable[[Any], None]:
        keys = self.keys
        account_id = staged.account_id
        key_list = [keys.alert_data, keys.alert_owner, keys.alerts, keys.account_alerts(account_id)]
        args = [
            alert_id,
            staged.raised_at,
            orjson.dumps(staged.alert),
            account_id,
            self.alert_limits.overall,
            self.alert_limits.per_account,
            keys.account_alerts_prefix,
        ]
        return lambda pipe: self._eval(pipe, "alert", key_list, args)

    def _partition_command(self, partition: int, state: PartitionState) -> Callable[[Any], None]:
        keys = self.keys
        key_list = [keys.partition(partition), keys.partitions]
        args = [partition, state.stream_time, state.sums, state.totals]
        return lambda pipe: self._eval(pipe, "partition", key_list, args)

    def _worker_command(self, worker_id: str, stats: dict[str, float], now: float) -> Callable[[Any], None]:
        keys = self.keys

        def command(pipe: Any) -> None:
            pipe.set(keys.worker(worker_id), orjson.dumps(stats), ex=WORKER_TTL_S)
            pipe.zadd(keys.workers, {worker_id: now})
            pipe.zremrangebyscore(keys.workers, "-inf", now - 10 * WORKER_TTL_S)

        return command
