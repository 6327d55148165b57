"""`DurableTable`: a checkpoint can wait until the broker has every changelog record a table sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream.app import create_app
from streamer.stream.context import acting_as
from streamer.stream.tables import DurableTable, TablesWritten
from tests.fixtures import FakeEvent, Message


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


def test_a_write_is_routed_by_its_events_partition_whatever_its_topics_count_became(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator added partitions to an input topic under the worker: faust's own routing
    refused every write acting as one of its messages (the topic's count is not the changelog's),
    and the worker exited. A write is routed by the partition alone, one the changelog has."""
    app, accounts, clocks = tables(tmp_path)
    counts = {"subscriptions": 6, accounts.changelog_topic.get_topic_name(): 4}
    counts[clocks.changelog_topic.get_topic_name()] = 4
    monkeypatch.setattr(app.consumer, "topic_partitions", counts.get)
    with acting_as(FakeEvent(Message("subscriptions", 2, 0))):
        assert accounts.partition_for_key("acct-1") == clocks.partition_for_key("clock-2") == 2
    with acting_as(FakeEvent(Message("subscriptions", 5, 0))), pytest.raises(ValueError, match="has 4"):
        clocks.partition_for_key("clock-5")  # an added partition has no state: no record for it
    with pytest.raises(TypeError, match="outside an event"):
        accounts.partition_for_key("acct-1")
