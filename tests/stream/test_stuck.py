"""`RebalanceWatch`: a rebalance that does not end is logged once with where each task waits;
`recovery_loop_ended`: faust's table recovery loop that has ended ends the worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamer.stream.faust_private import recovery_loop_running
from streamer.stream.stuck import RebalanceWatch, recovery_loop_ended


async def held_by(event: asyncio.Event) -> None:
    await event.wait()


async def test_a_rebalance_past_its_limit_logs_each_task_and_where_it_waits_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = asyncio.Event()
    task = asyncio.ensure_future(held_by(event))
    task.set_name("the fetcher")
    await asyncio.sleep(0)
    watch = RebalanceWatch(stuck_after_s=120.0)

    def tasks() -> set[asyncio.Task[object]]:
        return {task}

    assert not watch.check(True, 1000.0, tasks)
    assert not watch.check(True, 1119.0, tasks)
    assert watch.check(True, 1121.0, tasks)
    assert not watch.check(True, 1300.0, tasks)  # once per rebalance
    (record,) = [r for r in caplog.records if "rebalance has not ended" in r.getMessage()]
    (where,) = record.tasks  # type: ignore[attr-defined]
    assert where.startswith("the fetcher: test_stuck.py:") and where.endswith(" held_by"), where
    assert record.rebalance_s == 121  # type: ignore[attr-defined]

    assert not watch.check(False, 1400.0, tasks)  # it ended: the next one is watched afresh
    assert not watch.check(True, 1500.0, tasks)
    assert watch.check(True, 1620.0, tasks)
    event.set()
    await task


def test_a_recovery_loop_that_started_and_no_longer_runs_ends_the_worker() -> None:
    assert recovery_loop_ended(started=False, running=False) is None  # not started yet
    assert recovery_loop_ended(started=True, running=True) is None
    ended = recovery_loop_ended(started=True, running=False)
    assert ended is not None and "recovery loop has ended" in ended


async def _restart_recovery(event: asyncio.Event) -> None:  # named as faust's loop
    await event.wait()


async def _execute_task(task: Any) -> None:  # as mode runs a service's tasks
    await task


async def test_the_recovery_loop_is_found_among_the_tasks_by_what_they_await() -> None:
    event = asyncio.Event()
    other = asyncio.ensure_future(held_by(event))
    loop = asyncio.ensure_future(_execute_task(_restart_recovery(event)))
    await asyncio.sleep(0)
    assert recovery_loop_running({other, loop})
    assert not recovery_loop_running({other})
    event.set()
    await asyncio.gather(other, loop)
    assert not recovery_loop_running({other, loop})
