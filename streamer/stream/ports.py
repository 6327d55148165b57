"""What the scorer needs from the Kafka shell: the messages it is fed, the consumer's view of its
input partitions (`Offsets`: `stream/offsets.py` in the worker) and where results go (`Sink`:
`stream/sink.py`). Tests feed it fakes of the same shapes (`tests/stream/world.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from streamer.stream.membership import Doubt


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float
    generation_id: int | None
    origin: bytes | None  # the value of its `healthstream-origin` header (`streamer/stream/origin.py`)


TopicPartition = tuple[str, int]


class Offsets(Protocol):
    """The consumer's view of the input topic partitions."""

    def generation(self) -> int | None:
        """The consumer group generation of the current assignment."""
        ...

    def settled(self) -> bool:
        """False while a rebalance (and the table recovery after it) is under way."""
        ...

    def member_problem(self) -> Doubt | None:
        """Why this worker may not act as the member its partitions were assigned to now (no
        heartbeat succeeded for most of a session, or none yet in this generation:
        `stream/membership.py`); None while its membership lease holds."""
        ...

    def assigned(self) -> set[TopicPartition]:
        """The topic partitions this worker owns right now."""
        ...

    def highwater(self, topic: str, partition: int) -> int | None:
        """The end offset the last fetch reported (None before one)."""
        ...

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The end offsets as the broker reports them now (for a reader of committed
        transactions: the last stable offsets)."""
        ...

    async def log_ends(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The end offsets as the broker reports them now, the records of transactions not yet
        committed included (the high watermarks)."""
        ...

    async def restart_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Where consumption of each partition (re)started at the assignment."""
        ...

    async def start_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The first offsets the broker still has (older ones were deleted by retention)."""
        ...

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read the partition again from `offset`."""
        ...

    def read_position(self, topic: str, partition: int) -> tuple[int, int] | None:
        """(since, reach): the consumer handed over every record before `since` that it read,
        and read on to `reach` without a record (transaction markers, aborted or compacted
        records in between). None: not known."""
        ...

    async def created_again(self, topic: str) -> None:
        """The input topic was deleted and created again: give it the input topics' settings
        (created by an operator or by the broker on demand, it has the broker's defaults)."""
        ...

    def start_over(self, topic: str, partition: int, start: int | None = None) -> None:
        """Forget the consumer's reads, acknowledgements and commit of a partition whose topic
        was deleted and created again (they were the old topic's): reading goes on from `start`,
        the new topic's first offset, or a `seek` follows."""
        ...

    async def commit_start(self, topic: str, partition: int, offset: int) -> None:
        """Set the group's offset of a partition whose topic was created again to `offset`, its
        start, once the partition's record has forgotten the old topic's (the group held the old
        topic's committed offset, and an assignment sought there past the new one's messages)."""
        ...

    def acknowledge_passed(self, topic: str, partition: int, start: int, stop: int) -> None:
        """Let commits pass offsets `start..stop-1`: they hold no record, or the stored state
        has them (never delivered since the assignment, so never acknowledged otherwise)."""
        ...


class Sink(Protocol):
    """Where results go: Kafka output topics in the worker, lists in tests."""

    def alert(self, alert: dict[str, Any]) -> None: ...
    def snapshot(self, snapshot: dict[str, Any]) -> None: ...
    def dead_letter(self, record: dict[str, Any]) -> None: ...
    def reroute(self, topic: str, key: bytes, value: bytes, partition: int, origin: bytes) -> None: ...
    def flush(self) -> Awaitable[None]: ...
    async def discard(self) -> None:
        """Drop the outputs not yet delivered (`Scorer._drop_unwritten`)."""
