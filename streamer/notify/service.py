"""`streamer notify`: consume the alerts topic and deliver each alert to its webhooks.

The loop, top to bottom: load what was already delivered (`cs.notify.sent`), join the consumer
group, then for each alert read route it and hand it to each destination's worker; commit each
partition up to the first alert some destination has not finished with. Alerts are delivered
at least once; the dedupe log makes a repeat after a crash or a re-published alert a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from streamer.contract.outputs import Alert, json_object
from streamer.notify.config import NotifyConfig
from streamer.notify.delivery import DestinationWorker, HttpSender, Sender
from streamer.notify.metrics import NotifyMetrics
from streamer.notify.progress import Progress
from streamer.notify.routing import route
from streamer.notify.sentlog import KafkaSentLog
from streamer.settings import Settings
from streamer.stream.access import KafkaAccess
from streamer.stream.broker import wait_for_broker

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.5
SHUTDOWN_GRACE_S = 10.0
REQUIRED = ("alert_id", "account_id", "rule", "severity")


@dataclass(frozen=True, slots=True)
class NotifyOptions:
    group_id: str
    start_from: str = "latest"  # where a group without committed offsets starts: latest, earliest
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    sent_retention_days: float = 30.0
    connect_timeout_s: float = 30.0  # how long `run_notifier` waits for a broker at start-up


def decode_alert(value: bytes | None) -> dict[str, Any] | str:
    """The alert, or why it cannot be delivered: a record that is not an alert as the workers
    write them (`Alert`) is skipped. Anyone who may write the topic may have written it, and a
    `profile` of text once stopped the notifier at every start (routing read it as a table)."""
    alert = json_object(value or b"")
    if isinstance(alert, str):
        return alert
    missing = [name for name in REQUIRED if not isinstance(alert.get(name), str)]
    if missing:
        return f"missing or not text: {', '.join(missing)}"
    try:  # its fields as the workers write them; other fields (another producer's) are kept
        Alert.model_validate({name: alert[name] for name in Alert.model_fields if name in alert})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(the record)"
        return f"not an alert: {where}: {first['msg']}"
    return alert


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.notifier.commit()
        self.notifier.progress.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})


class Notifier:
    def __init__(
        self,
        settings: Settings,
        config: NotifyConfig,
        options: NotifyOptions,
        sender: Sender | None = None,
    ) -> None:
        self.settings, self.config, self.options = settings, config, options
        self.metrics = NotifyMetrics()
        self.sender = sender or HttpSender()
        self.sent = KafkaSentLog(
            KafkaAccess.of(settings),
            settings.topic("notify.sent"),
            options.sent_retention_days,
            settings.replication_factor,
        )
        self.workers = [
            DestinationWorker(d, config.retry_for(d), self.sender, self.sent, self.metrics)
            for d in config.destinations
        ]
        self.progress = Progress()
        self._committed: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self.paused_since: float | None = None  # loop time reading paused at (max_in_flight pending)

    def stop(self) -> None:
        self._stopping.set()

    def pending(self) -> dict[str, int]:
        """Alerts pending per destination, those with any."""
        return {worker.name: worker.pending for worker in self.workers if worker.pending}

    async def run(self) -> None:
        loaded = await self.sent.start()
        log.info("dedupe log loaded", extra={"topic": self.sent.topic, "pairs": loaded})
        consumer = self._consumer = AIOKafkaConsumer(
            **KafkaAccess.of(self.settings).client_options(),
            group_id=self.options.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.options.start_from,
            max_poll_records=500,
        )
        await consumer.start()
        consumer.subscribe([self.settings.topic("alerts")], listener=_Revocations(self))
        tasks = [asyncio.create_task(worker.run(), name=f"notify:{worker.name}") for worker in self.workers]
        metrics_runner = await self._serve_metrics()
        log.info(
            "notifier started",
            extra={"group": self.options.group_id, "destinations": [w.name for w in self.workers]},
        )
        try:
            await self._consume(consumer, tasks)
            await self._drain()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.commit()
            await consumer.stop()
            await self.sent.stop()
            if isinstance(self.sender, HttpSender):
                await self.sender.close()
            if metrics_runner is not None:
                await metrics_runner.cleanup()

    async def _consume(self, consumer: AIOKafkaConsumer, tasks: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        last_commit = loop.time()
        paused = False
        while not self._stopping.is_set():
            for task in tasks:
                if task.done():  # a worker that died would stall its destination silently
                    task.result()
            full = self.progress.in_flight() >= self.config.max_in_flight
            if full != paused:
                (consumer.pause if full else consumer.resume)(*consumer.assignment())
                paused = full
                self.paused_since = loop.time() if full else None
                if full:  # every destination waits now, the healthy ones too: say which holds them
                    log.warning(
                        "reading paused: max_in_flight alerts are pending",
                        extra={"max_in_flight": self.config.max_in_flight, "pending": self.pending()},
                    )
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            for tp, records in sorted(batch.items(), key=lambda item: item[0].partition):
                for record in records:
                    self._dispatch(tp, record.offset, record.value)
            if loop.time() - last_commit >= COMMIT_INTERVAL_S:
                await self.commit()
                await self._update_lag(consumer)
                last_commit = loop.time()

    def _dispatch(self, tp: TopicPartition, offset: int, value: bytes | None) -> None:
        alert = decode_alert(value)
        if isinstance(alert, str):
            log.warning(
                "skipping an undeliverable record",
                extra={"topic": tp.topic, "partition": tp.partition, "offset": offset, "why": alert},
            )
            self.progress.read(tp, offset, 0)
            return
        targets = set(d.name for d in route(self.config.destinations, alert))
        chosen = [worker for worker in self.workers if worker.name in targets]
        done = self.progress.read(tp, offset, len(chosen))
        for worker in chosen:
            worker.submit(alert, done)

    async def commit(self) -> None:
        """Commit each partition up to its first alert not yet done (only what moved)."""
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        moved = {
            tp: offset
            for tp, offset in self.progress.committable().items()
            if tp in assigned and self._committed.get(tp) != offset
        }
        if not moved:
            return
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in moved.items()})
        self._committed.update(moved)

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        assigned = list(consumer.assignment())
        if not assigned:
            return
        with contextlib.suppress(Exception):
            ends = await consumer.end_offsets(assigned)
            committable = self.progress.committable()
            lag = 0
            for tp in assigned:
                done = committable.get(tp, self._committed.get(tp))
                if done is None:
                    done = await consumer.position(tp)
                lag += max(0, ends[tp] - done)
            self.metrics.lag.set(lag)

    async def _drain(self) -> None:
        """On shutdown, give in-flight deliveries a moment so fewer are repeated on restart."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE_S
        while self.progress.in_flight() and loop.time() < deadline:
            await asyncio.sleep(0.1)

    async def _serve_metrics(self) -> web.AppRunner | None:
        if self.options.metrics_port is None:
            return None

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def healthz(_: web.Request) -> web.Response:
            """`degraded` while reading is paused (max_in_flight alerts pending): alerts to the
            healthy destinations wait too, behind the one that does not take them."""
            answer: dict[str, Any] = {"status": "ok", "in_flight": self.progress.in_flight()}
            if self.paused_since is not None:
                paused_s = round(asyncio.get_running_loop().time() - self.paused_since, 1)
                answer |= {"status": "degraded", "paused_s": paused_s, "pending": self.pending()}
            return web.json_response(answer)

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.options.metrics_host, self.options.metrics_port).start()
        log.info("metrics served", extra={"port": self.options.metrics_port})
        return runner


def run_notifier(settings: Settings, config: NotifyConfig, options: NotifyOptions) -> None:
    """Run until SIGINT/SIGTERM. Raises BrokerUnavailable when no broker answers within
    `options.connect_timeout_s` at start-up (aiokafka's own error is a long traceback)."""

    async def main() -> None:
        await wait_for_broker(KafkaAccess.of(settings), options.connect_timeout_s, "delivering alerts")
        notifier = Notifier(settings, config, options)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, notifier.stop)
        await notifier.run()

    asyncio.run(main())
