"""A batch's checkpoint: its effects made durable, then its input acknowledged, step by step.

After the scorer has applied one batch or several (alerts, dead letters and snapshots queued,
account state changed in memory; see `Scorer.checkpoint_every_s`), a checkpoint is taken in two
parts. `Checkpoint.prepare` captures what the batches changed, at once and without waiting, so
that the next batch may change the state in memory meanwhile:

1. the outputs queued so far are handed to their delivery (`Outputs.flush`, which takes them
   when called and delivers them after those flushed before);
2. each touched account is encoded, with the input offsets its state now contains;
3. each partition's record (stream clock, applied offsets, the re-routed copies it handled,
   dropping those below a floor whose copy is now behind the applied offsets) is encoded, and
   its peer references when a grid point added one.

`Checkpoint.complete` then makes them durable, waiting at each step:

4. `flush_outputs`: the broker has every alert, snapshot and dead letter (dead letters are
   sent again until it has them);
5. `write_accounts`: the account records go to the `accounts` table;
6. `flush_accounts`: the broker has those changelog records;
7. `write_partition_records`: the partition records go to the `clocks` table; one never
   claims an account write the broker does not have;
8. `flush_partition_records`: the broker has those too;
9. `acknowledge`: the batches' input messages are acknowledged; offsets are committed only up
   to acknowledged ones, so a worker killed before this step reads the batches again.

`commit` runs both parts back to back. Steps 6 and 8 wait on the changelog records themselves
(`streamer/stream/tables.py`), not on faust's producer flush, which can return with records
still queued. The Redis projection is outside the guarantee: the scorer stages it.

A crash between any two steps leaves Kafka with outputs and state at least as new as the
committed offsets, never older: the at-least-once guarantee in the README. The scorer completes
one checkpoint before it prepares the next (`Scorer._checkpoint`), so the tables receive the
records in the order they were prepared.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamer.core.engine import PartitionEngine
from streamer.core.peers import PeerReference
from streamer.state.codec import encode_partition, encode_peers_within
from streamer.state.partition import PartitionRecord
from streamer.stream.context import acting_as
from streamer.stream.membership import Fence
from streamer.stream.tables import Changelogs, NoChangelogs
from streamer.stream.topics import CHANGELOG_RECORD_MAX_BYTES

log = logging.getLogger(__name__)

# The peers record's share of a changelog record (the rest: its key and the batch's framing).
PEERS_RECORD_MAX_BYTES = CHANGELOG_RECORD_MAX_BYTES // 2

# per input topic, the offset below which every message of the partition was handled
Marks = Mapping[str, int]
# account -> topic -> offsets applied to the account in this batch
AppliedByAccount = Mapping[str, Mapping[str, Sequence[int]]]


class Outputs(Protocol):
    def flush(self) -> Awaitable[None]:
        """Take the outputs queued so far; the awaitable completes once the broker has them."""
        ...


class StagedWrites(Protocol):
    records: list[tuple[str, bytes]]  # (account id, record), in writing order

    async def write(self) -> int: ...


class AccountStore(Protocol):
    async def stage(
        self, marks: Marks | None = None, handled: AppliedByAccount | None = None
    ) -> StagedWrites: ...


@dataclass
class Checkpoint:
    """One or more batches' effects, captured by `prepare` and made durable by `complete`."""

    outputs: Outputs
    stores: Mapping[int, AccountStore]
    engines: Mapping[int, PartitionEngine]
    clocks_table: MutableMapping[str, bytes]
    records: Mapping[int, PartitionRecord]
    acknowledge_messages: Callable[[Sequence[Any]], None]
    done: Sequence[Any]  # every message the batches handled: applied, skipped or dead-lettered
    applied: Mapping[int, Any]  # partition -> one of its applied messages (routes table writes)
    marks: Mapping[int, Marks]
    by_account: Mapping[int, AppliedByAccount]
    # partition -> midnight of the newest peer reference in its stored record (kept across batches)
    peers_written: MutableMapping[int, int] = field(default_factory=dict)
    changelogs: Changelogs = field(default_factory=NoChangelogs)  # the tables' records in Kafka
    fence: Fence | None = None  # the tables are written only while the membership lease holds
    # captured by `prepare`
    _outputs_sent: Awaitable[None] | None = field(default=None, init=False)
    _accounts: dict[int, StagedWrites] = field(default_factory=dict, init=False)
    _partition_records: dict[int, list[tuple[str, bytes]]] = field(default_factory=dict, init=False)

    async def commit(self) -> None:
        """All the steps, in order (see the module docstring)."""
        await self.prepare()
        await self.complete()

    async def prepare(self) -> None:
        """Capture the outputs, the account records and the partition records as they are now
        (the caller changes none of them until this returns)."""
        self._outputs_sent = asyncio.ensure_future(self.outputs.flush())
        for partition in self.applied:
            self._accounts[partition] = await self.stores[partition].stage(
                self.marks[partition], self.by_account[partition]
            )
        self._stage_partition_records()

    def staged_accounts(self) -> dict[int, list[str]]:
        """Per partition, the accounts `prepare` staged (written by `complete`)."""
        return {partition: [key for key, _ in staged.records] for partition, staged in self._accounts.items()}

    async def complete(self) -> None:
        """Make what `prepare` captured durable, then acknowledge the input."""
        await self.flush_outputs()
        await self._fence_passed("account records")
        await self.write_accounts()
        await self.flush_accounts()
        await self._fence_passed("partition records")
        self.write_partition_records()
        await self.flush_partition_records()
        self.acknowledge()

    async def _fence_passed(self, what: str) -> None:
        """Wait while this worker's membership is in doubt (`Fence.passed`): a checkpoint in
        flight when the process stood still must not write over the partitions' new owner."""
        if self.fence is not None:
            await self.fence.passed(what)

    async def flush_outputs(self) -> None:
        """Outputs are in Kafka before the state says they were produced."""
        assert self._outputs_sent is not None, "prepare() first"
        await self._outputs_sent

    async def write_accounts(self) -> None:
        for partition, staged in self._accounts.items():
            with acting_as(self.applied[partition]):
                await staged.write()

    async def flush_accounts(self) -> None:
        """The account records are in Kafka before a partition record says what they contain."""
        if self.applied:
            await self.changelogs.written()

    def _stage_partition_records(self) -> None:
        handled: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for done in self.done:
            message = done.message
            handled[message.partition][message.topic].append(message.offset)
        for partition in self.applied:
            record, mine = self.records[partition], handled[partition]
            for topic, mark in self.marks[partition].items():
                record.offsets.advance(topic, mark, mine.get(topic, ()))
            record.copies.settle(record.offsets.contiguous_to)  # floors whose copies are behind
            writes = self._partition_records[partition] = []
            references = self.engines[partition].peers.references
            if references and self.peers_written.get(partition) != references[-1].tick:
                # Stored when a grid point added one, so that a recovery takes them as they are
                # instead of rebuilding each from every account. Not part of the delivery
                # guarantee: a recovery rebuilds whichever reference its record lacks.
                self._stage_peers(partition, references, writes)
                self.peers_written[partition] = references[-1].tick
            writes.append((f"clock-{partition}", encode_partition(record)))

    def _stage_peers(
        self, partition: int, references: Sequence[PeerReference], writes: list[tuple[str, bytes]]
    ) -> None:
        """The partition's references as one record within `PEERS_RECORD_MAX_BYTES` (a changelog
        record over the broker's limit would fail the whole batch, again at every restart)."""
        found = encode_peers_within(references, PEERS_RECORD_MAX_BYTES)
        stored = found[1] if found is not None else 0
        if stored < len(references):
            log.warning(
                "peer references too large to store whole; a recovery rebuilds the rest",
                extra={"partition": partition, "references": len(references), "stored": stored},
            )
        if found is not None:
            writes.append((f"peers-{partition}", found[0]))

    def write_partition_records(self) -> None:
        for partition, writes in self._partition_records.items():
            with acting_as(self.applied[partition]):
                for key, raw in writes:
                    self.clocks_table[key] = raw

    async def flush_partition_records(self) -> None:
        """The partition records are in Kafka before their messages are acknowledged: faust
        commits the acknowledged offsets, and a worker that takes the partition over from the
        changelog must find every committed message in the state."""
        if self.applied:
            await self.changelogs.written()

    def acknowledge(self) -> None:
        self.acknowledge_messages(self.done)


def acknowledge_each(messages: Sequence[Any]) -> None:
    """Acknowledge faust events (or anything with `ack()`) one by one."""
    for message in messages:
        message.ack()
