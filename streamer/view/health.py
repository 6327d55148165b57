"""`/healthz`: can the view read Redis, can Redis keep the projection, does the broker answer, and
how far behind are the workers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError, ResponseError

from streamer.core.clock import iso
from streamer.projection.redis_reader import ProjectionReader, Workers
from streamer.projection.stats import LAG_PREFIX
from streamer.stream.access import KafkaAccess
from streamer.stream.broker import probe
from streamer.view.errors import UNREADABLE, unreadable

log = logging.getLogger(__name__)

KAFKA_PROBE_TTL_S = 5.0
LOG_REPEAT_S = 60.0  # the same Redis error is logged at most this often


class Health:
    """Answers 200 while Redis is reachable (status `ok`, or `degraded` when the broker does not
    answer, no worker reported recently, a worker left input waiting with nothing committed for
    `worker_stall_s`, an input partition no reporting worker has listed for `worker_max_age_s`,
    Redis can lose or refuse the projection's writes (see
    `streamer.projection.memory`), or the projection holds a partition or worker stats the view
    cannot read; `problems` says which) and 503 when it is not."""

    def __init__(
        self,
        reader: ProjectionReader,
        kafka: KafkaAccess | None,
        worker_max_age_s: float,
        *,
        worker_stall_s: float = 60.0,
        kafka_probe: Callable[[KafkaAccess, float], bool] = probe,
        partitions: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.partitions = partitions  # the input topics' partitions, when known
        self.clock = clock
        self._uncovered_since: dict[int, float] = {}
        self._said: tuple[str, float] | None = None  # the Redis error last logged, and when
        self.kafka_access = kafka
        self.worker_max_age_s = worker_max_age_s
        self.worker_stall_s = worker_stall_s
        self.kafka_probe = kafka_probe
        self._kafka: tuple[float, bool] | None = None
        self._probing = asyncio.Lock()  # one probe at a time: a burst of /healthz shares its answer

    async def kafka(self) -> bool | None:
        """Whether the broker answers a metadata request (cached a few seconds); None: not checked."""
        if self.kafka_access is None:
            return None
        async with self._probing:
            now = time.monotonic()
            if self._kafka is None or now - self._kafka[0] > KAFKA_PROBE_TTL_S:
                answered = await asyncio.to_thread(self.kafka_probe, self.kafka_access, 2.0)
                self._kafka = (now, answered)
            return self._kafka[1]

    async def check(self) -> tuple[int, dict[str, Any]]:
        redis: dict[str, Any] = {"reachable": False}
        reported = Workers({}, {})
        problems: list[str] = []
        try:
            redis["latency_ms"] = round(await self.reader.ping(), 2)
            redis["reachable"] = True
            reported = await self.reader.workers(self.worker_max_age_s)
            stream_time = await self.reader.checked_stream_time()  # unreadable totals: a problem
        except (RedisError, OSError) as error:  # its text (an address, a user name) goes to the log alone
            redis["error"] = type(error).__name__
            problems.append(self.store_problem(error))
            stream_time = None
        except UNREADABLE as error:
            problems.append(unreadable(error))
            stream_time = None
        else:
            memory = await self.reader.memory()
            if memory is not None:
                redis["memory"] = {
                    "used_bytes": memory.used,
                    "maxmemory_bytes": memory.limit,
                    "maxmemory_policy": memory.policy,
                    "evicted_keys": memory.evicted_keys,
                }
                problem = memory.problem()
                if problem is not None:
                    problems.append(problem)
        kafka = await self.kafka()
        if kafka is False:
            problems.append("the broker does not answer")
        problems += [
            unreadable_stats(worker_id, bad) for worker_id, bad in sorted(reported.unreadable.items())
        ]
        workers = reported.stats
        if redis["reachable"] and not workers:
            problems.append(f"no worker reported in the last {self.worker_max_age_s:g} s")
        stalled = self.stalled(workers)
        for worker_id in stalled:
            waiting, stalled_s = int(workers[worker_id].get("lag", 0.0)), workers[worker_id]["stalled_s"]
            problems.append(
                f"worker {worker_id} has left {waiting:,} input messages waiting and committed none "
                f"for {stalled_s:.0f} s: its log says what it waits for"
            )
        orphaned = self.orphaned(workers)
        if orphaned:
            problems.append(
                f"input partitions {', '.join(map(str, orphaned))} have had no worker reporting them "
                f"for {self.worker_max_age_s:g} s or more: their worker is hung or gone (the group "
                "moves its partitions once it misses its heartbeats); its log says which"
            )
        lag = sum(stats.get("lag", 0.0) for stats in workers.values()) if workers else None
        if not redis["reachable"]:
            status = "down"
        elif problems:
            status = "degraded"
        else:
            status = "ok"
        body: dict[str, Any] = {
            "status": status,
            "problems": problems,
            "redis": redis,
            "kafka": {"checked": kafka is not None, "reachable": kafka},
            "workers": len(workers),
            "consumer_lag": None if lag is None else int(lag),
            "stalled_workers": stalled,
            "as_of": None if stream_time is None else iso(stream_time),
        }
        return (503 if status == "down" else 200), body

    def store_problem(self, error: RedisError | OSError) -> str:
        """The problem of a Redis that did not answer /healthz's reads, or refused one (a command
        the view's user may not run); Redis's error goes to the log alone (once per `LOG_REPEAT_S`
        while it stays the same): /healthz needs no token, and the error names the store's
        address ("Error 111 connecting to 127.0.0.1:6379")."""
        refused = isinstance(error, ResponseError)
        problem = f"the projection store (Redis) {'refused a read' if refused else 'is unreachable'}"
        said, now = f"{type(error).__name__}: {error}", self.clock()
        if self._said is None or self._said[0] != said or now - self._said[1] >= LOG_REPEAT_S:
            self._said = (said, now)
            log.warning(problem, extra={"error": said})
        return f"{problem}: the view's log says why"

    def orphaned(self, workers: dict[str, dict[str, float]]) -> list[int]:
        """The input partitions no recently reporting worker has listed for `worker_max_age_s`
        at least (a rebalance moves partitions between reports: the grace). A hung worker whose
        consumer thread still heartbeats keeps its partitions, and /healthz said `ok` with the
        other workers' lag while half the input stood still. Nothing while no worker reports
        (that is its own problem) or the partition count is not known."""
        if self.partitions is None or not workers:
            self._uncovered_since.clear()
            return []
        covered = {
            int(key[len(LAG_PREFIX) :])
            for stats in workers.values()
            for key in stats
            if key.startswith(LAG_PREFIX) and key[len(LAG_PREFIX) :].isdigit()
        }
        now = self.clock()
        since = self._uncovered_since
        for partition in range(self.partitions):
            if partition in covered:
                since.pop(partition, None)
            else:
                since.setdefault(partition, now)
        return sorted(p for p, first in since.items() if now - first >= self.worker_max_age_s)

    def stalled(self, workers: dict[str, dict[str, float]]) -> list[str]:
        """The workers that have left input waiting with nothing committed for `worker_stall_s`."""
        return sorted(
            worker_id
            for worker_id, stats in workers.items()
            if stats.get("stalled_s", 0.0) >= self.worker_stall_s
        )


def unreadable_stats(worker_id: str, bad: dict[str, str]) -> str:
    """The problem of a worker whose stats in Redis hold what the view cannot read (`bad`: each
    stat with the type it holds, "" for the whole value)."""
    what = ", ".join(f"{name!r} is {kind}" if name else kind for name, kind in bad.items())
    return unreadable(f"the stats of worker {worker_id}: {what}")
