"""Every private faust and aiokafka name the worker relies on, listed and checked in one place.

faust-streaming 0.15.x and aiokafka 0.14.x are pinned, and these names are not their public API:
an upgrade may rename or reshape them without notice. The rest of `streamer/` reaches them only
through this module (the names below, `committed_offsets`, `topic_partitions`). `problems()`
says which are missing or have another shape; the worker checks at start-up and a unit test
checks in CI, so an upgrade fails loudly instead of silently losing the guarantees that depend
on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

import faust
import faust.app.base
import faust.streams
import faust.tables
import faust.types.tuples
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTP
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import AIOKafkaConnection
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaConnectionError
from aiokafka.producer.message_accumulator import MessageAccumulator, MessageBatch
from aiokafka.producer.sender import Sender
from aiokafka.producer.transaction_manager import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    PidAndEpoch,
    TransactionManager,
)
from aiokafka.util import create_future
from faust.assignor import PartitionAssignor
from faust.assignor.cluster_assignment import ClusterAssignment
from faust.assignor.copartitioned_assignor import CopartitionedAssignor
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

# faust's "current event": table reads and writes go to the partition of the event it holds.
current_event = faust.streams._current_event
# The lock faust holds while it records an acknowledgement (the input lane's too).
ack_lock = faust.types.tuples.ack_lock


@dataclass(frozen=True)
class PrivateName:
    """One private faust name: where it lives, the parameters we call or override it with, and
    what of ours depends on it."""

    owner: type | ModuleType
    name: str
    parameters: tuple[str, ...] | None  # None: not a callable (an attribute or a context var)
    used_by: str

    def problem(self) -> str | None:
        """What is wrong with it in the installed faust, or None."""
        where = f"{getattr(self.owner, '__qualname__', None) or self.owner.__name__}.{self.name}"
        if not hasattr(self.owner, self.name):
            return f"{where} is missing (used by {self.used_by})"
        if self.parameters is None:
            return None
        found: Callable[..., object] = getattr(self.owner, self.name)
        names = tuple(inspect.signature(found).parameters)
        if names != self.parameters:
            return f"{where}{names} no longer takes {self.parameters} (used by {self.used_by})"
        return None


DROP_UNSENT = "stream/sink.py: drop the records of a membership that ended in doubt"
RECOVERY_ENDED = "stream/consumer.py: a table recovery that ends after the next rebalance began ends nothing"
WRITE_WHILE_LEASED = "stream/consumer.py: a produce request is written only while the membership lease holds"

NAMES = (
    PrivateName(
        faust_consumer.ThreadDelegateConsumer,
        "_commit",
        ("self", "offsets"),
        "stream/offsets.py: the group's offset of an input topic created again, set to its start",
    ),
    PrivateName(
        GroupCoordinator,
        "_do_heartbeat",
        ("self",),
        "stream/membership.py: successful heartbeats renew the membership lease",
    ),
    PrivateName(
        faust_aiokafka.AIOKafkaConsumerThread,
        "_consumer",
        None,
        "stream/consumer.py: the group coordinator whose heartbeats lease the membership",
    ),
    PrivateName(
        faust_aiokafka.Consumer,
        "_wait_next_records",
        ("self", "timeout"),
        "stream/consumer.py: drop fetches that overlapped a seek",
    ),
    PrivateName(
        faust_aiokafka.Consumer,
        "getmany",
        ("self", "timeout"),
        "stream/consumer.py: read again the changelog records of a fetch it dropped undelivered",
    ),
    PrivateName(
        faust_aiokafka.Consumer,
        "_is_changelog_tp",
        ("self", "tp"),
        "stream/consumer.py: let changelog records through",
    ),
    PrivateName(
        faust_aiokafka.Consumer,
        "_add_gap",
        ("self", "tp", "offset_from", "offset_to"),
        "stream/consumer.py: count and log offset gaps",
    ),
    PrivateName(
        faust_aiokafka.Consumer,
        "_new_offset",
        ("self", "tp"),
        "stream/consumer.py: never commit past an input offset not acknowledged",
    ),
    PrivateName(
        faust_aiokafka.AIOKafkaConsumerThread,
        "_create_worker_consumer",
        ("self", "transport"),
        "stream/consumer.py: the input consumer's short fetch wait",
    ),
    PrivateName(
        faust_aiokafka.AIOKafkaConsumerThread,
        "_fetch_records",
        ("self", "consumer", "active_partitions", "timeout", "max_records"),
        "stream/consumer.py: the positions a fetch left, for reading dropped changelog records again",
    ),
    PrivateName(
        faust_aiokafka.AIOKafkaConsumerThread,
        "_ensure_consumer",
        ("self",),
        "stream/consumer.py: fetch positions (read_position)",
    ),
    PrivateName(
        faust_aiokafka.AIOKafkaConsumerThread,
        "_commit",
        ("self", "offsets"),
        "stream/consumer.py: skip a commit of partitions all revoked meanwhile",
    ),
    PrivateName(faust.App, "_new_transport", ("self",), "stream/consumer.py: install our consumer"),
    PrivateName(faust.App, "on_rebalance_start", ("self",), RECOVERY_ENDED),
    PrivateName(faust.App, "on_rebalance_end", ("self",), RECOVERY_ENDED),
    PrivateName(Recovery, "_generation_id", None, RECOVERY_ENDED),
    PrivateName(Recovery, "signal_recovery_start", None, RECOVERY_ENDED),
    PrivateName(Recovery, "_restart_recovery", None, "stream/app.py: the worker ends with the recovery loop"),
    PrivateName(
        PartitionAssignor,
        "_perform_assignment",
        ("self", "cluster", "member_metadata"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        PartitionAssignor,
        "_get_client_metadata",
        ("metadata",),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        PartitionAssignor,
        "_get_copartitioned_groups",
        ("topics", "cluster", "subscriptions"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        PartitionAssignor,
        "_update_member_urls",
        ("self", "clients_metadata"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        PartitionAssignor,
        "_global_table_standby_assignments",
        ("self", "assignments", "partitions_by_topic"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        PartitionAssignor,
        "_protocol_assignments",
        ("self", "assignments", "cl_distribution", "tp_distribution", "topic_groups"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        PartitionAssignor,
        "_get_changelog_distribution",
        ("self", "assignments"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        PartitionAssignor,
        "_get_external_topic_distribution",
        ("self", "assignments"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        ClusterAssignment,
        "add_client",
        ("self", "client", "subscription", "metadata"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        ClusterAssignment,
        "topics",
        ("self",),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        ClusterAssignment,
        "copartitioned_assignments",
        ("self", "copartitioned_topics"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        CopartitionedAssignor,
        "__init__",
        ("self", "topics", "cluster_asgn", "num_partitions", "replicas", "capacity"),
        "stream/assignor.py: balance the input partitions by load",
    ),
    PrivateName(
        faust_aiokafka.Producer,
        "_settings_extra",
        ("self",),
        "stream/consumer.py: turn on the producer's idempotence",
    ),
    PrivateName(
        faust.tables.TableManager,
        "on_start",
        ("self",),
        "stream/consumer.py: start the tables without faust's one-second sleep",
    ),
    PrivateName(
        faust.tables.TableManager,
        "_update_channels",
        ("self",),
        "stream/consumer.py: start the tables without faust's one-second sleep",
    ),
    PrivateName(
        faust.Table,
        "send_changelog",
        ("self", "partition", "key", "value", "key_serializer", "value_serializer"),
        "stream/tables.py: a checkpoint waits for its changelog records",
    ),
    PrivateName(faust.streams, "_current_event", None, "stream/context.py: route table writes"),
    PrivateName(
        faust.app.base,
        "venusian",
        None,
        "stream/app.py: declare the agent and timers without autodiscovery marks",
    ),
    PrivateName(faust.types.tuples, "ack_lock", None, "stream/consumer.py: acknowledge input records"),
    PrivateName(
        faust_aiokafka.Producer,
        "_producer",
        None,
        "stream/sink.py: renew the producer id after a failed delivery",
    ),
    PrivateName(
        Sender,
        "_maybe_wait_for_pid",
        ("self",),
        "stream/sink.py: the sender asks for a new producer id before its next send",
    ),
    PrivateName(
        Sender,
        "_send_produce_req",
        ("self", "node_id", "batches"),
        "stream/membership.py: no produce request leaves while the membership is in doubt",
    ),
    PrivateName(
        MessageAccumulator,
        "fail_all",
        ("self", "exception"),
        "stream/clients.py: close a producer whose stop did not finish",
    ),
    PrivateName(MessageBatch, "drain_ready", ("self",), DROP_UNSENT),
    PrivateName(MessageBatch, "failure", ("self", "exception"), DROP_UNSENT),
    PrivateName(AIOKafkaClient, "_get_conn", ("self", "node_id", "group", "no_hint"), WRITE_WHILE_LEASED),
    PrivateName(
        AIOKafkaClient,
        "fetch_all_metadata",
        ("self",),
        "stream/dead_letters.py: the dead-letter topic's partition count",
    ),
)

# Set in the consumer's __init__, so not visible on the class: checked in its source instead.
COMMITTED_OFFSET = "_committed_offset"
CONSUMER_STATE = {
    COMMITTED_OFFSET: "stream/offsets.py and stream/consumer.py: where re-reads start",
    "_acked": "stream/consumer.py: acknowledge input records (what faust commits)",
    "_acked_index": "stream/consumer.py: acknowledge input records",
    "_read_offset": "stream/consumer.py: the input lane's read position",
    "_gap": "stream/consumer.py: forgotten with the rest when an input topic is created again",
    "_buffered_partitions": "stream/consumer.py: which partitions the input lane delivers",
    "_waiting_for_ack": "stream/consumer.py: wake faust's commit after acknowledgements",
}


# Set in aiokafka's AIOKafkaProducer.__init__ and TransactionManager.__init__: checked in their source.
AIOKAFKA_PRODUCER_STATE = {
    "_txn_manager": "stream/sink.py: renew the producer id after a failed delivery",
    "_message_accumulator": "stream/clients.py: close a producer whose stop did not finish",
    "_sender": "stream/clients.py: close a producer whose stop did not finish",
}
CONNECTION_STATE = {"_writer": WRITE_WHILE_LEASED}
ACCUMULATOR_STATE = {"_batches": DROP_UNSENT}
FAUST_PRODUCER_STATE = {"buffer": DROP_UNSENT}
PRODUCER_BUFFER_STATE = {"pending": DROP_UNSENT}  # set in its __post_init__
SENDER_STATE = {
    name: "stream/membership.py: a produce request given up at the fence frees its node and partitions"
    for name in ("_in_flight", "_muted_partitions")
}
TRANSACTION_MANAGER_STATE = {
    name: "stream/sink.py: renew the producer id after a failed delivery"
    for name in ("_pid_and_epoch", "_pid_waiter", "_sequence_numbers")
}

# Set in aiokafka's AIOKafkaConsumer.__init__: checked in its source too.
AIOKAFKA_CONSUMER_STATE = {
    "_client": "stream/dead_letters.py: the dead-letter topic's partition count",
    "_coordinator": "stream/consumer.py: the group coordinator whose heartbeats lease the membership",
    "_fetch_max_wait_ms": "stream/consumer.py: the input consumer's short fetch wait",
    "_isolation_level": "stream/consumer.py: the input consumer reads committed transactions only",
    "_subscription": "stream/consumer.py: fetch positions (read_position)",
}


def recovery_started(app: faust.App) -> bool:
    """Whether faust's table recovery service has started (its loop runs from then on)."""
    return bool(cast(Any, app.tables).recovery.started)


