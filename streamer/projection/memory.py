"""Can the projection store keep what the workers write? Redis's memory limit and eviction policy.

Every key of the projection lives without a TTL (only a worker's stats expire), so Redis keeps it
unless its `maxmemory-policy` evicts any key at the limit (`allkeys-*`): then accounts, index
entries and alerts disappear without a word, and a view shows a portfolio with holes. With the
default `noeviction` Redis instead refuses writes at the limit: the workers stage them (nothing is
lost, see `redis_writer`) until it has room. Read from `INFO`, which managed Redis services allow
where they refuse `CONFIG`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

NEARLY_FULL = 0.9  # share of maxmemory from which the store counts as nearly full


class Trouble(Enum):
    """What keeps the store from holding the projection (the value names it in logs and `/healthz`)."""

    evicts = "evicts"
    nearly_full = "nearly_full"


@dataclass(frozen=True, slots=True)
class StoreMemory:
    """Redis's memory figures, as `INFO memory` and `INFO stats` give them."""

    used: int  # bytes in use (used_memory)
    limit: int  # maxmemory in bytes; 0: no limit
    policy: str  # maxmemory_policy
    evicted_keys: int  # keys evicted since Redis started (any key, not only the projection's)

    @property
    def trouble(self) -> Trouble | None:
        """`evicts` when keys without a TTL can be evicted at the limit; `nearly_full` when, with a
        policy that keeps them, the store uses `NEARLY_FULL` of its limit or more."""
        if not self.limit:
            return None  # no limit: nothing is evicted and no write is refused for memory
        if self.policy.startswith("allkeys-"):
            return Trouble.evicts
        if self.used >= NEARLY_FULL * self.limit:
            return Trouble.nearly_full
        return None

    def problem(self) -> str | None:
        """What an operator should know and do, in one line; None when the store is fine."""
        trouble = self.trouble
        if trouble is Trouble.evicts:
            return (
                f"Redis evicts keys at its memory limit (maxmemory-policy {self.policy}, maxmemory "
                f"{_mib(self.limit)}): projected accounts and alerts can disappear without a word; "
                "set maxmemory-policy to noeviction (or a volatile-* policy)"
            )
        if trouble is Trouble.nearly_full:
            return (
                f"Redis uses {self.used / self.limit:.0%} of its memory limit ({_mib(self.used)} of "
                f"{_mib(self.limit)}): at the limit it refuses the workers' writes, which wait in "
                "their memory until it has room; raise maxmemory"
            )
        return None


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


async def read_memory(redis: Redis) -> StoreMemory | None:
    """The store's memory figures; None when Redis does not answer, refuses INFO (managed
    services may deny it to an application user) or gives a figure that is not a number. Never
    raises: whether the projection is readable is for the caller's own requests to say."""
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.info("memory")
        pipe.info("stats")
        memory, stats = await pipe.execute()
        return StoreMemory(
            used=int(memory.get("used_memory", 0)),
            limit=int(memory.get("maxmemory", 0)),
            policy=str(memory.get("maxmemory_policy", "noeviction")),
            evicted_keys=int(stats.get("evicted_keys", 0)),
        )
    except (RedisError, OSError, ValueError):
        return None


class MemoryWatch:
    """Logs when the store's trouble starts, changes or ends (a worker checks every few seconds;
    a log line per check would drown the rest)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.trouble: Trouble | None = None

    async def check(self) -> None:
        """Read the figures and log a change; never raises (the projection never stops a worker),
        and an unreachable store is the writer's to report."""
        found = await read_memory(self.redis)
        if found is None:
            return
        if found.trouble is self.trouble:
            return
        if found.trouble is not None:
            log.error(
                "projection store cannot keep the projection",
                extra={"trouble": found.trouble.value, "problem": found.problem()},
            )
        else:
            log.info("projection store memory fine again", extra={"was": self.trouble and self.trouble.value})
        self.trouble = found.trouble
