"""`DurableTable`: a checkpoint can wait until the broker has every changelog record a table sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream.app import create_app
from streamer.stream.tables import DurableTable, TablesWritten


def tables(tmp_path: Path) -> tuple[Any, DurableTable, DurableTable]:
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    accounts, clocks = (app.tables[name] for name in ("accounts", "clocks"))
    assert isinstance(accounts, DurableTable) and isinstance(clocks, DurableTable)
    return app, accounts, clocks


async def test_written_waits_until_the_broker_has_each_changelog_record(tmp_path: Path) -> None:
    _app, accounts, clocks = tables(tmp_path)
    # Queued in faust's producer buffer; nothing hands them to a broker in this test.
    first = accounts.send_changelog(0, "acct-1", b"state")
    second = clocks.send_changelog(0, "clock-0", b"record")
    waiting = asyncio.ensure_future(TablesWritten(accounts, clocks).written())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    first.set_result(None)
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the clocks record is not acknowledged yet
    second.set_result(None)
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(accounts.written(), 5)  # nothing left to wait for


async def test_a_record_the_producer_gave_up_on_fails_the_wait(tmp_path: Path) -> None:
    _app, accounts, _clocks = tables(tmp_path)
    lost = accounts.send_changelog(1, "acct-2", b"state")
    lost.set_exception(TimeoutError("the batch expired"))
    with pytest.raises(TimeoutError):  # the checkpoint fails before its acknowledgement
        await accounts.written()