def recovery_loop_running(tasks: Iterable[asyncio.Task[Any]]) -> bool:
    """Whether one of `tasks` runs faust's table recovery loop (`Recovery._restart_recovery`):
    its coroutine, or one it awaits (mode runs a service's tasks inside its `_execute_task`)."""
    return any(not task.done() and "_restart_recovery" in _awaited(task.get_coro()) for task in tasks)


def _awaited(coro: object, depth: int = 8) -> set[str]:
    """The names of a coroutine and of the coroutines it awaits in turn (`depth` at most)."""
    names: set[str] = set()
    while coro is not None and len(names) < depth:
        code = getattr(coro, "cr_code", None)
        if code is None:
            break  # not a coroutine (a future, a generator): nothing more to name
        names.add(code.co_name)
        coro = getattr(coro, "cr_await", None)
    return names


def recovery_pending(app: faust.App) -> str | None:
    """Why the table recovery of the current assignment has not run yet, or None: it was asked
    for and has not started, or the last one asked for was for another generation."""
    recovery = cast(Recovery, cast(Any, app.tables).recovery)
    if recovery.signal_recovery_start.is_set():
        return "the recovery of the current assignment has not started"
    if recovery._generation_id != app.consumer_generation_id:
        return "the last recovery asked for was of another generation"
    return None


