"""Publish a file of contract events to the input topics, keyed by account, optionally rate-limited.

Keeps the file's order within each partition number, across the four topics: the worker's
merge applies a partition's events in (event time, topic, offset) order and lets a topic that
has reached its end offset stop holding the others back, so an older event appended after a
newer one of another topic of the same partition arrives late for the merge (the state
converges within the allowed lateness, but alerts depend on the order they saw). One produce
request carries batches for several partitions and the broker appends them one after another,
so a reader can see one topic's newer event while the older one of another topic is still
unwritten. Hence: a message goes out only when every earlier message of its partition number
on another topic is acknowledged (messages of one topic partition are pipelined freely: the
idempotent producer keeps their order, retries included).

Survives a broker restart: every message is kept until the broker acknowledged it; when the
oldest unacknowledged one fails or makes no progress for `STALL_S`, the producer is replaced
and every unacknowledged message is sent again, in file order and under the same rule, once the
broker answers (acknowledged ones are not sent again). One the broker had written just before
it went away may be written twice (a new producer is a new idempotence session; the worker
ignores a repeated `event_id`); none is lost. When the broker stays away longer than
`timeout_s`, `BrokerUnavailable` says so and how far the file got.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streamer.contract.decode import JSON_WHITESPACE, Rejected, decode_event
from streamer.contract.events import EVENT_FAMILY
from streamer.partitioning import partition_of
from streamer.settings import Settings
from streamer.stream.access import KafkaAccess
from streamer.stream.broker import REFUSALS, BrokerUnavailable, raise_if_refused, refused
from streamer.stream.clients import stop_quietly
from streamer.stream.topics import ensure_topics

__all__ = ["BrokerUnavailable", "Interrupted", "ReplaySummary", "publish", "route"]

log = logging.getLogger(__name__)

STALL_S = 10.0  # the oldest unacknowledged message may take this long before we call it a stall
WINDOW = 20_000  # at most this many messages in flight (kept for a resend)
RETRY_PAUSE_S = 1.0


@dataclass
class ReplaySummary:
    sent: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    first_skipped: tuple[int, str] | None = None  # (line number, why) of the first line skipped
    resent: int = 0  # messages sent again after a stall (possibly duplicates)
    stalls: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def route(line: bytes, settings: Settings) -> tuple[str, bytes] | None:
    """(topic, key) for a line, or None when it names no known event type.

    A line orjson cannot read (a valid event may carry an ignored field holding 1e400) is
    routed by the contract's decoder, so no valid event is skipped."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            event = decode_event(line)
        except Rejected:
            return None
        return settings.topic(EVENT_FAMILY[event.event_type]), event.account_id.encode()
    try:
        family = EVENT_FAMILY[value["event_type"]]
        key = str(value["account_id"]).encode()
    except Exception:
        return None
    return settings.topic(family), key


