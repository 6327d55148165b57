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
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from streamer.contract.outputs import Alert, json_object
from streamer.listening import ListenFault, listen_fault
from streamer.notify.config import NotifyConfig
from streamer.notify.delivery import DestinationWorker, HttpSender, Sender
from streamer.notify.lane import Lane, lane_group
from streamer.notify.metrics import NotifyMetrics
from streamer.notify.sentlog import KafkaSentLog
from streamer.notify.starts import Mark, commit_as, furthest, of_topic, retried, starting_point
from streamer.settings import Settings, host_name_problem
from streamer.stream.access import KafkaAccess
from streamer.stream.broker import wait_for_broker
from streamer.stream.clients import CONSUMER_STOP_S, close_consumer_or_warn, start_consumer

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.5
# How soon a destination learns of partitions added to the alerts topic (aiokafka's default, 5
# minutes, left their alerts unread that long); one small metadata request per destination.
METADATA_MAX_AGE_MS = 30_000
BROKER_SILENT_S = 10.0  # a destination's broker unanswered this long makes /healthz degraded
# A destination retrying one message this long makes /healthz degraded: past a blip (the default
# backoff has tried 7 times by then) and well before the backoff's 300 s cap repeats.
RETRYING_S = 120.0
SHUTDOWN_GRACE_S = 10.0
REQUIRED = ("alert_id", "account_id", "rule", "severity")
# The workers' alert ids are 20 hex digits. The dedupe log's record of a delivery carries the id
# twice: an id of half a megabyte made it larger than the broker takes, and every destination
# the alert was routed to retried that record for ever, delivering nothing more.
MAX_ALERT_ID = 128


