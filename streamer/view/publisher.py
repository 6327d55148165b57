"""The view's one write path: publish an input event to Kafka and wait for the broker's ack.

The producer is started on the first write (a read-only view never connects) and keeps no
state of its own beyond the connection: a view restarted between two writes loses nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    BrokerResponseError,
    KafkaError,
    NotEnoughReplicasAfterAppendError,
    RecordTooLargeError,
    RequestTimedOutError,
)

from streamer.contract.events import EVENT_FAMILY
from streamer.core.clock import DAY, iso, to_ms
from streamer.partitioning import partition_of
from streamer.settings import Settings
from streamer.stream.access import KafkaAccess
from streamer.stream.clients import start_producer, stop_quietly
from streamer.view.actions import build_event
from streamer.view.errors import Conflict, Forbidden, NotFound, Unavailable

Publish = Callable[[str, bytes, bytes], Awaitable[None]]
"""(topic, key, value): resolves once the broker acknowledged the message."""

Require = Callable[[str], Awaitable[None]]
"""Nothing when the projection has the account; raises NotFound (or Unavailable) otherwise."""

StreamTimes = Callable[[], Awaitable[dict[int, int]]]
"""Each partition's stream time (epoch ms) as projected; raises Unavailable when unreadable."""

SEND_TIMEOUT_S = 20.0
# Answers after which the record may be in the log all the same (appended, not acknowledged in
# time or not replicated enough); every other broker error code is a refusal.
APPENDED_MAYBE = (RequestTimedOutError, NotEnoughReplicasAfterAppendError)


def _refused(error: BaseException) -> bool:
    """Whether the event is certainly not in the topic: the producer would not send it (larger
    than its request limit), or the broker answered with an error code that is a refusal."""
    if isinstance(error, RecordTooLargeError):
        return True
    return isinstance(error, BrokerResponseError) and not isinstance(error, APPENDED_MAYBE)


class KafkaPublisher:
    """Publishes to the broker with acks from all in-sync replicas, idempotently."""

    def __init__(self, kafka: KafkaAccess) -> None:
        self.kafka = kafka
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **self.kafka.client_options(),
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=int(SEND_TIMEOUT_S * 1000),
                )
                self._producer = await start_producer(producer, SEND_TIMEOUT_S)
            return self._producer

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        try:
            producer = await self._started()
        except (KafkaError, OSError, TimeoutError) as error:
            raise Unavailable(
                f"the broker at {self.kafka.bootstrap} could not be reached "
                f"({type(error).__name__}: {error}); nothing was published: try again"
            ) from None
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await producer.send_and_wait(topic, value, key=key)
        except (KafkaError, OSError, TimeoutError) as error:
            await self._discard(producer)
            if _refused(error):
                outcome = "the broker refused it: nothing was published, try again"
            else:  # no answer, or a late one: the broker may have appended it
                outcome = (
                    "it may have been published: check the account before sending it again "
                    "(the same override or profile twice is harmless)"
                )
            raise Unavailable(
                f"the broker at {self.kafka.bootstrap} did not acknowledge the event "
                f"({type(error).__name__}: {error}); {outcome}"
            ) from None

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        """After a failed send the next write starts a new producer: the failed batch took its
        partition's sequence numbers in the idempotent producer, and the broker would refuse
        every later event of that partition as out of order (aiokafka does not reset them), so
        every write there failed until the view restarted."""
        async with self._starting:
            if self._producer is producer:
                self._producer = None
        await stop_quietly(producer)

    async def close(self) -> None:
        if self._producer is not None:
            await stop_quietly(self._producer)  # bounded: a stalled broker does not hold the exit
            self._producer = None


class Writer:
    """Turns a person's request into one published input event (see `streamer.view.actions`)."""

    def __init__(
        self, publish: Publish, require: Require, stream_times: StreamTimes, settings: Settings, enabled: bool
    ) -> None:
        self.publish = publish
        self.require = require  # a write names an account the workers have scored
        self.stream_times = stream_times
        self.topics = settings.input_topics
        self.bounds = settings.score.input
        self.partitions = settings.partitions
        self.lateness = int(settings.score.time.allowed_lateness_days * DAY)
        self.enabled = enabled  # writes need the view's bearer token to be set

    async def write(self, event_type: str, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if not self.enabled:
            raise Forbidden(
                "writes need a token: start the view with HEALTHSTREAM_VIEW_TOKEN set and send "
                "'Authorization: Bearer <token>'"
            )
        event_id = f"view-{uuid.uuid4().hex}"
        now_ms = int(time.time() * 1000)  # when it is published; scoring reads the event's own time
        # Read before the body when the write is dated now (a history's `expires_at` is before
        # now), and once: both checks below read them.
        times = None if "occurred_at" in body else await self.stream_times()
        if times is not None:
            self._dated_now_on_history(times, account_id, now_ms)
        event, value = build_event(event_type, account_id, body, event_id, now_ms, self.bounds)
        # Any id the contract allows would be published and become an account of its own (a
        # mistyped id, or `acct-1/history` from a path the routes read as one): refused instead.
        try:
            await self.require(account_id)
        except NotFound as missing:
            raise NotFound(
                f"{missing.message}: the view writes only to accounts the workers have scored "
                "(a new account's profile goes to the input topic as `account.updated`)"
            ) from None
        if times is None:
            times = await self.stream_times()
        self._not_too_late(times, account_id, to_ms(event.occurred_at))
        topic = self.topics[EVENT_FAMILY[event_type]]
        await self.publish(topic, account_id.encode(), value)
        return {
            "event_id": event_id,
            "event_type": event_type,
            "account_id": account_id,
            "occurred_at": iso(to_ms(event.occurred_at)),
            "topic": topic,
        }

    def _dated_now_on_history(self, times: dict[int, int], account_id: str, now_ms: int) -> None:
        """A Conflict (409) for a write dated now on a portfolio whose events all lie further back
        than the allowed lateness (a replayed history): it would move its partition's stream time
        to today, re-score every account of it as of today and refuse the rest of the history as
        too late. `times`: each partition's stream time."""
        newest = max(times.values(), default=None)
        if newest is None or now_ms - newest <= self.lateness:
            return  # nothing projected yet, or a live stream: some partition is near now
        raise Conflict(
            f"the portfolio's events end at {iso(newest)}, {(now_ms - newest) / DAY:.0f} days ago: "
            f"a write dated now would move the stream time of {account_id!r}'s partition to now, "
            "re-score its accounts as of today and refuse the rest of a replayed history as too "
            f"late (more than {self.lateness / DAY:g} days, time.allowed_lateness_days). On a "
            "replayed or backfilled history, give the write a time of the history: "
            f'"occurred_at": "{iso(newest)}" in the body'
        )

    def _not_too_late(self, times: dict[int, int], account_id: str, at: int) -> None:
        """A Conflict (409) for a write dated more than the allowed lateness before its partition's
        stream time: the workers would dead-letter it as too late."""
        stream_time = times.get(partition_of(account_id, self.partitions))
        if stream_time is not None and at < stream_time - self.lateness:
            raise Conflict(
                f"occurred_at {iso(at)} is more than {self.lateness / DAY:g} days before the stream "
                f"time of {account_id!r}'s partition ({iso(stream_time)}): the workers would refuse "
                "it as too late (time.allowed_lateness_days); nothing was published"
            )
