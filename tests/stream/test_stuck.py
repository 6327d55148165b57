"""`RebalanceWatch`: a rebalance that does not end is logged once with where each task waits."""

from __future__ import annotations

import asyncio

import pytest

from streamer.stream.stuck import RebalanceWatch


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