def committed_offsets(consumer: object) -> Mapping[TP, int]:
    """faust's record of the group's committed offsets: set at its seek after each assignment and
    advanced as it commits (empty before the consumer has one)."""
    committed: Mapping[TP, int] = getattr(consumer, COMMITTED_OFFSET, {})
    return committed


async def commit(consumer: object, offsets: Mapping[TP, int]) -> bool:
    """Commit `offsets` for the group as they are, past faust's own rule (it commits only past
    the offsets it acknowledged, never below the committed one); whether the commit was made."""
    made: bool = await cast(Any, consumer)._commit(offsets)
    return made


def fetch_position(consumer: AIOKafkaConsumer, tp: TP) -> int | None:
    """The consumer's fetch position of `tp` (the offset after what it returned last, past any
    transaction markers it skipped), or None when it has none. `AIOKafkaConsumer.position` is
    a coroutine that may ask the broker; this only reads what the consumer holds."""
    subscription: Any = consumer._subscription.subscription
    if subscription is None or subscription.assignment is None:
        return None
    state = subscription.assignment.state_value(KafkaTP(tp.topic, tp.partition))
    if state is None or not state.has_valid_position:
        return None
    position: int = state.position
    return position


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int] | None:
    """The partitions of `topic` as the broker has them now (None for a topic it does not know).

    A consumer without a subscription keeps no metadata for the topic and has no public call to
    ask for one: this is its client's own metadata request."""
    client: Any = consumer._client
    metadata = await client.fetch_all_metadata()
    partitions: set[int] | None = metadata.partitions_for_topic(topic)
    return partitions


