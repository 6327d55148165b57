"""`Checkpoint`: a batch's effects are made durable in a fixed order before its input is acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from streamer.core.clock import DAY
from streamer.core.peers import PeerReference
from streamer.state.codec import decode_partition, decode_peers, encode_peers
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


class Changelogs:
    """The tables' changelog records: `written` returns once `confirmed` is set."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.confirmed = asyncio.Event()
        self.confirmed.set()

    async def written(self) -> None:
        await self.confirmed.wait()
        self.journal.append("changelog written")


class Store:
    def __init__(self, journal: Journal, partition: int) -> None:
        self.journal, self.partition = journal, partition
        self.calls: list[tuple[Any, Any]] = []

    async def stage(self, marks: Mapping[str, int] | None = None, handled: Any = None) -> Staged:
        self.journal.append(f"stage accounts {self.partition}")
        self.calls.append((dict(marks or {}), handled))
        return Staged(self.journal, self.partition)


class Staged:
    def __init__(self, journal: Journal, partition: int) -> None:
        self.journal, self.partition = journal, partition
        self.records: list[tuple[str, bytes]] = [(f"account-{partition}", b"")]

    async def write(self) -> int:
        self.journal.append(f"write accounts {self.partition}")
        return 1


def checkpoint(journal: Journal, *, fail_outputs: bool = False) -> tuple[Checkpoint, dict[int, Store]]:
    done = [FakeEvent(Message(topic, partition, offset)) for topic, partition, offset in FOUR]
    stores = {0: Store(journal, 0), 1: Store(journal, 1)}
    engine = SimpleNamespace(
        periods=SimpleNamespace(sums={}),
        totals=SimpleNamespace(sums=[]),
        clock=SimpleNamespace(stream_time=0),
        peers=SimpleNamespace(references=[]),
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
        done=done,
        applied={0: done[0], 1: done[3]},
        marks={0: {USAGE: 12, SUBS: 3}, 1: {USAGE: 7}},
        by_account={0: {"a": {USAGE: [10, 11]}}, 1: {"b": {USAGE: [7]}}},
        changelogs=Changelogs(journal),
    )
    return made, stores


async def test_the_steps_run_in_order_outputs_state_partition_record_acknowledgement_projection() -> None:
    journal = Journal()
    made, stores = checkpoint(journal)
    await made.commit()
    assert journal == [
        "stage accounts 0",  # prepared: each touched account encoded once, as it is now
        "stage accounts 1",
        "flush",  # 4. alerts, snapshots, dead letters acknowledged by the broker
        "write accounts 0",  # 5. the account records written
        "write accounts 1",
        "changelog written",  # 6. the account changelog records acknowledged
        "write clock-0",  # 7. the partition records
        "write clock-1",
        "changelog written",  # 8. acknowledged by the broker too
        f"ack {USAGE}[0]@10 {USAGE}[0]@11 {SUBS}[0]@3 {USAGE}[1]@7",  # 9. then the input
    ]
    assert stores[0].calls == [({USAGE: 12, SUBS: 3}, {"a": {USAGE: [10, 11]}})]


async def test_peer_references_are_stored_with_the_partition_record_when_a_midnight_added_one() -> None:
    journal = Journal()
    made, _ = checkpoint(journal)
    midnight = 20_000 * DAY
    references = [PeerReference(midnight, 19_990, {("*", "events_28d"): (1.0, 2.5)}, {"*": 2})]
    own = SimpleNamespace(**{**vars(made.engines[0]), "peers": SimpleNamespace(references=references)})
    made.engines = {0: own, 1: made.engines[1]}  # type: ignore[dict-item]
    await made.commit()
    assert journal[6:9] == ["write peers-0", "write clock-0", "write clock-1"]
    assert decode_peers(made.clocks_table["peers-0"]) == references
    journal.clear()
    await made.commit()  # no new midnight: not written again
    assert "write peers-0" not in journal
    references.append(PeerReference(midnight + DAY, 19_991, {}, {}))
    journal.clear()
    await made.commit()
    assert journal.count("write peers-0") == 1 and journal.count("write peers-1") == 0


async def test_peer_references_too_large_for_one_record_keep_the_newest_that_fit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A changelog record over the broker's limit fails the batch, and again after every restart:
    the record keeps the newest references that fit (a recovery rebuilds the others) or none."""
    from streamer.stream import checkpoint as module

    journal = Journal()
    made, _ = checkpoint(journal)
    midnight = 20_000 * DAY
    big = tuple(float(n) for n in range(101))
    references = [
        PeerReference(
            midnight + n * DAY, 19_990 + n, {("*", f"feature:{k}"): big for k in range(40)}, {"*": 2}
        )
        for n in range(3)
    ]
    one = len(encode_peers(references[-1:]))
    monkeypatch.setattr(module, "PEERS_RECORD_MAX_BYTES", 2 * one + 10)
    own = SimpleNamespace(**{**vars(made.engines[0]), "peers": SimpleNamespace(references=references)})
    made.engines = {0: own, 1: made.engines[1]}  # type: ignore[dict-item]
    with caplog.at_level("WARNING", logger=module.__name__):
        await made.commit()
    assert decode_peers(made.clocks_table["peers-0"]) == references[1:]
    assert [r.message for r in caplog.records] == [
        "peer references too large to store whole; a recovery rebuilds the rest"
    ]
    monkeypatch.setattr(module, "PEERS_RECORD_MAX_BYTES", one - 1)  # not even the newest fits
    references.append(PeerReference(midnight + 3 * DAY, 19_993, dict(references[0].groups), {"*": 2}))
    journal.clear()
    await made.commit()
    assert "write peers-0" not in journal and "write clock-0" in journal  # the batch still commits


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
    # nothing written: re-read after the restart, the batch's outputs are sent again
    assert journal == ["stage accounts 0", "stage accounts 1"]


async def test_the_input_is_acknowledged_only_once_the_broker_has_the_partition_records() -> None:
    """faust's producer flush returns with records still queued when one is slow to hand over;
    the checkpoint waits on the changelog records themselves."""
    journal = Journal()
    made, _ = checkpoint(journal)
    changelogs = made.changelogs
    assert isinstance(changelogs, Changelogs)
    changelogs.confirmed.clear()  # the broker has not acknowledged the account records yet
    commit = asyncio.ensure_future(made.commit())
    for _ in range(20):
        await asyncio.sleep(0)
    assert journal[2:] == ["flush", "write accounts 0", "write accounts 1"]  # no partition record yet
    changelogs.confirmed.set()
    await commit
    acked = next(i for i, line in enumerate(journal) if line.startswith("ack"))
    assert journal[acked - 1] == "changelog written" and journal[acked - 2] == "write clock-1"
