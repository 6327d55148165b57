"""`streamer notify`: consume the alerts topic and deliver each alert to its webhooks.

Top to bottom: load what was already delivered (`cs.notify.sent`); give each destination's
consumer group without offsets a starting point (where the other destinations are, or the group
they all shared before the lanes); then each destination reads the topic in its own lane
(`streamer.notify.lane`), hands the alerts routed to it to its worker and commits up to the
first one it has not finished with. Alerts are delivered at least once; the dedupe log makes a
repeat after a crash or a re-published alert a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from streamer.contract.outputs import Alert, json_object
from streamer.notify.config import NotifyConfig
from streamer.notify.delivery import DestinationWorker, HttpSender, Sender
from streamer.notify.lane import Lane, lane_group, starting_offsets
from streamer.notify.metrics import NotifyMetrics
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
        self.topic = settings.topic("alerts")
        self.lanes: list[Lane] = []
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    def pending(self) -> dict[str, int]:
        """Alerts pending per destination, those with any."""
        return {worker.name: worker.pending for worker in self.workers if worker.pending}

    def paused(self) -> dict[str, float]:
        """Seconds each destination's reading has been paused (max_in_flight pending), those paused."""
        return {lane.name: s for lane in self.lanes if (s := lane.paused_s()) is not None}

    async def run(self) -> None:
        loaded = await self.sent.start()
        log.info("dedupe log loaded", extra={"topic": self.sent.topic, "pairs": loaded})
        await self._start_new_groups()
        loop = asyncio.get_running_loop()
        self.lanes = [
            Lane(
                worker,
                self._consumer(worker.name),
                self.topic,
                self.config.max_in_flight,
                self.metrics,
                decode_alert,
                loop.time,
            )
            for worker in self.workers
        ]
        tasks: list[asyncio.Task[None]] = []
        started: list[Lane] = []
        metrics_runner: web.AppRunner | None = None
        try:
            for lane in self.lanes:
                await lane.start()
                started.append(lane)
            for lane in self.lanes:
                tasks.append(asyncio.create_task(lane.worker.run(), name=f"notify:{lane.name}"))
                tasks.append(asyncio.create_task(self._read(lane), name=f"notify-read:{lane.name}"))
            metrics_runner = await self._serve_metrics()
            log.info(
                "notifier started",
                extra={
                    "groups": [lane_group(self.options.group_id, w.name) for w in self.workers],
                    "destinations": [w.name for w in self.workers],
                },
            )
            stopping = asyncio.create_task(self._stopping.wait())
            try:  # until asked to stop, or a task ends (a worker that died would stall its destination)
                await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            for task in tasks:
                if task.done():
                    task.result()
            await self._drain()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for lane in started:
                await lane.stop()
            await self.sent.stop()
            if isinstance(self.sender, HttpSender):
                await self.sender.close()
            if metrics_runner is not None:
                await metrics_runner.cleanup()

    def _consumer(self, destination: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **KafkaAccess.of(self.settings).client_options(),
            group_id=lane_group(self.options.group_id, destination),
            enable_auto_commit=False,
            auto_offset_reset=self.options.start_from,
            max_poll_records=500,
        )

    async def _read(self, lane: Lane) -> None:
        """One destination's loop: read, hand over, commit and measure the lag every half second."""
        loop = asyncio.get_running_loop()
        last_commit = loop.time()
        while True:
            await lane.step()
            if loop.time() - last_commit >= COMMIT_INTERVAL_S:
                await lane.hold_positions()
                await lane.commit()
                await lane.update_lag()
                last_commit = loop.time()

    async def _start_new_groups(self) -> None:
        """Commit a starting point for each destination's group that has none
        (`lane.starting_offsets`): where the other destinations have read to, or, on the first
        start after the upgrade, the offsets of the group they all shared (`--group` itself)."""
        admin = AIOKafkaAdminClient(
            **KafkaAccess.of(self.settings).client_options(), request_timeout_ms=15000
        )
        await admin.start()
        try:
            shared = await admin.list_consumer_group_offsets(self.options.group_id)
            lanes = {
                worker.name: await admin.list_consumer_group_offsets(
                    lane_group(self.options.group_id, worker.name)
                )
                for worker in self.workers
            }
        finally:
            await admin.close()
        for name, offsets in starting_offsets(shared, lanes, self.topic).items():
            group = lane_group(self.options.group_id, name)
            await _commit_as(self.settings, group, offsets)
            log.info(
                "a destination's new group starts where the others are",
                extra={"destination": name, "group": group, "partitions": len(offsets)},
            )

    async def _drain(self) -> None:
        """On shutdown, give in-flight deliveries a moment so fewer are repeated on restart."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE_S
        while any(lane.progress.in_flight() for lane in self.lanes) and loop.time() < deadline:
            await asyncio.sleep(0.1)

    async def _serve_metrics(self) -> web.AppRunner | None:
        if self.options.metrics_port is None:
            return None

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def healthz(_: web.Request) -> web.Response:
            """`degraded` while a destination's reading is paused (max_in_flight of its alerts
            pending): its alerts wait, the other destinations' do not."""
            in_flight = sum(lane.progress.in_flight() for lane in self.lanes)
            answer: dict[str, Any] = {"status": "ok", "in_flight": in_flight}
            paused = self.paused()
            if paused:
                answer |= {"status": "degraded", "paused_s": paused, "pending": self.pending()}
            return web.json_response(answer)

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.options.metrics_host, self.options.metrics_port).start()
        log.info("metrics served", extra={"port": self.options.metrics_port})
        return runner


async def _commit_as(
    settings: Settings, group: str, offsets: Mapping[TopicPartition, OffsetAndMetadata]
) -> None:
    """Commit `offsets` under `group` without joining it (a consumer assigned by hand)."""
    consumer = AIOKafkaConsumer(
        **KafkaAccess.of(settings).client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(dict(offsets))
    finally:
        await consumer.stop()


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
