"""Rebalances that cannot end: one that does not is logged once with where each of the worker's
tasks waits; faust's recovery loop gone ends the worker.

faust ends a rebalance when its table recovery has read every changelog partition to its end;
a recovery that receives nothing holds the worker's input for good, and faust's own warning
("No event received for active tp ...") says which partition, not what holds it. The log line
names what every task of the event loop is waiting in, which is what a fix needs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

STUCK_AFTER_S = 120.0  # a rebalance this long is logged with its tasks, once per rebalance


def waiting_in(task: asyncio.Task[object], frames: int = 3) -> str:
    """The task's name and the innermost `frames` frames it is suspended in (file:line function)."""
    stack = task.get_stack()
    where = " < ".join(
        f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_name}"
        for frame in reversed(stack[-frames:])
    )
    return f"{task.get_name()}: {where or 'no frame'}"


class RebalanceWatch:
    """Notes how long the current rebalance has lasted; past `stuck_after_s` it logs where each
    task waits, once per rebalance."""

    def __init__(self, stuck_after_s: float = STUCK_AFTER_S) -> None:
        self.stuck_after_s = stuck_after_s
        self._since: float | None = None
        self._logged = False

    def check(self, rebalancing: bool, now: float, tasks: Callable[[], set[asyncio.Task[object]]]) -> bool:
        """Whether this call logged the tasks of a rebalance that has lasted too long."""
        if not rebalancing:
            self._since, self._logged = None, False
            return False
        if self._since is None:
            self._since = now
        if self._logged or now - self._since < self.stuck_after_s:
            return False
        self._logged = True
        log.warning(
            "a rebalance has not ended; each task of the worker and what it waits in",
            extra={
                "rebalance_s": round(now - self._since),
                "tasks": sorted(waiting_in(task) for task in tasks() if not task.done()),
            },
        )
        return True


def recovery_loop_ended(started: bool, running: bool) -> str | None:
    """Why the worker cannot go on, or None: faust's table recovery loop started and no longer runs.

    The loop runs every recovery a rebalance asks for. A step of one that times out
    (`broker_request_timeout`: a broker away that long during a recovery) ends the loop without
    a word, as a stop would: that rebalance, and every later one, then waits for a recovery that
    never comes, and the worker holds its input for good. Better to end the process (a restart
    resumes from the committed offsets)."""
    if not started or running:
        return None
    return (
        "faust's table recovery loop has ended (a step of a recovery timed out, which ends it "
        "without a word): no rebalance can end any more"
    )