def renew_producer_id(producer: object) -> bool:
    """Have aiokafka's idempotent producer (under faust's `producer`) take a new producer id
    before it sends again, with every partition's sequence number back at 0; False when it is
    not started or not idempotent.

    A batch that failed for good (the broker refused it: too large for the topic, say) had taken
    its sequence numbers, so the broker refused every later batch of that partition as out of
    order, for ever: aiokafka does not reset them as Java's client does (KIP-360). A worker that
    waits for its outputs then stood still after the cause was gone, until a restart. The
    sender's loop asks the broker for an id before it sends when it has none. Batches already
    sent keep the id and sequence they were sent with, so aiokafka's own retries of them stay
    valid."""
    return _renew(getattr(producer, "_producer", None))


def _renew(client: Any) -> bool:
    """`renew_producer_id` on aiokafka's producer `client` itself."""
    manager: Any = getattr(client, "_txn_manager", None)
    if manager is None or manager.transactional_id is not None:
        return False
    manager._pid_and_epoch = PidAndEpoch(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
    manager._pid_waiter = create_future()
    manager._sequence_numbers.clear()
    return True


def hold_produce_requests(
    client: AIOKafkaProducer, held: Callable[[], Awaitable[None]], writable: Callable[[], bool]
) -> None:
    """Have every produce request of aiokafka's `client` await `held()` before it is sent. When
    `held` raises, or the producer's unsent records were dropped meanwhile (`drop_unsent`: the
    request carries records from before), the request's batches fail with that exception
    unsent, its node and partitions are freed as a sent request frees them, and the producer
    takes a new id (those batches had taken sequence numbers: `renew_producer_id`).

    `held()` returns before the request is built, encoded and written: a process stopped in
    between wrote it the moment it resumed, unchecked. So `writable()` is asked again as its
    bytes are handed to the socket (`_write_checked`)."""
    state: Any = client
    sender = state._sender
    send = sender._send_produce_req
    _write_checked(state.client, writable)

    async def held_then_sent(node_id: int, batches: Mapping[Any, Any]) -> None:
        drops = _drops(state)
        try:
            await held()
            if _drops(state) != drops:
                raise getattr(state, DROPPED)[1]
        except Exception as exc:
            for batch in batches.values():
                batch.failure(exception=exc)
            sender._in_flight.discard(node_id)
            for tp in batches:
                sender._muted_partitions.discard(tp)
            _renew(state)
            return
        await send(node_id, batches)

    sender._send_produce_req = held_then_sent


PRODUCE_API_KEY = b"\x00\x00"  # a request's first header field, after its 4-byte size
WRITE_CHECKED = "_healthstream_write_checked"


def _write_checked(kafka_client: Any, writable: Callable[[], bool]) -> None:
    """Have every connection of aiokafka's `kafka_client` refuse to write a produce request
    unless `writable()`: an OSError as the write's own, so the connection closes, the request
    fails with a retriable KafkaConnectionError, and its batches go back to the queue, where
    the next produce request meets the fence (`hold_produce_requests`). Other requests pass."""
    get_conn = kafka_client._get_conn

    async def checked_conn(*args: Any, **kwargs: Any) -> Any:
        conn = await get_conn(*args, **kwargs)
        writer = None if conn is None else conn._writer
        if writer is not None and not getattr(writer, WRITE_CHECKED, False):
            write = writer.write

            def checked(data: bytes) -> None:
                if data[4:6] == PRODUCE_API_KEY and not writable():
                    raise OSError("the membership came into doubt as a produce request was written")
                write(data)

            writer.write = checked
            setattr(writer, WRITE_CHECKED, True)
        return conn

    kafka_client._get_conn = checked_conn


# On aiokafka's producer: (how many times `drop_unsent` dropped its records, the exception it
# failed them with), read by the produce-request hold.
DROPPED = "_healthstream_dropped"


def _drops(client: object) -> int:
    drops: tuple[int, BaseException] | None = getattr(client, DROPPED, None)
    return 0 if drops is None else drops[0]


def drop_unsent(producer: object, exc: BaseException) -> int:
    """Fail with `exc` every record faust's `producer` holds that no produce request carries
    yet: the table changelog records in faust's send buffer and aiokafka's batches not yet
    drained. A produce request still waiting at the fence with older records fails as it is
    released (`hold_produce_requests`). Returns how many records were dropped.

    A send that waited for room in a dropped batch goes on, as if the batch had been sent, and
    puts its record in a new one: the next drop takes it. Failed instead, it would raise in
    faust's send-buffer task, which ends the worker.

    For a worker whose membership ended in doubt: its fence failed the produce requests one at
    a time while the group rebalanced, each then waiting for a new producer id, and the batches
    still queued behind them went out once the new generation's lease held, over the state and
    snapshots of the partitions' new owner."""
    dropped, state = 0, cast(Any, producer)
    pending: asyncio.Queue[Any] = state.buffer.pending
    while not pending.empty():
        message = pending.get_nowait()
        if not message.done():
            message.set_exception(exc)
            message.exception()  # retrieved: whoever waits on it is told by the exception
            dropped += 1
    client = state._producer
    if client is not None:
        batches = client._message_accumulator._batches
        for queued in batches.values():
            for batch in queued:
                dropped += batch.record_count
                batch.drain_ready()
                batch.failure(exception=exc)
        batches.clear()
        setattr(client, DROPPED, (_drops(client) + 1, exc))
    return dropped


async def abort_producer(producer: AIOKafkaProducer) -> None:
    """Close a producer whose `stop()` did not finish: fail what it still holds, stop its sender
    and close its connections.

    `stop()` first waits until every batch is delivered; cut short (the broker stalled or
    throttled it), it leaves the producer marked closed, so it is never called again, with its
    sender, its metadata task and its connections running, and retrying, for as long as the
    process lives."""
    state: Any = producer
    state._message_accumulator.fail_all(KafkaConnectionError("the producer was given up on"))
    sender = state._sender.sender_task
    if sender is not None:
        sender.cancel()
    await producer.client.close()  # its in-flight requests fail, so the sender's end is quick
    if sender is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


class _NoMarks:
    """Stands in for faust's `venusian` module while the worker declares its agent and timers:
    `attach` marks nothing, the rest is venusian's own."""

    def __init__(self, venusian: Any) -> None:
        self._venusian = venusian

    def __getattr__(self, name: str) -> Any:
        return getattr(self._venusian, name)

    @staticmethod
    def attach(*_args: Any, **_kwargs: Any) -> None:
        return None


@contextlib.contextmanager
def without_autodiscovery_marks() -> Iterator[None]:
    """faust marks each agent and timer it declares for venusian's autodiscovery
    (`app.discover()`), and the mark reads the declaring frame's source information:
    `inspect.getmodule` resolved the real path of every loaded module's file, 0.23 of the 0.31
    CPU seconds that building the worker's app took (one agent, five timers). The worker's app is
    built by hand and never autodiscovers, so within this block the marks are skipped; the
    agent and timers are registered with the app as ever."""
    app_module: Any = faust.app.base  # its `venusian` is an import, not an export
    venusian = app_module.venusian
    app_module.venusian = _NoMarks(venusian)
    try:
        yield
    finally:
        app_module.venusian = venusian


def _unset(cls: type, state: Mapping[str, str], library: str, method: str = "__init__") -> list[str]:
    """The attributes of `state` that `cls.__init__` (or `method`) no longer sets, with what uses each."""
    source = inspect.getsource(getattr(cls, method))
    return [
        f"{library}'s {cls.__name__} no longer sets {name} (used by {used_by})"
        for name, used_by in state.items()
        if f"self.{name}" not in source
    ]


def problems() -> list[str]:
    """Every private name that is missing or has another shape in the installed faust/aiokafka."""
    found = [problem for name in NAMES if (problem := name.problem()) is not None]
    found += _unset(faust_consumer.Consumer, CONSUMER_STATE, "faust")
    found += _unset(AIOKafkaConsumer, AIOKAFKA_CONSUMER_STATE, "aiokafka")
    found += _unset(AIOKafkaProducer, AIOKAFKA_PRODUCER_STATE, "aiokafka")
    found += _unset(TransactionManager, TRANSACTION_MANAGER_STATE, "aiokafka")
    found += _unset(Sender, SENDER_STATE, "aiokafka")
    found += _unset(MessageAccumulator, ACCUMULATOR_STATE, "aiokafka")
    found += _unset(AIOKafkaConnection, CONNECTION_STATE, "aiokafka")
    found += _unset(faust_producer.Producer, FAUST_PRODUCER_STATE, "faust")
    found += _unset(faust_producer.ProducerBuffer, PRODUCER_BUFFER_STATE, "faust", "__post_init__")
    if not hasattr(faust_consumer.Consumer, "_n_acked"):
        found.append("faust's Consumer no longer counts _n_acked (used by stream/consumer.py)")
    return found
