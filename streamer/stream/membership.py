"""Whether this worker may still act as the group member its partitions were assigned to.

A worker that stood still past its session timeout (a stopped process, a frozen VM, a long
pause of the host) is dropped from the group and its partitions go to another worker. When it
resumes, its consumer learns so only at its next heartbeat, and faust revokes the partitions
only as the consumer rejoins: in between, a batch fetched before the pause was applied and its
state and snapshots written over the new owner's. Kafka fences nothing without transactions, so
the worker fences itself with a lease:

- the lease is renewed by every heartbeat the coordinator answers as a member's, for the
  generation that heartbeat named;
- it runs out after the session timeout less one heartbeat interval, before the broker can have
  expired the member. A healthy worker heartbeats every interval, so only a process whose event
  loops stood still for most of a session gets there;
- a generation no heartbeat has confirmed yet (just assigned, or reset by a failed heartbeat)
  holds no lease either: a member stopped right after its assignment resumes with nothing to
  prove it is still in the group. That doubt is quiet (not logged): every worker has it until
  the first heartbeat after each join, one heartbeat interval at most.

While in doubt the worker applies and writes nothing (`Fence`); the next heartbeat either
renews the lease (the member held: go on) or fails, and the consumer rejoins (the rebalance
drops what was applied meanwhile, never acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from aiokafka.consumer.group_coordinator import GroupCoordinator

log = logging.getLogger(__name__)

RENEWED = "_healthstream_heartbeat_ok"  # (monotonic time, generation) of the last successful heartbeat
NO_GENERATION = -1  # aiokafka's generation once the group dropped this member


class Doubt(NamedTuple):
    """Why this worker may not apply or write now."""

    why: str
    alarming: bool  # False: a membership the group has just given, not yet confirmed by a heartbeat


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
        # The broker expires a member a session after the last heartbeat it received; the answer
        # reaches this worker later, so one heartbeat interval is left for that (and a heartbeat
        # interval of a third of the session still lets one heartbeat be late).
        self.lease_s = session_timeout_s - heartbeat_interval_s
        self.clock = clock
        self._watched: GroupCoordinator | None = None

    def problem(self) -> Doubt | None:
        """Why this worker may not apply or write anything now, or None while its lease holds.

        A generation the heartbeats have not confirmed yet is in doubt too, quietly: the
        assignment of a member stopped right after it was made is no proof the member is
        still in the group when it resumes (a lease renewed at the assignment, as first
        written, let such a member write over the new owner)."""
        coordinator = self._watch()
        if coordinator is None:
            return None  # not started: no assignment to apply anything for either
        renewed: tuple[float, int] | None = getattr(coordinator, RENEWED)
        generation = coordinator.generation
        if renewed is None:
            return Doubt("no heartbeat yet since the consumer joined the group", alarming=False)
        at, confirmed = renewed
        since = self.clock() - at
        stale = since > self.lease_s
        if generation == confirmed and not stale:
            return None
        if stale and generation in (confirmed, NO_GENERATION):
            why = f"no heartbeat succeeded for {since:.0f} s (the group may have moved its partitions)"
            return Doubt(why, alarming=True)
        return Doubt(f"no heartbeat yet in generation {generation}", alarming=False)

    def _watch(self) -> GroupCoordinator | None:
        """The coordinator, its successful heartbeats recorded (once per coordinator: a
        restarted consumer has a new one)."""
        coordinator = self._coordinator()
        if coordinator is not None and coordinator is not self._watched:
            self._watched = coordinator
            setattr(coordinator, RENEWED, None)
            beat = coordinator._do_heartbeat
            clock = self.clock

            async def recorded() -> Any:
                # When the request leaves, not when its answer is read: an answer the broker gave
                # just before the process stood still is read after it resumes, and timed then it
                # renewed the lease of a member the group may have dropped meanwhile. The broker
                # times the session from the request's arrival, after this.
                sent, generation = clock(), coordinator.generation
                succeeded = await beat()
                if succeeded:
                    setattr(coordinator, RENEWED, (sent, generation))
                return succeeded

            coordinator._do_heartbeat = recorded
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
        problem: Callable[[], Doubt | None],
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
        """Whether `what` must wait now. An alarming doubt is logged once per episode, and so is
        its end; a quiet one (a new generation awaiting its first heartbeat) is not."""
        doubt = self.problem()
        if doubt is None:
            if self._since is not None:
                log.info(
                    "the membership lease holds again; applying and writing resume",
                    extra={"held_s": round(time.monotonic() - self._since, 1)},
                )
                self._since = None
            return False
        if doubt.alarming and self._since is None:
            self._since = time.monotonic()
            self.episodes += 1
            log.warning(
                "this worker may no longer own its partitions: it applies and writes nothing "
                "until a heartbeat renews its membership or the group rebalances",
                extra={"why": doubt.why, "held_back": what},
            )
        return True

    async def passed(self, what: str) -> None:
        """Return once `what` may be written; raise `Fenced` if a rebalance or a stop comes
        while the membership is in doubt."""
        while self.up(what):
            if self.giving_up or self.rebalancing():
                raise Fenced(what)
            await asyncio.sleep(self.poll_s)
