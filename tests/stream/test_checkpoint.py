"""`Checkpoint`: a batch's effects are made durable in a fixed order before its input is acknowledged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from streamer.state.codec import decode_partition
from streamer.state.partition import PartitionRecord
from streamer.stream.checkpoint import Checkpoint
from tests.fixtures import FakeEvent, JournaledTable, Message

USAGE, SUBS = "in.usage", "in.subscriptions"
FOUR = [(USAGE, 0, 10), (USAGE, 0, 11), (SUBS, 0, 3), (USAGE, 1, 7)]  # the batch's messages


class Journal(list[str]):
    pass


class Outputs:
    def __init__(self, journal: Journal, fail: bool = False) -> None:
        self.journal, self.fail = journal, fail

    async def flush(self) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.journal.append("flush")


class Store:
    def __init__(self, journal: Journal, partition: int) -> None:
        self.journal, self.partition = journal, partition
        self.calls: list[tuple[Any, Any]] = []

    def flush(self, marks: Mapping[str, int] | None = None, handled: Any = None) -> int:
        self.journal.append(f"write accounts {self.partition}")
        self.calls.append((dict(marks or {}), handled))
        return 1


class Projection:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def snapshot(self, snapshot: dict[str, Any]) -> None: ...
    def alert(self, alert: dict[str, Any]) -> None: ...
    def worker(self, worker_id: str, stats: dict[str, float]) -> None: ...

    def partition(self, partition: int, sums: Any, totals: list[int], stream_time: int) -> None:
        self.journal.append(f"project {partition}")

    async def flush(self) -> None:
        self.journal.append("projection flush")


def checkpoint(journal: Journal, *, fail_outputs: bool = False) -> tuple[Checkpoint, dict[int, Store]]:
    done = [FakeEvent(Message(topic, partition, offset)) for topic, partition, offset in FOUR]
    stores = {0: Store(journal, 0), 1: Store(journal, 1)}
    engine = SimpleNamespace(
        periods=SimpleNamespace(sums={}),
        totals=SimpleNamespace(sums=[]),
        clock=SimpleNamespace(stream_time=0),
    )

    def acknowledge(messages: Sequence[Any]) -> None:
        journal.append(
            "ack " + " ".join(f"{m.topic}[{m.partition}]@{m.offset}" for m in (e.message for e in messages))
        )

    made = Checkpoint(
        outputs=Outputs(journal, fail=fail_outputs),
        stores=stores,
        engines={0: engine, 1: engine},  # type: ignore[dict-item]
        clocks_table=JournaledTable(journal),
        records={0: PartitionRecord(), 1: PartitionRecord()},
        acknowledge_messages=acknowledge,
        projection=Projection(journal),
        done=done,
        applied={0: done[0], 1: done[3]},
        marks={0: {USAGE: 12, SUBS: 3}, 1: {USAGE: 7}},
        by_account={0: {"a": {USAGE: [10, 11]}}, 1: {"b": {USAGE: [7]}}},
    )
    return made, stores


async def test_the_steps_run_in_order_outputs_state_partition_record_acknowledgement_projection() -> None:
    journal = Journal()
    made, stores = checkpoint(journal)
    await made.commit()
    assert journal == [
        "flush",  # 1. alerts, snapshots, dead letters acknowledged by the broker
        "write accounts 0",  # 2. each touched account once
        "write accounts 1",
        "flush",  # 3. the account changelog records acknowledged
        "write clock-0",  # 4. the partition records
        "write clock-1",
        f"ack {USAGE}[0]@10 {USAGE}[0]@11 {SUBS}[0]@3 {USAGE}[1]@7",  # 5. then the input
        "project 0",  # 6. the projection, outside the guarantee
        "project 1",
        "projection flush",
    ]
    assert stores[0].calls == [({USAGE: 12, SUBS: 3}, {"a": {USAGE: [10, 11]}})]


async def test_the_partition_record_lists_what_the_batch_handled() -> None:
    journal = Journal()
    made, _ = checkpoint(journal)
    made.marks = {0: {USAGE: 10, SUBS: 3}, 1: {USAGE: 7}}  # offset 11 is above the mark
    await made.commit()
    clocks = made.clocks_table
    record = decode_partition(clocks["clock-0"])
    assert record.offsets.contains(USAGE, 11) and record.offsets.contains(USAGE, 9)
    assert not record.offsets.contains(USAGE, 12)


async def test_nothing_is_written_or_acknowledged_when_the_outputs_did_not_reach_the_broker() -> None:
    journal = Journal()
    made, _ = checkpoint(journal, fail_outputs=True)
    with pytest.raises(ConnectionError):
        await made.commit()
    assert journal == []  # re-read after the restart: the batch's outputs are sent again
