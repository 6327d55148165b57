"""A batch's checkpoint: its effects made durable, then its input acknowledged, step by step.

After the scorer has applied one batch or several (alerts, dead letters and snapshots sent or
queued, account state changed in memory; see `Scorer.checkpoint_every_s`), `Checkpoint.commit`
runs these steps, each a method, in this order:

1. `flush_outputs`: wait until the broker has every alert, snapshot and dead letter (dead
   letters are sent again until it has them).
2. `write_accounts`: write each touched account once to the `accounts` table, with the input
   offsets its state now contains.
3. `flush_accounts`: wait until the broker has those changelog records.
4. `write_partition_records`: write each partition's record (stream clock, applied offsets) to
   the `clocks` table; it never claims an account write the broker does not have.
5. `flush_partition_records`: wait until the broker has those too.
6. `acknowledge`: acknowledge the batch's input messages; offsets are committed only up to
   acknowledged ones, so a worker killed before this step reads the batch again.
7. `project`: stage the partitions' sums for the Redis projection and flush it (best effort,
   outside the delivery guarantee: the projection is rebuilt from the engines).

Steps 3 and 5 wait on the changelog records themselves (`streamer/stream/tables.py`), not on
faust's producer flush, which can return with records still queued.

A crash between any two steps leaves Kafka with outputs and state at least as new as the
committed offsets, never older: the at-least-once guarantee in the README.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamer.core.engine import PartitionEngine
from streamer.projection.port import Projection
from streamer.state.codec import encode_partition, encode_peers
from streamer.state.partition import PartitionRecord
from streamer.stream.context import acting_as
from streamer.stream.tables import Changelogs, NoChangelogs

# per input topic, the offset below which every message of the partition was handled
Marks = Mapping[str, int]
# account -> topic -> offsets applied to the account in this batch
AppliedByAccount = Mapping[str, Mapping[str, Sequence[int]]]


class Outputs(Protocol):
    def flush(self) -> Awaitable[None]: ...


class AccountStore(Protocol):
    def flush(self, marks: Marks | None = None, handled: AppliedByAccount | None = None) -> int: ...


@dataclass
class Checkpoint:
    """One batch's effects, ready to be made durable by `commit`."""

    outputs: Outputs
    stores: Mapping[int, AccountStore]
    engines: Mapping[int, PartitionEngine]
    clocks_table: MutableMapping[str, bytes]
    records: Mapping[int, PartitionRecord]
    acknowledge_messages: Callable[[Sequence[Any]], None]
    projection: Projection
    done: Sequence[Any]  # every message the batches handled: applied, skipped or dead-lettered
    applied: Mapping[int, Any]  # partition -> one of its applied messages (routes table writes)
    marks: Mapping[int, Marks]
    by_account: Mapping[int, AppliedByAccount]
    # partition -> midnight of the newest peer reference in its stored record (kept across batches)
    peers_written: MutableMapping[int, int] = field(default_factory=dict)
    changelogs: Changelogs = field(default_factory=NoChangelogs)  # the tables' records in Kafka

    async def commit(self) -> None:
        """All the steps, in order (see the module docstring)."""
        await self.flush_outputs()
        self.write_accounts()
        await self.flush_accounts()
        self.write_partition_records()
        await self.flush_partition_records()
        self.acknowledge()
        await self.project()

    async def flush_outputs(self) -> None:
        """Outputs are in Kafka before the state says they were produced."""
        await self.outputs.flush()

    def write_accounts(self) -> None:
        for partition, message in self.applied.items():
            with acting_as(message):
                self.stores[partition].flush(self.marks[partition], self.by_account[partition])

    async def flush_accounts(self) -> None:
        """The account records are in Kafka before a partition record says what they contain."""
        if self.applied:
            await self.changelogs.written()

    def write_partition_records(self) -> None:
        handled: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for done in self.done:
            message = done.message
            handled[message.partition][message.topic].append(message.offset)
        for partition, message in self.applied.items():
            record, mine = self.records[partition], handled[partition]
            for topic, mark in self.marks[partition].items():
                record.offsets.advance(topic, mark, mine.get(topic, ()))
            with acting_as(message):
                self._write_peers(partition)
                self.clocks_table[f"clock-{partition}"] = encode_partition(record)

    def _write_peers(self, partition: int) -> None:
        """Store the partition's peer references when a grid point added one (a recovery takes
        them as they are instead of rebuilding each from every account). Not part of the
        delivery guarantee: a recovery rebuilds whichever reference its record lacks."""
        references = self.engines[partition].peers.references
        if references and self.peers_written.get(partition) != references[-1].tick:
            self.clocks_table[f"peers-{partition}"] = encode_peers(references)
            self.peers_written[partition] = references[-1].tick

    async def flush_partition_records(self) -> None:
        """The partition records are in Kafka before their messages are acknowledged: faust
        commits the acknowledged offsets, and a worker that takes the partition over from the
        changelog must find every committed message in the state."""
        if self.applied:
            await self.changelogs.written()

    def acknowledge(self) -> None:
        self.acknowledge_messages(self.done)

    async def project(self) -> None:
        for partition in self.applied:
            engine = self.engines[partition]
            self.projection.partition(
                partition, engine.periods.sums, engine.totals.sums, engine.clock.stream_time
            )
        await self.projection.flush()


def acknowledge_each(messages: Sequence[Any]) -> None:
    """Acknowledge faust events (or anything with `ack()`) one by one."""
    for message in messages:
        message.ack()
