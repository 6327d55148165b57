"""The worker's tables: a checkpoint waits until the broker has each changelog record it wrote.

faust sends a table's changelog records through its producer buffer, and its `producer.flush()`
is not a barrier: the buffer's flush returns as soon as one record takes longer than 0.1 s to
be handed to the client (`ProducerBuffer.flush_atmost`), with the rest still queued. On a busy
machine, or while the client waits on a batch in flight after a broker restart, a checkpoint
then acknowledged messages whose account and partition records were not in Kafka yet, and
faust's own commit (which flushes the same way) committed their offsets. A worker that took
the partitions over from the changelog lacked that state.

`DurableTable` keeps the future of every changelog record it sends, and `written` waits for
the broker's acknowledgement of all of them: `Checkpoint` calls it before it writes a partition
record and again before it acknowledges the input.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import faust

from streamer.stream import table_keys
from streamer.stream.context import acted_as


class Changelogs(Protocol):
    """What a checkpoint waits on: every changelog record written so far is in Kafka."""

    async def written(self) -> None: ...

    def forget(self) -> None:
        """Stop waiting for the records written so far: they were dropped unsent (a membership
        that ended in doubt), and the next checkpoint's wait must not fail on them."""


class DurableTable(faust.Table[str, bytes]):
    """A faust table that can wait until the broker has every changelog record it sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unconfirmed: list[asyncio.Future[Any]] = []
        # faust takes the key codec from the key type (str: JSON), over the schema's, for the
        # changelog topic and the store alike: ours reads a key that is not JSON instead of
        # failing (see table_keys), the same bytes written.
        self.key_serializer = table_keys.CODEC

    def partition_for_key(self, key: Any) -> int:
        """The partition of the event the worker acts as (`context.acting_as`), which must be one
        of the changelog's.

        faust's own also checks, once per topic, that the event's topic has as many partitions
        as the changelog. Partitions an operator added to an input topic under a running worker
        then failed every table write routed by one of its messages (the check sees the new
        count), and the worker exited. The worker checks partition counts at its start and
        re-routes an event on an added partition to its account's, so routing needs only this.
        """
        event = acted_as()
        if event is None:
            raise TypeError(f"table {self.name}: written outside an event (see stream/context.py)")
        partition: int = event.message.partition
        count = self.partitions or self.app.conf.topic_partitions
        if not 0 <= partition < count:
            raise ValueError(
                f"table {self.name}: a write routed to partition {partition}, "
                f"but its changelog has {count} partitions"
            )
        return partition

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        sent = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self._unconfirmed.append(sent)
        return sent

    async def written(self) -> None:
        """Wait until the broker has acknowledged every changelog record sent so far. A record
        the producer gave up on raises here: the checkpoint fails before the acknowledgement,
        so the worker stops and its input is read again."""
        while self._unconfirmed:
            sent, self._unconfirmed = self._unconfirmed, []
            await asyncio.gather(*sent)

    def forget(self) -> None:
        """`Changelogs.forget`. Failed or not, none of them is waited for any more."""
        for sent in self._unconfirmed:
            sent.add_done_callback(_retrieved)
        self._unconfirmed = []


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a record dropped at the fence: its failure is expected, not logged


class TablesWritten:
    """`Changelogs` over several tables (the accounts and the clocks)."""

    def __init__(self, *tables: DurableTable) -> None:
        self.tables = tables

    async def written(self) -> None:
        for table in self.tables:
            await table.written()

    def forget(self) -> None:
        for table in self.tables:
            table.forget()


class NoChangelogs:
    """Tables without a changelog (the unit tests' dicts): nothing to wait for."""

    async def written(self) -> None:
        return None

    def forget(self) -> None:
        return None
