"""The worker's outputs to Kafka: alerts and snapshots in order, dead letters each once, and the
broker's acknowledgement of every one before the batch's state is written (`Checkpoint`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, NamedTuple, cast

import faust

from streamer.contract.dead_letter import original_key
from streamer.jsonbytes import kept_json
from streamer.settings import Settings
from streamer.stream.dead_letters import DeadLetterLog
from streamer.stream.faust_private import drop_unsent, renew_producer_id
from streamer.stream.membership import Fence, Fenced
from streamer.stream.origin import ORIGIN_HEADER

log = logging.getLogger(__name__)

RETRY_S = 1.0  # pause before sending failed outputs again


async def _send_and_wait(
    records: Sequence[tuple[Any, ...]], publish: Callable[..., Awaitable[Awaitable[Any]]]
) -> list[tuple[int, str]]:
    """Send every record, then await every acknowledgement; the (index, error) of each failure.
    Raises `Fenced` once a record was given up at the fence (`stream/membership.py`): the
    worker may have lost its partitions, and these outputs are dropped, not sent again."""
    sent: list[Awaitable[Any] | BaseException] = []
    fenced: Fenced | None = None
    for record in records:
        try:
            sent.append(await publish(*record))
        except Fenced as exc:
            fenced = exc  # the rest unsent; those sent are awaited (each fails at the fence too)
            break
        except Exception as exc:
            sent.append(exc)
    failures: list[tuple[int, str]] = []
    for index, outcome in enumerate(sent):  # every outcome is awaited, failed or not
        if not isinstance(outcome, BaseException):
            try:
                await outcome
                continue
            except Exception as exc:
                outcome = exc
        if isinstance(outcome, Fenced):
            fenced = outcome
        failures.append((index, f"{type(outcome).__name__}: {outcome}"))
    if fenced is not None:
        raise fenced
    return failures


async def deliver_all(
    records: Sequence[tuple[Any, ...]],
    publish: Callable[..., Awaitable[Awaitable[Any]]],
    what: str,
    landed: Callable[[Sequence[tuple[Any, ...]]], Awaitable[Collection[int]]] | None = None,
    renew: Callable[[], object] = lambda: None,
) -> None:
    """Send every record and wait for the broker's acknowledgements; send the failed ones again
    (after `RETRY_S`, and `renew`, which resets the producer's idempotence after a failure) until
    all are acknowledged. Never skips one: the batch they belong to is acknowledged only after
    this returns.

    A failure does not say the broker lacks the record: one written just before the broker went
    away fails without an acknowledgement, and the producer's idempotence covers only its own
    retries, not a record sent again from here. `landed`, when given, reads the topic back and
    names (by index) the failed records that are there already; those are not sent again."""
    pending = list(records)
    attempt = 0
    while pending:
        attempt += 1
        failures = await _send_and_wait(pending, publish)
        pending = [pending[index] for index, _ in failures]
        if failures:
            log.warning(
                f"{what} not acknowledged by the broker; sending again",
                extra={"failed": len(failures), "attempt": attempt, "error": failures[0][1][:500]},
            )
            await asyncio.sleep(RETRY_S)
            renew()
            if landed is not None:
                there = set(await landed(pending))
                pending = [record for index, record in enumerate(pending) if index not in there]


async def deliver_in_order(
    records: Sequence[tuple[str, bytes, bytes]],
    publish: Callable[[str, bytes, bytes], Awaitable[Awaitable[Any]]],
    what: str,
    renew: Callable[[], object] = lambda: None,
) -> None:
    """Send every (topic, key, value) in order and wait for the broker's acknowledgements; after a
    failure send the first failed record and every one after it again, in order (after
    `RETRY_S` and `renew`, as `deliver_all`), until all are acknowledged.

    Re-sending what follows a failure keeps the order: a compacted topic ends with the newest
    record of each key, never with an older one sent again after it. A record sent twice is
    harmless (the outputs are idempotent: the same ids).
    """
    pending = list(records)
    attempt = 0
    while pending:
        attempt += 1
        failures = await _send_and_wait(pending, publish)
        if not failures:
            return
        first_failed, error = failures[0]
        log.warning(
            f"{what} not acknowledged by the broker; sending again from the first one that failed",
            extra={
                "failed_from": first_failed,
                "again": len(pending) - first_failed,
                "attempt": attempt,
                "error": error[:500],
            },
        )
        await asyncio.sleep(RETRY_S)
        renew()
        pending = pending[first_failed:]


Place = tuple[Any, Any, Any]  # (input partition, topic, offset) of a rejected message


class Letter(NamedTuple):
    """A dead letter queued for `KafkaSink.flush`: what is sent, and the place it is for."""

    key: bytes | None
    value: bytes  # the encoded `cs.deadletter` record
    partition: int | None  # of the dead-letter topic (None: by key)
    place: Place


class KafkaSink:
    """Results to the output topics; `flush` waits until the broker has them all.

    Alerts and snapshots are encoded once (orjson) and kept in order until `flush`, which hands
    them to the producer directly: faust's send buffer cost a future, a pending-message record, a
    task hop and a callback per record, a few per cent of the worker's CPU.
    """

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        dead_letters: DeadLetterLog | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.app = app
        self.fence = fence  # holds the outputs while the membership is in doubt
        self.dead_letter_log = dead_letters  # places each dead letter in its input's partition

        def topic(name: str) -> Any:
            return app.topic(
                settings.topic(name),
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
            )

        self.alerts_topic, self.health_topic = settings.topic("alerts"), settings.topic("health")
        self.dead = topic("deadletter")
        self._outputs: list[tuple[str, bytes, bytes]] = []  # (topic, key, value), in order
        self._dead_letters: list[Letter] = []
        # (input topic, key, value, partition, origin header)
        self._rerouted: list[tuple[str, bytes, bytes, int, bytes]] = []
        self._delivered: asyncio.Future[None] | None = None  # the last flush's delivery

    def alert(self, alert: dict[str, Any]) -> None:
        self._outputs.append((self.alerts_topic, str(alert["account_id"]).encode(), kept_json(alert)))

    def snapshot(self, snapshot: dict[str, Any]) -> None:
        self._outputs.append((self.health_topic, str(snapshot["account_id"]).encode(), kept_json(snapshot)))

    def dead_letter(self, record: dict[str, Any]) -> None:
        """Queued for `flush`, which sends it and retries until the broker has it."""
        key = original_key(record)  # the bytes the producer sent, an empty key too
        source, where = record.get("partition"), self.dead_letter_log
        partition = where.partition_for(source) if where is not None and isinstance(source, int) else None
        place = (source, record.get("topic"), record.get("offset"))
        self._dead_letters.append(Letter(key, kept_json(record), partition, place))

    def reroute(self, topic: str, key: bytes, value: bytes, partition: int, origin: bytes) -> None:
        """Queued for `flush`: an input event sent again to `partition`, its account's, with the
        header `origin` (`streamer/stream/origin.py`: a copy sent twice is handled once while the
        receiving partition lists its origin, `streamer/state/copies.py`). The partition is
        named, not left to the producer's partitioner, which hashes over the topic's partitions
        now: on a topic given more partitions under a running worker the copy landed on another
        wrong partition, was re-routed again, and so on for ever."""
        self._rerouted.append((topic, key, value, partition, origin))

    def flush(self) -> asyncio.Future[None]:
        """Take every output queued so far (alerts, snapshots, re-routed inputs and dead letters)
        and deliver them after the outputs of the flushes before, each sent again until the
        broker has it; the future completes once it has them all, or fails as the delivery
        failed (and so does every later flush's).

        Taken when called, not when awaited: the scorer hands a checkpoint's outputs over and
        goes on with the next batch, whose outputs are queued meanwhile and delivered after
        these, so a compacted topic still ends with each account's newest snapshot. Not through
        faust's send buffer: its `producer.flush()` can return with records still queued
        (`streamer/stream/tables.py`, where the checkpoint awaits the table changelog records)."""
        if not (self._outputs or self._rerouted or self._dead_letters) and self._delivered is not None:
            return self._delivered  # nothing new: done when the last flush is
        taken = (self._outputs, self._rerouted, self._dead_letters)
        self._outputs, self._rerouted, self._dead_letters = [], [], []
        self._delivered = asyncio.ensure_future(self._deliver(self._delivered, *taken))
        return self._delivered

    async def discard(self) -> None:
        """Drop the outputs not yet delivered: a worker that may have lost its partitions must
        not write over their new owner's (`Scorer._drop_unwritten`). Those queued go unsent, and
        so does every record the producer holds unsent, the tables' changelog records too
        (`drop_unsent`); deliveries under way wait at the fence (`_publish`), which gives them up."""
        self._outputs, self._rerouted, self._dead_letters = [], [], []
        dropped = drop_unsent(self.app.producer, Fenced("records of a membership that ended in doubt"))
        if dropped:
            log.info("records the producer had not sent were dropped", extra={"records": dropped})
        delivered, self._delivered = self._delivered, None
        if delivered is not None:
            with contextlib.suppress(Fenced):
                await delivered

    async def _deliver(
        self,
        before: asyncio.Future[None] | None,
        outputs: list[tuple[str, bytes, bytes]],
        rerouted: list[tuple[str, bytes, bytes, int, bytes]],
        letters: list[Letter],
    ) -> None:
        if before is not None:
            with contextlib.suppress(Fenced):  # given up: a revocation follows, these go on
                await before
        renew = self._renew_producer_id
        await deliver_in_order(outputs, self._publish, "alerts and snapshots", renew)
        # a re-routed input sent twice is handled once while listed (its origin header)
        await deliver_all(rerouted, self._publish_to, "re-routed input", renew=renew)
        if letters:
            landed = await self._landed_since_now(letters)
            await deliver_all(letters, self._publish_dead_letter, "dead letter", landed, renew=renew)

    def _renew_producer_id(self) -> None:
        """Before failed outputs are sent again: a batch the broker refused took its sequence
        numbers, and it would refuse every later one of that partition as out of order."""
        if renew_producer_id(self.app.producer):
            log.info("producer id renewed: the outputs are sent again under a new one")

    async def _landed_since_now(
        self, letters: Sequence[Letter]
    ) -> Callable[[Sequence[tuple[Any, ...]]], Awaitable[Collection[int]]] | None:
        """Before the first send: where each dead-letter partition ends now, and a check that
        reads it back from there after a failure (dead letters are written once, `deliver_all`).
        Costs one offsets request per input partition with dead letters in the batch."""
        log_ = self.dead_letter_log
        if log_ is None:
            return None
        sources = {letter.place[0] for letter in letters if isinstance(letter.place[0], int)}
        starts = {source: await log_.end(source) for source in sorted(sources)}

        async def landed(failed: Sequence[tuple[Any, ...]]) -> set[int]:
            there: set[tuple[int, Any, Any]] = set()
            for source, start in starts.items():
                found, _end = await log_.read(source, start)
                there.update((source, letter.get("topic"), letter.get("offset")) for _, letter in found)
            return {index for index, letter in enumerate(failed) if Letter(*letter).place in there}

        return landed

    async def _publish(self, topic: str, key: bytes, value: bytes) -> Awaitable[Any]:
        # faust's producer `send`: straight to aiokafka's accumulator; partitioned by key.
        await self._fence_passed()
        return await self.app.producer.send(topic, key, value, None, None, None)

    async def _publish_to(
        self, topic: str, key: bytes, value: bytes, partition: int, origin: bytes
    ) -> Awaitable[Any]:
        await self._fence_passed()
        return await self.app.producer.send(topic, key, value, partition, None, [(ORIGIN_HEADER, origin)])

    async def _fence_passed(self) -> None:
        """Each record waits while the membership is in doubt (`Fence.passed`): a delivery under
        way when the process stood still goes on the moment it resumes."""
        if self.fence is not None:
            await self.fence.passed("outputs")

    async def _publish_dead_letter(
        self, key: bytes | None, value: bytes, partition: int | None, place: Place
    ) -> Awaitable[Any]:
        # Straight to the producer (not faust's send buffer), so a failure is seen here. The place
        # is not sent (it is in the record): `flush` reads it back after a failure.
        await self._fence_passed()
        message = self.dead.as_future_message(key=key, value=value, partition=partition)
        return cast(Awaitable[Any], await self.dead.publish_message(message, wait=False))