def unroutable(line: bytes) -> str:
    """Why `route` found no topic and key for a line (what `streamer offline` dead-letters it for)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            decode_event(line)
        except Rejected as rejected:
            return rejected.reason
        return "unreadable"
    if not isinstance(value, dict) or value.get("event_type") not in EVENT_FAMILY:
        return "no known event_type"
    return "no account_id"


@dataclass
class _Pending:
    topic: str
    key: bytes
    value: bytes
    partition: int
    future: asyncio.Future[object] | None = None  # None: not handed to a producer (yet)

    @property
    def acknowledged(self) -> bool:
        future = self.future
        return future is not None and future.done() and not future.cancelled() and future.exception() is None


@dataclass
class _Lane:
    """The messages of one partition number handed over since its last change of topic."""

    topic: str
    in_flight: deque[_Pending] = field(default_factory=deque)  # acknowledged in this order


class Interrupted(Exception):
    """`publish` stopped before the end of its lines because it was asked to (Ctrl-C)."""


def _unreachable(settings: Settings, seconds: float, detail: str) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker accepted events at {settings.kafka_bootstrap} for {round(seconds, 1):g} s "
        f"({detail}); "
        "start it (`streamer local up`, `docker compose up -d kafka`) or point "
        "HEALTHSTREAM_KAFKA_BOOTSTRAP / --bootstrap at it, then run replay again "
        "(events already published are ignored by the worker as repeats)"
    )


async def _with_deadline(
    settings: Settings, timeout_s: float, what: str, attempt: Callable[[], Awaitable[object]]
) -> None:
    """Run `attempt` until it succeeds or `timeout_s` passed."""
    started = time.monotonic()
    while True:
        remaining = timeout_s - (time.monotonic() - started)
        try:
            async with asyncio.timeout(max(remaining, 0.1)):
                await attempt()
            return
        except REFUSALS as error:  # the broker answered: waiting for it cannot help
            raise refused(KafkaAccess.of(settings), error, "replaying events") from None
        except (KafkaError, OSError, TimeoutError) as error:
            log.debug("broker not ready", extra={"error": repr(error)})
            await raise_if_refused(KafkaAccess.of(settings), min(10.0, timeout_s), "replaying events")
        if time.monotonic() - started + RETRY_PAUSE_S > timeout_s:
            raise _unreachable(settings, timeout_s, what)
        await asyncio.sleep(RETRY_PAUSE_S)


class _Sender:
    """One producer at a time, the unacknowledged messages in file order, and the stall clock."""

    def __init__(
        self,
        settings: Settings,
        timeout_s: float,
        on_stall: Callable[[float | None], None],
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.on_stall = on_stall
        self.stall_s = min(STALL_S, max(timeout_s / 3, 1.0))
        self.pending: deque[_Pending] = deque()
        self.lanes: dict[int, _Lane] = {}  # by partition number
        self.partition_counts: dict[str, int] = {}  # by topic, from the broker's metadata
        self.producer: AIOKafkaProducer | None = None
        self.acked = 0
        self.resent = 0
        self.stalls = 0

    def _new_producer(self) -> AIOKafkaProducer:
        # No linger: a batch lingers from its first message, so with one a later event could
        # ride an older batch of another partition and reach Kafka before an earlier one.
        # Without it, what accumulates while a request is in flight goes out together in the
        # next one, so messages are appended in the order of the file across topics (the order
        # the worker's merge relies on to give offline's answers while events are published).
        return AIOKafkaProducer(
            **KafkaAccess.of(self.settings).client_options(),
            linger_ms=0,
            max_batch_size=512 * 1024,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=int(self.stall_s * 1000),
        )

    async def _start_producer(self) -> None:
        producer = self._new_producer()
        try:
            await producer.start()
            await self._wait_for_leaders(producer)
        except BaseException:
            await stop_quietly(producer)
            raise
        self.producer = producer

    async def _wait_for_leaders(self, producer: AIOKafkaProducer) -> None:
        """Until every partition of the input topics has a leader (fresh topics need a moment)."""
        for topic in self.settings.input_topics.values():
            while True:
                partitions = await producer.partitions_for(topic)
                cluster = producer.client.cluster
                leaders = [cluster.leader_for_partition(TopicPartition(topic, p)) for p in partitions]
                if partitions and all(leader is not None and leader >= 0 for leader in leaders):
                    self.partition_counts[topic] = len(partitions)
                    break
                await asyncio.sleep(0.2)
                await producer.client.force_metadata_update()

    async def start(self) -> None:
        await _with_deadline(
            self.settings, self.timeout_s, "could not create the topics", lambda: ensure_topics(self.settings)
        )
        await _with_deadline(self.settings, self.timeout_s, "could not connect", self._start_producer)

    async def close(self) -> None:
        if self.producer is not None:
            await stop_quietly(self.producer)
            self.producer = None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        # The partition the default partitioner would pick, chosen here so that the order
        # rule (module docstring) knows it before the message leaves.
        item = _Pending(topic, key, value, partition_of(key.decode(), self.partition_counts[topic]))
        self.pending.append(item)
        if not await self._submit(item):
            await self._recover()
        await self._confirm(keep=WINDOW)

    async def drain(self) -> None:
        """Until the broker acknowledged every message."""
        await self._confirm(keep=0)

    async def _submit(self, item: _Pending) -> bool:
        """Hand one message over once every earlier message of its partition number on another
        topic is acknowledged (the order rule); False when a wait or the hand-over failed."""
        lane = self.lanes.get(item.partition)
        if lane is None or lane.topic != item.topic:
            if lane is not None and not await self._settle(lane.in_flight):
                return False
            lane = self.lanes[item.partition] = _Lane(item.topic)
        if not await self._hand_over(item):
            return False
        while lane.in_flight and lane.in_flight[0].acknowledged:
            lane.in_flight.popleft()
        lane.in_flight.append(item)
        return True

    async def _settle(self, items: Iterable[_Pending]) -> bool:
        """Until the broker acknowledged every one of `items`; False on a failure or a stall."""
        for item in items:
            future = item.future
            if future is None:
                return False
            if not future.done():
                done, _ = await asyncio.wait({future}, timeout=self.stall_s)
                if not done:
                    return False
            if not item.acknowledged:
                return False
        return True

    async def _hand_over(self, item: _Pending) -> bool:
        """Give one message to the producer; False when that failed or blocked too long."""
        assert self.producer is not None
        try:
            async with asyncio.timeout(self.stall_s):
                item.future = await self.producer.send(
                    item.topic, value=item.value, key=item.key, partition=item.partition
                )
        except (KafkaError, TimeoutError):
            item.future = None
            return False
        return True

    def _reap(self) -> bool:
        """Drop acknowledged messages from the front; False when the oldest one failed."""
        while self.pending:
            future = self.pending[0].future
            if future is None:
                return False
            if not future.done():
                return True
            if future.cancelled() or future.exception() is not None:
                return False
            self.pending.popleft()
            self.acked += 1
        return True

    async def _confirm(self, keep: int) -> None:
        """Until at most `keep` messages are unacknowledged, recovering from stalls on the way."""
        while True:
            if not self._reap():
                await self._recover()
                continue
            if len(self.pending) <= keep:
                return
            future = self.pending[0].future
            assert future is not None
            done, _ = await asyncio.wait({future}, timeout=self.stall_s)
            if not done:
                await self._recover()

    async def _recover(self) -> None:
        """Replace the producer and send every unacknowledged message again, in order."""
        self.stalls += 1
        started = time.monotonic()  # the timeout counts from the moment the stall was noticed
        log.debug("broker stalled; resending", extra={"pending": len(self.pending)})
        while True:
            elapsed = time.monotonic() - started
            self.on_stall(elapsed)
            if elapsed > self.timeout_s:
                raise _unreachable(self.settings, elapsed, f"{self.acked:,} events acknowledged")
            self._forget_outcomes()
            if self.producer is not None:
                await stop_quietly(self.producer)
                self.producer = None
            try:
                async with asyncio.timeout(max(self.timeout_s - elapsed, 0.1)):
                    await self._start_producer()
            except (KafkaError, OSError, TimeoutError):
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            if await self._hand_over_all():
                break
        self.on_stall(None)

    def _forget_outcomes(self) -> None:
        """The unacknowledged messages all go again: their old futures no longer matter.
        Acknowledged ones (behind an unacknowledged one in the queue) are written: dropped."""
        unacknowledged: deque[_Pending] = deque()
        for item in self.pending:
            if item.acknowledged:
                self.acked += 1
                continue
            if item.future is not None:
                if not item.future.done():
                    item.future.cancel()
                elif not item.future.cancelled():
                    item.future.exception()  # retrieved, so asyncio does not warn about it
                item.future = None
            unacknowledged.append(item)
        self.pending = unacknowledged
        self.lanes.clear()

    async def _hand_over_all(self) -> bool:
        """Every unacknowledged message again, in file order, under the order rule."""
        for item in self.pending:
            if not await self._submit(item):
                return False
            self.resent += 1
        return True


async def publish(
    lines: Iterable[bytes],
    settings: Settings,
    *,
    rate: float | None = None,
    timeout_s: float = 120.0,
    on_progress: Callable[[int], None] = lambda _n: None,
    on_stall: Callable[[float | None], None] = lambda _s: None,
    stopped: Callable[[], bool] = lambda: False,
) -> ReplaySummary:
    """Send every line to its family's topic keyed by account_id; `rate` caps events per second.

    Creates the topics first. `on_stall(seconds)` reports a broker that stopped acknowledging,
    `on_stall(None)` its return. Raises BrokerUnavailable after `timeout_s` without progress,
    Interrupted when `stopped()` holds before a line (checked as well as the task's
    cancellation, which a library await on the way can swallow).
    """
    summary = ReplaySummary()
    sender = _Sender(settings, timeout_s, on_stall)
    await sender.start()
    started = time.perf_counter()
    try:
        for count, line in enumerate(lines, start=1):
            if stopped():
                raise Interrupted
            line = line.strip(JSON_WHITESPACE)
            if not line:
                continue
            target = route(line, settings)
            if target is None:
                summary.skipped += 1
                if summary.first_skipped is None:
                    summary.first_skipped = (count, unroutable(line))
                continue
            topic, key = target
            await sender.send(topic, key, line)
            summary.sent[topic] += 1
            if rate:
                ahead = summary.total / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if count % 5000 == 0:
                on_progress(count)
        await sender.drain()
    finally:
        await sender.close()
    summary.resent, summary.stalls = sender.resent, sender.stalls
    summary.seconds = time.perf_counter() - started
    return summary
