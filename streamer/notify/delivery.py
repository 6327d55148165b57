"""Delivery to one destination: queue, optional digest, rate limit, retries, dedupe by alert id.

Each alert is handed over with an `ack` callback, called exactly once when the destination has
acknowledged it (2xx), rejected it (400, 413, 422 and the like: a fault of the alert, not of the
destination; or retries exhausted when `max_attempts` is set), or already had it (dedupe): the
notifier commits offsets only past alerts whose every destination has called back. A rejection
is recorded too, but only a delivery counts as one: an alert rejected is not retried in that run,
and is sent again when its destination reads it again (a rewound group).

An alert is submitted with the partition it was read from: when that partition is revoked,
`withdraw` takes back the alerts of it still queued (the new owner reads them again) and
`settle` waits for the batch of it being sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import aiohttp
import orjson
from aiokafka import TopicPartition
from yarl import URL

from streamer.notify.backoff import delay
from streamer.notify.config import Destination, Retry
from streamer.notify.formatting import body, idempotency_key
from streamer.notify.metrics import NotifyMetrics
from streamer.notify.ratelimit import TokenBucket
from streamer.notify.retryafter import retry_after_seconds
from streamer.notify.sentlog import SentLog

log = logging.getLogger(__name__)

Alert = Mapping[str, Any]
Ack = Callable[[], None]


class Outcome(StrEnum):
    sent = "sent"
    retry = "retry"  # try again later
    rejected = "rejected"  # the destination will never take it


@dataclass(frozen=True, slots=True)
class Response:
    outcome: Outcome
    detail: str
    retry_after: float | None = None  # seconds, from the response's Retry-After
    destination_fault: bool = False  # retried: the destination's URL or credentials are wrong


class Sender(Protocol):
    """Posts one JSON body; tests pass a fake, `HttpSender` posts with aiohttp."""

    async def post(
        self, destination: Destination, payload: dict[str, Any], key: str
    ) -> Response: ...  # pragma: no cover


# Answers that refuse every alert alike, whatever it holds: a rotated token (401), a revoked or
# archived Slack webhook (403, 404, 410), a moved URL (3xx: redirects are not followed). They were
# rejections, and every alert was discarded until the file was fixed; now they are retried.
DESTINATION_FAULTS = frozenset({401, 403, 404, 405, 407, 410, 421})


def classify(status: int, retry_after: str | None = None, now: datetime | None = None) -> Response:
    """2xx sent; 429, 408 and 5xx retried (after the wait Retry-After asks for, seconds or a date
    measured from `now`, the wall clock by default); 3xx and `DESTINATION_FAULTS` retried as the
    destination's fault; other codes rejected (a status past 599 is no HTTP status: a webhook
    answering 999 for ever was retried for ever)."""
    if 200 <= status < 300:
        return Response(Outcome.sent, f"HTTP {status}")
    if status == 429 or 500 <= status < 600 or status == 408:
        wait = retry_after_seconds(retry_after, now or datetime.now(UTC))
        return Response(Outcome.retry, f"HTTP {status}", wait)
    if 300 <= status < 400 or status in DESTINATION_FAULTS:
        detail = f"HTTP {status}: the destination refuses every alert; check its URL and headers"
        return Response(Outcome.retry, detail, destination_fault=True)
    return Response(Outcome.rejected, f"HTTP {status}")


BODY_CAP = 64 * 1024  # bytes of a response body read at most; nothing uses the body


async def _discard_body(reply: aiohttp.ClientResponse) -> None:
    """Read a small body to its end, so the connection can serve the next request. One larger
    than BODY_CAP (a webhook may announce gigabytes) is not read further, and one that breaks
    off or outlasts the timeout is given up: the connection is closed instead. Either way the
    status has already decided the outcome."""
    remaining = BODY_CAP
    try:
        while remaining > 0:
            chunk = await reply.content.read(remaining)
            if not chunk:
                return
            remaining -= len(chunk)
    except (aiohttp.ClientError, TimeoutError, OSError):
        pass
    reply.close()


class HttpSender:
    """aiohttp client: one session, JSON bodies, an `Idempotency-Key` header per message, through
    the proxy the environment names (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def post(self, destination: Destination, payload: dict[str, Any], key: str) -> Response:
        if self._session is None:
            # trust_env: HTTPS_PROXY, HTTP_PROXY and NO_PROXY as most HTTP clients honour them
            # (ignored, a notifier behind a proxy delivered nothing); also ~/.netrc's credentials
            self._session = aiohttp.ClientSession(trust_env=True)
        headers = {**destination.headers, "Content-Type": "application/json", "Idempotency-Key": key}
        try:
            async with self._session.post(
                str(destination.url),
                data=orjson.dumps(payload),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=destination.timeout_seconds),
                allow_redirects=False,
            ) as reply:
                response = classify(reply.status, reply.headers.get("Retry-After"))
                await _discard_body(reply)
                return response
        except TimeoutError:  # its text is empty: say what ran out
            return Response(
                Outcome.retry, f"no answer within timeout_seconds ({destination.timeout_seconds:g} s)"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return Response(Outcome.retry, without_url(f"{type(exc).__name__}: {exc}", destination))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(slots=True, eq=False)  # compared by identity: the same alert may be queued twice
class _Queued:
    alert: Alert
    # each reading of the alert: its callback and the partition it was read from (None: unknown)
    acks: list[tuple[Ack, TopicPartition | None]] = field(default_factory=list)

    @property
    def withdrawn(self) -> bool:
        """Taken back before it was sent (`withdraw` removed its every reading): skipped where it
        still lies in the queue."""
        return not self.acks

    def read_from(self, partitions: Collection[TopicPartition]) -> bool:
        return any(source in partitions for _, source in self.acks)


def without_url(detail: str, destination: Destination) -> str:
    """`detail` with the destination's URL cut to its origin: aiohttp's errors quote the whole URL,
    and a webhook's path or query is often its secret (a Slack webhook's path is)."""
    url = URL(str(destination.url))
    shown = f"{url.scheme}://{url.host}:{url.port}/..."
    for written in {str(destination.url), str(url), str(url.with_user(None))}:
        detail = detail.replace(written, shown)
    return detail


def unforeseen(exc: BaseException) -> str:
    """The detail of an error no rule foresaw: the message that met it is given up (a retry would
    meet it again), and the destination goes on with the next. Before, the notifier exited, and
    met the same alert again after every restart."""
    return f"gave up on an unforeseen error: {type(exc).__name__}: {exc}"


class DestinationWorker:
    """Delivers the alerts routed to one destination, in the order they were submitted."""

    def __init__(
        self,
        destination: Destination,
        retry: Retry,
        sender: Sender,
        sent: SentLog,
        metrics: NotifyMetrics,
        *,
        bucket: TokenBucket | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.destination, self.retry, self.sender, self.sent = destination, retry, sender, sent
        self.metrics = metrics
        self.bucket = bucket or TokenBucket(destination.rate_per_minute / 60, destination.burst, sleep=sleep)
        self._sleep, self._draw = sleep, draw
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._in_flight: dict[str, _Queued] = {}  # alert id -> queued or being sent
        self.retrying = False  # the batch being sent failed and waits for its next attempt
        self._clock = clock
        self._failing_since: float | None = None  # the batch being sent first failed then
        self.last_error: str | None = None  # the detail of its latest failure
        self._sending: list[_Queued] = []  # the batch `deliver` is sending (until acked)
        self._sent_batch: asyncio.Event = asyncio.Event()  # set when that batch is finished
        self._sent_batch.set()
        self.name = destination.name

    @property
    def pending(self) -> int:
        return len(self._in_flight)

    def retrying_s(self) -> float | None:
        """Seconds since the batch being sent first failed (None: it has not failed)."""
        return None if self._failing_since is None else self._clock() - self._failing_since

    def submit(self, alert: Alert, ack: Ack, source: TopicPartition | None = None) -> None:
        """Queue `alert`, read from partition `source` (or call `ack` at once when the
        destination already has it)."""
        alert_id = str(alert["alert_id"])
        if (self.name, alert_id) in self.sent:
            self.metrics.deduped.labels(self.name).inc()
            ack()
            return
        queued = self._in_flight.get(alert_id)
        if queued is not None:  # the same alert again while the first is on its way
            self.metrics.deduped.labels(self.name).inc()
            queued.acks.append((ack, source))
            return
        queued = self._in_flight[alert_id] = _Queued(alert, [(ack, source)])
        self.metrics.pending.labels(self.name).set(len(self._in_flight))
        self._queue.put_nowait(queued)

    def withdraw(self, partitions: Collection[TopicPartition]) -> int:
        """Partitions revoked: take back the readings of `partitions` not yet being sent (their
        callbacks are no-ops by now, and the partitions' next owner reads them again). An alert
        left with no reading is not sent; one also read from a partition kept stays queued.
        The batch being sent is left alone (`settle` waits for it). Returns the alerts dropped."""
        partitions = set(partitions)
        dropped = 0
        for alert_id, queued in list(self._in_flight.items()):
            if queued in self._sending or not queued.read_from(partitions):
                continue
            queued.acks = [(ack, source) for ack, source in queued.acks if source not in partitions]
            if queued.withdrawn:
                del self._in_flight[alert_id]
                dropped += 1
        if dropped:
            self.metrics.pending.labels(self.name).set(len(self._in_flight))
            self._drop_withdrawn()
        return dropped

    def _drop_withdrawn(self) -> None:
        """Take the withdrawn alerts out of the queue (order kept): left there for `_take` to
        skip, they piled up behind a batch retried for good, one more per alert at every
        rebalance that read them again."""
        queue = self._queue
        kept = [
            queued for queued in (queue.get_nowait() for _ in range(queue.qsize())) if not queued.withdrawn
        ]
        for queued in kept:
            queue.put_nowait(queued)

    def sending(self, partitions: Collection[TopicPartition]) -> bool:
        """Whether the batch being sent holds an alert read from one of `partitions`."""
        partitions = set(partitions)
        return any(queued.read_from(partitions) for queued in self._sending)

    async def settle(self, partitions: Collection[TopicPartition], timeout_s: float) -> bool:
        """Wait, at most `timeout_s`, until no batch holding an alert of `partitions` is being
        sent (it was delivered or given up, recorded in the sent log and acked). True when none is."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.sending(partitions):
                    await self._sent_batch.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Deliver forever (cancel the task to stop)."""
        while True:
            batch = await self._next_batch()
            await self.deliver(batch)

    async def _take(self) -> _Queued:
        """The next queued alert not withdrawn."""
        while True:
            queued = await self._queue.get()
            if not queued.withdrawn:
                return queued

    async def _next_batch(self) -> list[_Queued]:
        """The next message's alerts. A digest being collected is not sent yet: an alert of it
        withdrawn meanwhile is left out (and a digest left empty is not sent)."""
        while True:
            batch = [await self._take()]
            window = self.destination.digest_seconds
            if window is None:
                return batch
            loop = asyncio.get_running_loop()
            deadline = loop.time() + window
            while len(batch) < self.destination.max_digest_alerts:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        batch.append(await self._take())
                except TimeoutError:
                    break
            batch = [queued for queued in batch if not queued.withdrawn]
            if batch:
                return batch

    async def deliver(self, batch: list[_Queued]) -> Outcome:
        """Send `batch` as one message until it is acknowledged or rejected; then record and ack.
        While it runs the batch is in flight: `withdraw` leaves it alone and `settle` waits."""
        self._sending, self._sent_batch = batch, asyncio.Event()
        try:
            return await self._deliver(batch)
        finally:
            self._sending = []
            self._failing_since = self.last_error = None
            self._sent_batch.set()

    async def _deliver(self, batch: list[_Queued]) -> Outcome:
        alerts = [queued.alert for queued in batch]
        try:
            payload, key = body(self.destination.format, alerts), idempotency_key(alerts)
        except Exception as exc:  # an alert this notifier cannot format: given up, the rest go on
            log.exception("could not format alerts", extra={"destination": self.name, "alerts": len(batch)})
            self.metrics.failed.labels(self.name).inc(len(batch))
            return await self._finish(batch, Response(Outcome.rejected, unforeseen(exc)))
        attempt = 0
        while True:
            attempt += 1
            waited = await self.bucket.take()
            if waited:
                self.metrics.rate_limited.labels(self.name).inc(waited)
            try:
                response = await self.sender.post(self.destination, payload, key)
            except Exception as exc:  # unforeseen (the network's errors are retried in `post`)
                log.exception("could not send alerts", extra={"destination": self.name})
                response = Response(Outcome.rejected, unforeseen(exc))
            if response.outcome is Outcome.sent:
                self.metrics.messages.labels(self.name).inc()
                self.metrics.sent.labels(self.name).inc(len(batch))
                break
            if response.outcome is Outcome.rejected:
                log.warning(
                    "destination rejected alerts",
                    extra={"destination": self.name, "detail": response.detail, "alerts": len(batch)},
                )
                self.metrics.failed.labels(self.name).inc(len(batch))
                break
            if self.retry.max_attempts is not None and attempt >= self.retry.max_attempts:
                log.error(
                    "giving up on alerts after max_attempts",
                    extra={"destination": self.name, "detail": response.detail, "attempts": attempt},
                )
                self.metrics.failed.labels(self.name).inc(len(batch))
                response = Response(Outcome.rejected, f"gave up after {attempt} attempts: {response.detail}")
                break
            self.metrics.retried.labels(self.name).inc()
            pause = delay(self.retry, attempt, self._draw())
            if response.retry_after is not None:
                pause = max(pause, min(response.retry_after, self.retry.max_seconds))
            self._log_retry(response, pause)
            self._note_failure(response)
            self.retrying = True
            try:
                await self._sleep(pause)
            finally:
                self.retrying = False
            if all((self.name, str(queued.alert["alert_id"])) in self.sent for queued in batch):
                # another notifier of the group delivered them meanwhile: their partition moved
                # while this one retried (the sent log follows its topic)
                self.metrics.deduped.labels(self.name).inc(len(batch))
                response = Response(Outcome.sent, "delivered by another notifier meanwhile")
                break
        return await self._finish(batch, response)

    def _note_failure(self, response: Response) -> None:
        """For /healthz: since when the batch has been failing, and why it failed last."""
        if self._failing_since is None:
            self._failing_since = self._clock()
        self.last_error = response.detail

    def _log_retry(self, response: Response, pause: float) -> None:
        """A failure of the moment at info; a destination refusing every request at warning."""
        extra = {"destination": self.name, "detail": response.detail, "in_s": round(pause, 2)}
        if response.destination_fault:
            log.warning("the destination refuses every request, retrying", extra=extra)
        else:
            log.info("delivery failed, retrying", extra=extra)

    async def _finish(self, batch: list[_Queued], response: Response) -> Outcome:
        """Record the batch's outcome durably, then ack its alerts."""
        alert_ids = [str(queued.alert["alert_id"]) for queued in batch]
        await self._record(alert_ids, response.outcome)
        for queued, alert_id in zip(batch, alert_ids, strict=True):
            self._in_flight.pop(alert_id, None)
            for ack, _ in queued.acks:
                ack()
        self.metrics.pending.labels(self.name).set(len(self._in_flight))
        return response.outcome

    async def _record(self, alert_ids: list[str], outcome: Outcome) -> None:
        """Remember the delivery durably before acking; a broker hiccup is waited out."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.sent.record(self.name, alert_ids, outcome.value)
                return
            except Exception as exc:  # the broker is unreachable: offsets must not move past these
                pause = delay(self.retry, attempt, self._draw())
                log.warning(
                    "could not record deliveries, retrying",
                    extra={"destination": self.name, "error": repr(exc), "in_s": round(pause, 2)},
                )
                await self._sleep(pause)
