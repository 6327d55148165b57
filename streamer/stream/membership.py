"""Whether this worker may still act as the group member its partitions were assigned to.

A worker that stood still past its session timeout (a stopped process, a frozen VM, a long
pause of the host) is dropped from the group and its partitions go to another worker. When it
resumes, its consumer learns so only at its next heartbeat, and faust revokes the partitions
only as the consumer rejoins: in between, a batch fetched before the pause was applied and its
state and snapshots written over the new owner's. Kafka fences nothing without transactions, so
the worker fences itself with a lease:

- the lease is renewed by every heartbeat the coordinator answers as a member's and by every
  assignment (the group has just accepted this member);
- it runs out after the session timeout less two heartbeat intervals, before the broker can have
  expired the member. A healthy worker heartbeats every interval, so only a process whose event
  loops stood still for most of a session gets there.

While the lease has run out the worker applies and writes nothing (`Fence`); the next
heartbeat either renews it (the member held: go on) or fails, and the consumer rejoins (the
rebalance drops what was applied meanwhile, never acknowledged).

Only the lease, not aiokafka's generation: aiokafka resets the generation before ordinary
revocations too, where the batches since the last checkpoint must still be written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator

log = logging.getLogger(__name__)

RENEWED = "_healthstream_heartbeat_ok"  # the coordinator's last successful heartbeat (monotonic)


class Membership:
    """The lease of one group member, renewed by its aiokafka group coordinator's heartbeats."""

    def __init__(
        self,
        coordinator: Callable[[], GroupCoordinator | None],
        session_timeout_s: float,
        heartbeat_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._coordinator = coordinator
        self.lease_s = session_timeout_s - 2 * heartbeat_interval_s
        self.clock = clock
        self._watched: GroupCoordinator | None = None
        self._joined = clock()  # the last assignment (`renew`)

    def renew(self) -> None:
        """The group assigned this member its partitions just now."""
        self._joined = self.clock()

    def problem(self) -> str | None:
        """Why this worker may not apply or write anything now, or None while its lease holds."""
        coordinator = self._watch()
        if coordinator is None:
            return None  # not started: no assignment to apply anything for either
        renewed = max(self._joined, float(getattr(coordinator, RENEWED)))
        since = self.clock() - renewed
        if since > self.lease_s:
            return f"no heartbeat succeeded for {since:.0f} s (the group may have moved its partitions)"
        return None

    def _watch(self) -> GroupCoordinator | None:
        """The coordinator, its heartbeats timestamped (once per coordinator: a restarted
        consumer has a new one, leased from the moment it is first seen)."""
        coordinator = self._coordinator()
        if coordinator is not None and coordinator is not self._watched:
            self._watched = coordinator
            setattr(coordinator, RENEWED, self.clock())
            beat = coordinator._do_heartbeat
            clock = self.clock

            async def timestamped() -> Any:
                succeeded = await beat()
                if succeeded:
                    setattr(coordinator, RENEWED, clock())
                return succeeded

            coordinator._do_heartbeat = timestamped
        return coordinator


class Fenced(Exception):
    """Writes given up: the membership was in doubt when a rebalance or a stop came."""


class Fence:
    """Holds this worker's applying and writing while its membership is in doubt (`Membership`).

    The scorer asks before it applies or checkpoints (`up`); the outputs' delivery and the
    checkpoint's table writes wait at it (`passed`), and so does every produce request
    (`faust_private.hold_produce_requests`), since a batch in flight when the process stood
    still goes on the moment it resumes. A rebalance (`rebalancing`) or a stop (`giving_up`)
    ends the wait with `Fenced`: what waited is dropped, never acknowledged, and read again by
    the partitions' owner. faust flushes the producer as a revocation begins, before the
    scorer hears of it: without `rebalancing` that flush waited for ever on the held requests."""

    def __init__(
        self,
        problem: Callable[[], str | None],
        rebalancing: Callable[[], bool] = lambda: False,
        poll_s: float = 0.1,
    ) -> None:
        self.problem = problem
        self.rebalancing = rebalancing
        self.poll_s = poll_s
        self.giving_up = False  # set by the scorer while a rebalance or a stop waits
        self.episodes = 0  # times the membership came into doubt
        self._since: float | None = None

    def up(self, what: str) -> bool:
        """Whether `what` must wait now; logged once per episode, and once it is over."""
        problem = self.problem()
        if problem is None:
            if self._since is not None:
                log.info(
                    "the membership lease holds again; applying and writing resume",
                    extra={"held_s": round(time.monotonic() - self._since, 1)},
                )
                self._since = None
            return False
        if self._since is None:
            self._since = time.monotonic()
            self.episodes += 1
            log.warning(
                "this worker may no longer own its partitions: it applies and writes nothing "
                "until a heartbeat renews its membership or the group rebalances",
                extra={"why": problem, "held_back": what},
            )
        return True

    async def passed(self, what: str) -> None:
        """Return once `what` may be written; raise `Fenced` if a rebalance or a stop comes
        while the membership is in doubt."""
        while self.up(what):
            if self.giving_up or self.rebalancing():
                raise Fenced(what)
            await asyncio.sleep(self.poll_s)
