"""The event loop's stalls, as the worker reports them."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from streamer.stream.loop_watch import WARN_S, LoopWatch


async def test_a_blocking_step_shows_as_a_stall_to_each_reader_once() -> None:
    watch = LoopWatch(("progress", "stats"), every_s=0.01)
    watching = asyncio.create_task(watch.run())
    try:
        await asyncio.sleep(0.05)
        watch.longest("progress"), watch.longest("stats")  # the start, forgotten
        time.sleep(0.3)  # a step that never lets the loop turn

        async def noted() -> None:  # at the watch's next wake-up
            while watch._longest["stats"] < 0.25:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(noted(), 30)
        assert watch.longest("progress") >= 0.25  # however busy the machine: at least the block
        assert watch.longest("stats") >= 0.25  # each reader has its own window
        assert watch.longest("stats") == 0.0  # forgotten once read
    finally:
        watching.cancel()


def test_a_long_stall_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch(("progress",))
    with caplog.at_level(logging.INFO, logger="streamer.stream.loop_watch"):
        watch.note(WARN_S / 2)
        assert not caplog.records
        watch.note(WARN_S + 0.5)
    assert [(r.levelname, r.getMessage(), r.stall_s) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("WARNING", "the event loop stood still", WARN_S + 0.5)
    ]
    assert watch.longest("progress") == WARN_S + 0.5