class MetricsUnavailable(Exception):
    """The metrics server cannot listen where the options say; `option` is the one to change."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


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
    if len(alert["alert_id"]) > MAX_ALERT_ID:
        return f"alert_id of {len(alert['alert_id']):,} characters: at most {MAX_ALERT_ID}"
    try:  # its fields as the workers write them; other fields (another producer's) are kept
        Alert.model_validate({name: alert[name] for name in Alert.model_fields if name in alert})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(the record)"
        return f"not an alert: {where}: {first['msg']}"
    try:  # a field nested deeper than the writer goes (255 levels) failed a whole JSON digest
        orjson.dumps(alert)
    except orjson.JSONEncodeError as error:
        return f"cannot be written as JSON again: {error}"
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
        self.kafka = KafkaAccess.of(settings)
        self.sent = KafkaSentLog(
            self.kafka,
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
        self.started = False  # every destination reads: until then /healthz says `starting`
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    def pending(self) -> dict[str, int]:
        """Alerts pending per destination, those with any."""
        return {worker.name: worker.pending for worker in self.workers if worker.pending}

    def paused(self) -> dict[str, float]:
        """Seconds each destination's reading has been paused (max_in_flight pending), those paused."""
        return {lane.name: s for lane in self.lanes if (s := lane.paused_s()) is not None}

    def health(self) -> dict[str, Any]:
        """`/healthz`: `degraded` while a destination's reading is paused (max_in_flight of its
        alerts pending: its alerts wait, the other destinations' do not), while the broker has
        not answered a destination for `BROKER_SILENT_S` (it said `ok` through an outage), or
        while a destination has retried one message for `RETRYING_S`."""
        in_flight = sum(lane.progress.in_flight() for lane in self.lanes)
        answer: dict[str, Any] = {"status": "ok", "in_flight": in_flight}
        paused = self.paused()
        if paused:
            answer |= {"status": "degraded", "paused_s": paused, "pending": self.pending()}
        silent = {
            lane.name: round(age, 1)
            for lane in self.lanes
            if (age := lane.broker_silent_s()) > BROKER_SILENT_S
        }
        if silent:
            answer |= {"status": "degraded", "broker_silent_s": silent}
        return answer | self._failing()

    def _failing(self) -> dict[str, Any]:
        """`/healthz`'s part on destinations retrying one message longer than `RETRYING_S` (it
        said `ok` while a destination refused every request), with each one's latest failure."""
        failing = [
            (worker, round(age, 1))
            for worker in self.workers
            if (age := worker.retrying_s()) is not None and age > RETRYING_S
        ]
        if not failing:
            return {}
        return {
            "status": "degraded",
            "retrying_s": {worker.name: age for worker, age in failing},
            "last_error": {worker.name: worker.last_error for worker, _ in failing},
        }

    async def run(self) -> None:
        loaded = await self.sent.start()
        log.info("dedupe log loaded", extra={"topic": self.sent.topic, "pairs": loaded})
        loop = asyncio.get_running_loop()
        kafka = self.kafka.client_options()
        self.lanes = [
            Lane(
                worker,
                self._consumer(lane_group(self.options.group_id, worker.name)),
                self.topic,
                self.config.max_in_flight,
                self.metrics,
                decode_alert,
                loop.time,
            )
            for worker in self.workers
        ]
        mark = Mark(AIOKafkaConsumer(**kafka, group_id=self.options.group_id, enable_auto_commit=False))
        workers: list[asyncio.Task[None]] = []
        readers: list[asyncio.Task[None]] = []
        started: list[Lane] = []
        marking = False
        try:
            await self._start_new_groups()
            await mark.start()
            marking = True
            for lane in self.lanes:
                await lane.start()
                started.append(lane)
            for lane in self.lanes:
                workers.append(asyncio.create_task(lane.worker.run(), name=f"notify:{lane.name}"))
                readers.append(asyncio.create_task(self._read(lane), name=f"notify-read:{lane.name}"))
            readers.append(asyncio.create_task(self._keep_mark(mark), name="notify-mark"))
            self.started = True
            log.info(
                "notifier started",
                extra={
                    "groups": [lane_group(self.options.group_id, w.name) for w in self.workers],
                    "destinations": [w.name for w in self.workers],
                },
            )
            stopping = asyncio.create_task(self._stopping.wait())
            try:  # until asked to stop, or a task ends (a worker that died would stall its destination)
                await asyncio.wait([stopping, *workers, *readers], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            for task in (*workers, *readers):
                if task.done():
                    task.result()
            await _cancelled(readers)  # read no more, then let what was read be delivered
            await self._drain()
        finally:
            await _cancelled([*workers, *readers])
            if marking:  # where the destinations stopped reading, for one added before the next start
                await _quietly(self._move_mark(mark), "the notifier's mark")
            await asyncio.gather(*(lane.stop() for lane in started))  # each bounded: 10 s in all
            if marking:
                await _quietly(mark.stop(), "the notifier's mark")
            await _quietly(self.sent.stop(), "the dedupe log")
            if isinstance(self.sender, HttpSender):
                await _quietly(self.sender.close(), "the HTTP session")

    def _consumer(self, group: str) -> AIOKafkaConsumer:
        """A destination's consumer. A partition its group has no offset for is read from its
        beginning: the group's start commits one for every partition there was
        (`streamer.notify.starts`), so such a partition appeared since, and all of it is new."""
        return AIOKafkaConsumer(
            **self.kafka.client_options(),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
        )

    async def _read(self, lane: Lane) -> None:
        """One destination's loop: read, hand over, commit and measure the lag every half second."""
        loop = asyncio.get_running_loop()
        last_commit = loop.time()
        while True:
            await lane.step()
            if loop.time() - last_commit >= COMMIT_INTERVAL_S:
                await lane.commit()
                await lane.update_lag()
                last_commit = loop.time()

    async def _keep_mark(self, mark: Mark) -> None:
        """Keep the notifier's mark at the furthest its destinations have read to."""
        while True:
            await asyncio.sleep(COMMIT_INTERVAL_S)
            await self._move_mark(mark)

    async def _move_mark(self, mark: Mark) -> None:
        try:
            positions = [await lane.positions() for lane in self.lanes]
        except Exception:  # a rebalance took a partition meanwhile: the next turn reads again
            return
        await mark.commit(furthest(positions))

    async def _start_new_groups(self) -> None:
        """Commit a starting point for each destination's group that has none: the notifier's
        mark, else the end or the beginning of each partition (`--start-from`); see
        `streamer.notify.starts`."""
        kafka = self.kafka.client_options()
        seconds = self.options.connect_timeout_s
        admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=15000)
        await admin.start()
        try:

            async def offsets_of(group: str) -> dict[TopicPartition, OffsetAndMetadata]:
                found = await retried(
                    lambda: admin.list_consumer_group_offsets(group), seconds, "reading offsets"
                )
                return of_topic(found, self.topic)

            fresh = [
                w.name
                for w in self.workers
                if not await offsets_of(lane_group(self.options.group_id, w.name))
            ]
            mark = await offsets_of(self.options.group_id) if fresh else {}
            described = await admin.describe_topics([self.topic]) if fresh else []
        finally:
            await admin.close()
        if not fresh:
            return
        # the topic's partitions: none while it is not there yet (then every alert is new)
        tps = [
            TopicPartition(self.topic, partition["partition"])
            for topic in described
            if topic["error_code"] == 0
            for partition in topic["partitions"]
        ]
        reader = await start_consumer(AIOKafkaConsumer(**kafka))
        try:
            beginnings = await reader.beginning_offsets(tps) if tps else {}
            ends = await reader.end_offsets(tps) if tps else {}
        finally:
            await close_consumer_or_warn(
                reader, CONSUMER_STOP_S, log, "could not close a reader of offsets cleanly"
            )
        start = starting_point(mark, beginnings, ends, self.options.start_from)
        for name in fresh:
            group = lane_group(self.options.group_id, name)
            if start:
                try:
                    await commit_as(
                        AIOKafkaConsumer(**kafka, group_id=group, enable_auto_commit=False), start
                    )
                except KafkaError as error:  # notifiers started together: another one was first
                    log.info(
                        "another notifier started this destination's group first",
                        extra={"destination": name, "group": group, "error": type(error).__name__},
                    )
                    continue
            where = "the notifier's mark" if mark else f"--start-from {self.options.start_from}"
            log.info(
                f"a destination's new group starts at {where}",
                extra={"destination": name, "group": group, "partitions": len(start)},
            )

    async def _drain(self) -> None:
        """On shutdown, give in-flight deliveries a moment so fewer are repeated on restart."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE_S
        for lane in self.lanes:
            lane.stopping = True  # a revocation from here on does not wait for a batch being sent
        while self._delivering() and loop.time() < deadline:
            await asyncio.sleep(0.1)

    def _delivering(self) -> bool:
        """Whether alerts read are still on their way to a destination that takes them (one that
        is failing will not take them in the shutdown's few seconds)."""
        return any(lane.progress.in_flight() and not lane.worker.retrying for lane in self.lanes)

    async def serve_metrics(self) -> web.AppRunner | None:
        """Serve /metrics and /healthz (`starting`, a 503, until every destination reads), or
        nothing without --metrics-port. Called before the broker is waited for and the groups
        are joined: a port taken or a host that is not this machine's raises MetricsUnavailable
        at once (it was a traceback once the groups were joined)."""
        if self.options.metrics_port is None:
            return None

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def healthz(_: web.Request) -> web.Response:
            if not self.started:
                return web.json_response({"status": "starting"}, status=503)
            return web.json_response(self.health())

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = self.options.metrics_host, self.options.metrics_port
        try:
            await web.TCPSite(runner, host, port).start()
        except (OSError, ValueError) as error:  # ValueError: the resolver cannot encode the host
            await runner.cleanup()
            raise metrics_unavailable(error, host, port) from None
        # The port listened on: the system's choice for --metrics-port 0 (the log said 0).
        served = next((address[1] for address in runner.addresses if isinstance(address, tuple)), port)
        log.info("metrics served", extra={"port": served})
        return runner


def metrics_unavailable(error: OSError | ValueError, host: str, port: int) -> MetricsUnavailable:
    """Which option to change, and why, when the metrics server cannot listen at host:port."""
    fault = listen_fault(error)
    if fault is ListenFault.NO_HOST_NAME:
        problem = host_name_problem(host) or f"{host!r} is not a host name ({error})"
    elif fault is ListenFault.UNKNOWN_HOST:
        problem = (
            f"{host!r} cannot be resolved ({getattr(error, 'strerror', error)}): give this machine's address"
        )
    elif fault is ListenFault.NOT_THIS_MACHINE:
        problem = f"{host!r} is not an address of this machine: give one of its addresses"
    elif fault is ListenFault.PORT_IN_USE:
        problem = f"port {port} on {host} is in use by another process: choose another port"
    elif fault is ListenFault.PORT_NEEDS_PRIVILEGE:
        problem = f"port {port} needs privileges this process has not: choose one from 1024"
    else:
        problem = f"cannot listen on {host} port {port} ({getattr(error, 'strerror', None) or error})"
    return MetricsUnavailable("--metrics-host" if fault.about_host else "--metrics-port", problem)


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _quietly(step: Awaitable[object], what: str) -> None:
    """One step of the shutdown, which never keeps the next from running."""
    try:
        async with asyncio.timeout(10.0):
            await step
    except Exception as error:
        log.warning(
            "could not close cleanly", extra={"what": what, "error": f"{type(error).__name__}: {error}"}
        )


def run_notifier(settings: Settings, config: NotifyConfig, options: NotifyOptions) -> None:
    """Run until SIGINT/SIGTERM. Raises BrokerUnavailable when no broker answers within
    `options.connect_timeout_s` at start-up (aiokafka's own error is a long traceback), and
    MetricsUnavailable when --metrics-host/--metrics-port cannot be listened on."""

    async def main() -> None:
        notifier = Notifier(settings, config, options)
        metrics = await notifier.serve_metrics()  # a mistaken option is refused before the wait
        try:
            await wait_for_broker(KafkaAccess.of(settings), options.connect_timeout_s, "delivering alerts")
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, notifier.stop)
            await notifier.run()
        finally:
            if metrics is not None:
                await _quietly(metrics.cleanup(), "the metrics server")

    asyncio.run(main())
