"""The faust app: one agent over the four co-partitioned input topics, two tables, three outputs."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

import faust
from faust.types.auth import CredentialsT

from streamer.collector import collect_less
from streamer.core.config import ScoreConfig
from streamer.logs import configure_logging
from streamer.projection.factory import redis_projection
from streamer.projection.memory import MemoryWatch
from streamer.projection.redis_writer import KEEP_ALERTS, RedisProjection
from streamer.projection.resync import Resync
from streamer.projection.stats import CommitWatch, RecentLatency, worker_stats
from streamer.settings import Settings
from streamer.state.codec import StateDecodeError
from streamer.stream import bounded_batches, table_keys
from streamer.stream.access import KafkaAccess
from streamer.stream.assignor import BalancedAssignor, InputLoads
from streamer.stream.broker import wait_for_broker
from streamer.stream.consumer import PromptTableManager, RebalanceSafeConsumer, ScoringApp
from streamer.stream.dead_letters import KafkaDeadLetters
from streamer.stream.faust_imports import NoHttpClient
from streamer.stream.faust_private import (
    committed_offsets,
    recovery_loop_running,
    recovery_started,
    without_autodiscovery_marks,
)
from streamer.stream.input_lane import InputLane
from streamer.stream.local_stores import open_local_stores, stopped_cleanly
from streamer.stream.loop_watch import LoopWatch
from streamer.stream.membership import Fence
from streamer.stream.offsets import ConsumerOffsets
from streamer.stream.recent_alerts import recent_alerts
from streamer.stream.scorer import CHECKPOINT_EVERY_S, Scorer
from streamer.stream.sink import KafkaSink
from streamer.stream.stalls import STALL_S
from streamer.stream.stuck import RebalanceWatch, recovery_loop_ended
from streamer.stream.tables import DurableTable, TablesWritten
from streamer.stream.topics import (
    CHANGELOG_RECORD_MAX_BYTES,
    INPUT_RECORD_MAX_BYTES,
    TABLES,
    describe_inputs,
    ensure_topics,
)

log = logging.getLogger(__name__)

BATCH_MAX = 4000  # messages per batch, about (one table write per account per checkpoint)
FETCH_MAX = 1000  # records per fetch: a fetch is never split, so this bounds a batch's overshoot
PARTITION_FETCH_BYTES = 128 * 1024
"""Bytes the broker returns per partition and fetch (faust's default: 1 MiB). aiokafka hands a
fetch's records out partition by partition, so with a backlog the busy topics' partitions came
first, a MiB each, and the watermark merge could release nothing until the small topics of the
same partitions had delivered: 60,000 messages held for 1.3 s at every start on 16 partitions.
Larger records still come, one batch at a time (the broker returns a first batch whatever its
size)."""
PROJECT_EVERY_S = 1.0  # write staged projection data left over by batches, re-stage new partitions
STATS_EVERY_S = 5.0  # stage the worker's counters and consumer lag for /metrics and /healthz
MEMORY_EVERY_S = 10.0  # check that Redis can keep the projection (its memory limit and policy)
STALLED_WARN_S = 60.0  # input waiting this long with nothing committed: say so in the log
LOADS_EVERY_S = 30.0  # ask the broker how many messages each input partition holds (the assignor's)
LIMIT_EVERY_S = 30.0  # ask the broker how large a record the input topics take

# Per partition store (faust opens one RocksDB per table partition). faust's defaults are sized
# for a store that is read from: 64 MiB write buffers x 3 and a 2 GiB block cache each. Here
# every account read is cached decoded in the worker, so RocksDB only takes the writes and the
# first read after a recovery; with the defaults a recovered partition's whole changelog stayed
# in its write buffers, resident next to the decoded accounts.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 4 * 1024 * 1024,
}


EXIT_FAILED = 70  # the process exit code when processing failed outside one message's handling
STOP_GRACE_S = 8.0  # after SIGTERM/SIGINT, the orderly shutdown gets this long before the exit


def exit_after(grace_s: float) -> threading.Timer:
    """Start a watchdog that ends the process `grace_s` from now unless it has ended by then.

    A backstop: the orderly shutdown first leaves the batch in flight (`Scorer.stop`), so it
    should never fire; it once did about one run in two, when faust closed the tables under a
    batch that then waited for ever on the stopped producer. When it fires it logs where every
    task waits. Exiting is safe at any point, as after a SIGKILL: nothing is acknowledged before
    its effects are in Kafka, so a restart reads again whatever was in flight.
    """

    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def expire() -> None:
        log.warning(
            f"the orderly shutdown did not finish within {grace_s:g} s; exiting now (safe: "
            "unacknowledged messages are read again at the next start)",
            extra={"waiting": pending_tasks(loop)} if loop is not None else {},
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(0)

    timer = threading.Timer(grace_s, expire)
    timer.daemon = True  # never keeps a process alive that finished its shutdown
    timer.start()
    return timer


def pending_tasks(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Where each unfinished task of `loop` waits: its chain of awaits, outermost first, down to
    the future it is suspended on. For the log of a shutdown that hangs (read from the watchdog's
    thread, so a task set that changes meanwhile is simply read again)."""
    for _ in range(5):
        try:
            tasks = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:  # the set changed while it was read
            continue
    else:
        return []
    return sorted(f"{task.get_name()}: {awaits(task.get_coro())}" for task in tasks)


def awaits(coro: Any, depth: int = 40) -> str:
    """`f (file:line) -> g (file:line) -> <Future pending>`: what a suspended coroutine awaits,
    through `await obj` of objects whose `__await__` wraps another coroutine."""
    parts: list[str] = []
    while coro is not None and len(parts) < depth:
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is None:
            inner = [r for r in gc.get_referents(coro) if hasattr(r, "cr_frame") or hasattr(r, "ag_frame")]
            if inner and type(coro).__name__ in ("coroutine_wrapper", "async_generator_asend"):
                coro = inner[0]
                continue
            parts.append(repr(coro)[:200])
            break
        where = "/".join(frame.f_code.co_filename.rsplit("/", 2)[-2:])
        parts.append(f"{frame.f_code.co_name} ({where}:{frame.f_lineno})")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return " -> ".join(parts)


def fatal(what: str, exc: BaseException) -> NoReturn:
    """Log why, flush the logs and end the process with `EXIT_FAILED`.

    For an error outside the handling of one message (a bad message is dead-lettered instead):
    a process that stays up with its agent stopped would consume nothing, unnoticed. Nothing is
    committed past what was applied and acknowledged, so a restart reads the rest again.
    """
    advice = (
        "its stored state cannot be used as it is (the error says why and what to do): a restart "
        "meets it again"
        if isinstance(exc, StateDecodeError)
        else "restart it: it resumes from the committed offsets"
    )
    log.critical(
        f"{what} failed; the worker exits with {EXIT_FAILED} ({advice})",
        exc_info=exc,
        extra={"error": f"{type(exc).__name__}: {exc}"},
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_FAILED)


async def consume(
    batches: AsyncIterable[Sequence[Any]],
    process: Callable[[Sequence[Any]], Awaitable[None]],
    on_failure: Callable[[str, BaseException], None] = fatal,
) -> None:
    """Feed each batch to `process`; any error ends the process (`on_failure`), a cancellation
    (the app stopping) is passed on."""
    try:
        async for batch in batches:
            await process(batch)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        on_failure("the scoring agent", exc)


async def guarded(
    what: str, work: Callable[[], Awaitable[None]], on_failure: Callable[[str, BaseException], None] = fatal
) -> None:
    """Run one timer's work; an error ends the process like an agent's (`fatal`)."""
    try:
        await work()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        on_failure(what, exc)


def create_app(settings: Settings, config: ScoreConfig, *, store: str | None = None) -> faust.App:
    """Build the worker app; `store` overrides the table store (`memory://` in unit tests)."""
    bounded_batches.install(settings.max_batch_expanded_mb * bounded_batches.MiB)
    # faust's autodiscovery marks on the agent and timers cost 0.23 CPU s (see the function).
    with without_autodiscovery_marks():
        return _build_app(settings, config, store)


def faust_credentials(kafka: KafkaAccess) -> CredentialsT | None:
    """`kafka`'s TLS and SASL as faust's `broker_credentials` (None: PLAINTEXT)."""
    if kafka.sasl:
        return faust.SASLCredentials(
            username=kafka.username,
            password=kafka.password,
            ssl_context=kafka.ssl_context(),
            mechanism=kafka.mechanism,
        )
    context = kafka.ssl_context()
    return None if context is None else faust.SSLCredentials(context)


FAUST_REQUEST_TIMEOUT_S = 90.0  # faust's default `broker_request_timeout`

# A request holds at least one record: the largest account record the changelog takes, with room
# for the request's own framing.
PRODUCER_MAX_REQUEST_BYTES = CHANGELOG_RECORD_MAX_BYTES + 64 * 1024


def _build_app(settings: Settings, config: ScoreConfig, store: str | None) -> faust.App:
    kafka = KafkaAccess.of(settings)
    app = ScoringApp(
        settings.app_id,
        # faust reads some eighty environment variables of its own over what it is given here
        # (`BROKER_URL`, which Celery uses too, `TOPIC_PARTITIONS`, `BROKER_SESSION_TIMEOUT`,
        # ...): the worker's settings are `HEALTHSTREAM_*`, validated once, and nothing else.
        env={},
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_credentials(kafka),
        store=store or settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        broker_session_timeout=settings.session_timeout_s,
        # faust refuses a session longer than its request timeout (90 s by default): a worker
        # with a session of 90-1800 s, which the settings allow, ended in a traceback at start.
        broker_request_timeout=max(FAUST_REQUEST_TIMEOUT_S, settings.session_timeout_s),
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        stream_wait_empty=False,  # held (unacknowledged) messages are simply read again
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        # No linger: every record the worker produces is followed by the checkpoint's flush, and
        # aiokafka's flush waits out the linger of the batches it finds (it does not send them
        # early), so 5 ms of linger cost two idle 5 ms waits per checkpoint, on the path of
        # every alert. The records of one flush still go out batched: they are all handed to the
        # producer before the checkpoint awaits anything.
        producer_linger_ms=0,
        producer_max_batch_size=256 * 1024,
        # Above the broker's default message.max.bytes (1 MiB): an input event the broker took
        # may have to be re-routed (keyless, or another partitioner's), and faust's 1,000,000
        # refused such an event before it left, for ever, holding up the whole worker.
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        stream_buffer_maxsize=BATCH_MAX * 2,
        # Without a cap one fetch returned everything the broker had (16,000 records and more on
        # a backlog): one batch, no commit for minutes on a loaded machine.
        broker_max_poll_records=FETCH_MAX,
        consumer_max_fetch_size=PARTITION_FETCH_BYTES,
        # How soon the group sees an input topic created again after a delete (nothing fetched
        # from it asks for metadata): 5 minutes by default, a stall of the topic until then.
        consumer_metadata_max_age_ms=30_000,
        Table=DurableTable,  # a checkpoint waits for its changelog records (stream/tables.py)
        TableManager=PromptTableManager,  # joins the group a second sooner at start-up
        HttpClient=NoHttpClient,  # faust's default would import aiohttp (stream/faust_imports.py)
        # No leader election: nothing runs `on_leader`, and faust's leader topic was one more
        # topic created at start-up (before the group join) and fetched with the inputs.
        topic_disable_leader=True,
        PartitionAssignor=BalancedAssignor,  # partitions balanced by their input messages
    )
    # Keys are account ids (JSON strings in the changelog, a key that is not JSON read as an
    # `UnreadableKey`: see stream/table_keys.py); values are our own serialised state.
    schema: Any = faust.Schema(
        key_type=str, value_type=bytes, key_serializer=table_keys.CODEC, value_serializer="raw"
    )
    # key_type/value_type again: faust picks the store's (de)serialisers from these alone, and
    # without them reads the raw values back as JSON when it recovers a table.
    tables: dict[str, Any] = {
        "schema": schema,
        "key_type": str,
        "value_type": bytes,
        "partitions": settings.partitions,
    }
    if (store or settings.store).startswith("rocksdb"):
        tables["options"] = dict(ROCKSDB_OPTIONS)
    accounts_name, clocks_name = TABLES  # their changelogs are created up front by ensure_topics
    accounts = app.Table(accounts_name, **tables)
    clocks = app.Table(clocks_name, **tables)
    dead_letters = KafkaDeadLetters(kafka, settings.topic("deadletter"))
    offsets = ConsumerOffsets(app, kafka)
    # holds applying and writing while the membership is in doubt; a rebalance drops what waits
    fence = Fence(offsets.member_problem, rebalancing=lambda: not offsets.settled())
    sink = KafkaSink(app, settings, dead_letters, fence)
    projection = redis_projection(settings, config)
    lane = InputLane(settings.input_topics.values())
    app.input_lane = lane  # type: ignore[attr-defined]  # the consumer hands input fetches to it
    inputs = settings.input_topics.values()
    loads = InputLoads(ConsumerOffsets(app, kafka), inputs, settings.partitions)
    app.input_loads = loads  # type: ignore[attr-defined]  # what the group's leader balances

    def acknowledge(messages: Sequence[Any]) -> None:
        consumer = cast(RebalanceSafeConsumer, app.consumer)
        consumer.ack_inputs(messages)

    scorer = Scorer(
        settings,
        config,
        accounts,
        clocks,
        sink,
        offsets,
        projection=projection,
        acknowledge=acknowledge,
        dead_letters=dead_letters,
        checkpoint_every_s=CHECKPOINT_EVERY_S,
        overlap=True,  # a checkpoint's waits on the broker overlap the next batches
        changelogs=TablesWritten(cast(DurableTable, accounts), cast(DurableTable, clocks)),
        fence=fence,
    )
    app.scorer = scorer  # type: ignore[attr-defined]
    app.fence = fence  # type: ignore[attr-defined]  # the producer holds its requests at it
    source = app.topic(
        *settings.input_topics.values(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    # The agent subscribes the group to the input topics (faust assigns, seeks and commits them),
    # but their records reach it through the input lane, not faust's stream: a batch is every
    # fetch that arrived while the previous batch ran. Concurrency 1: one batch at a time.
    @app.agent(source, concurrency=1)
    async def score(stream: Any) -> None:
        # The scorer acknowledges each message once its effects are durable (`Checkpoint`).
        # A failure here ends the process: faust would leave it up with the agent stopped.
        await consume(lane.batches(BATCH_MAX), scorer.process)

    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        await scorer.revoked()

    async def on_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        await scorer.assigned()
        lane.restart()  # the first batch after an assignment is one fetch: an earlier commit

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]

    async def stop_scoring() -> None:
        exit_after(STOP_GRACE_S)  # a backstop: the orderly shutdown should never need it
        await scorer.stop()
        # faust's stores run a full gc.collect() as each table closes: over a worker's heap of
        # decoded accounts that took seconds per table on a busy machine. Nothing allocated so
        # far needs collecting any more (the process ends after the shutdown).
        gc.freeze()

    app.before_stop.append(stop_scoring)

    async def close_offsets(sender: Any, **kwargs: Any) -> None:
        await offsets.close()
        await loads.close()
        await dead_letters.close()

    app.on_before_shutdown.connect(close_offsets)  # type: ignore[arg-type]

    @app.timer(interval=0.5)  # type: ignore[untyped-decorator]
    async def release_idle() -> None:
        await guarded("releasing held messages", scorer.release_idle)

    @app.timer(interval=STALL_S / 2)  # type: ignore[untyped-decorator]
    async def reread_stalled() -> None:
        await guarded("re-reading stalled partitions", scorer.reread_stalled)

    @app.timer(interval=LOADS_EVERY_S)  # type: ignore[untyped-decorator]
    async def measure_loads() -> None:
        await loads.measure()  # never fails: the loads stay as they were when the broker is away

    @app.task  # type: ignore[untyped-decorator]
    async def watch_input_limit() -> None:
        # A keyless event is re-published keyed; a copy the topics refuse is dead-lettered
        # instead (where the worker could not set `topics.INPUT`, or an operator lowered it).
        while True:
            now = await describe_inputs(kafka, list(inputs))
            limit = now.record_limit
            other = {n: c for n, c in (now.partitions or {}).items() if c != settings.partitions}
            if other:  # its events are re-routed to their account's partition among ours
                log.error(
                    "input topics have another partition count than the workers",
                    extra={
                        "topics": other,
                        "partitions": settings.partitions,
                        "effect": "events on a partition their account does not have among "
                        "HEALTHSTREAM_PARTITIONS are re-routed to it; a restart refuses these topics",
                    },
                )
            if limit is not None and limit != scorer.input_record_limit:
                level = logging.WARNING if limit < INPUT_RECORD_MAX_BYTES else logging.INFO
                log.log(
                    level,
                    "input topics' record limit",
                    extra={
                        "max_message_bytes": limit,
                        "was": scorer.input_record_limit,
                        "effect": "a keyless event whose keyed copy is larger is dead-lettered",
                    },
                )
                scorer.input_record_limit = limit
            await asyncio.sleep(LIMIT_EVERY_S)

    logged_latency = RecentLatency()
    rebalance = RebalanceWatch()  # a rebalance that does not end: where each task waits
    watch = LoopWatch(("progress", "stats"))
    commits = CommitWatch()
    input_topics = set(inputs)

    def input_state() -> tuple[dict[int, int], float]:
        """Consumer lag per partition, and how long input has waited with nothing committed."""
        committed, lag = input_progress(app, input_topics)
        recovering = bool(getattr(app, "in_recovery", False))  # faust's, while tables recover
        return lag, commits.read(committed, sum(lag.values()), time.monotonic(), recovering=recovering)

    @app.task  # type: ignore[untyped-decorator]
    async def watch_loop() -> None:
        await watch.run()

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def report_progress() -> None:
        c = scorer.counters
        lag, stalled_s = input_state()
        rebalance.check(bool(app.rebalancing), time.monotonic(), asyncio.all_tasks)
        ended = recovery_loop_ended(recovery_started(app), recovery_loop_running(asyncio.all_tasks()))
        if ended is not None and not app.should_stop:
            fatal("the table recovery", RuntimeError(ended))
        if stalled_s >= STALLED_WARN_S:
            log.warning(
                "input waiting and nothing committed",
                extra={
                    "stalled_s": round(stalled_s),
                    "lag": sum(lag.values()),
                    "hint": "an earlier warning says what the worker is waiting for",
                },
            )
        log.info(
            "progress",
            extra={
                "processed": c.processed,
                "accepted": c.accepted,
                "duplicates": c.duplicates,
                "rejected": c.rejected,
                "rerouted": c.rerouted,
                "copies_again": c.copies_again,
                "stale": c.stale,
                "reread": c.reread,
                "rereads": c.rereads,
                "offset_gaps": c.offset_gaps + c.consumer_gaps,
                "gap_rereads": c.gap_rereads,
                "empty_offsets": c.empty_offsets,
                "alerts": c.alerts,
                "snapshots": c.snapshots,
                "batches": c.batches,
                "latency_s": round(logged_latency.read(c), 3),
                "loop_stall_s": round(watch.longest("progress"), 3),  # the longest since the last line
                "lag": sum(lag.values()),  # input not yet committed, open transactions' included
                "stalled_s": round(stalled_s, 1),
            },
        )

    del score, release_idle, reread_stalled, measure_loads, watch_input_limit, watch_loop, report_progress
    if projection is not None:
        _project(app, settings, kafka, scorer, projection, watch, input_state)
    return app


def input_progress(app: faust.App, topics: set[str]) -> tuple[dict[Any, int], dict[int, int]]:
    """The committed offsets of the input partitions assigned to this worker, and per partition
    the messages of the input topics not yet committed, those of open transactions included: a
    transaction left open holds its partition's later events back (read committed) for up to
    the broker's transaction timeout, and the lag, `stalled_s` and /healthz say so."""
    consumer = app.consumer
    log_end = getattr(consumer, "log_end", consumer.highwater)  # ours counts open transactions
    committed = committed_offsets(consumer)
    done: dict[Any, int] = {}
    lag: dict[int, int] = {}
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        done[tp] = int(committed.get(tp) or 0)
        try:
            highwater = log_end(tp)
        except Exception:  # unknown until the first fetch of that partition
            continue
        if highwater is None:
            continue
        lag[tp.partition] = lag.get(tp.partition, 0) + max(0, int(highwater) - done[tp])
    return done, lag


def _project(
    app: faust.App,
    settings: Settings,
    kafka: KafkaAccess,
    scorer: Scorer,
    projection: RedisProjection,
    watch: LoopWatch,
    input_state: Callable[[], tuple[dict[int, int], float]],
) -> None:
    """Timers that keep the Redis projection complete, and its final write at shutdown."""
    alerts_topic = settings.topic("alerts")

    async def alerts_of(partition: int) -> list[dict[str, Any]]:
        return await recent_alerts(kafka, alerts_topic, partition, KEEP_ALERTS)

    resync = Resync(projection, lambda: scorer.engines, scorer.lock, alerts_of)
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    started_at = time.time()
    latency = RecentLatency()

    @app.timer(interval=PROJECT_EVERY_S)  # type: ignore[untyped-decorator]
    async def project() -> None:
        # Every owned partition is re-staged, not only those that receive messages: a worker
        # killed with writes staged and unwritten leaves Redis behind Kafka until then.
        await guarded("opening the assigned partitions", scorer.open_assigned)
        await resync.run()

    @app.timer(interval=STATS_EVERY_S)  # type: ignore[untyped-decorator]
    async def stage_stats() -> None:
        lag, stalled_s = input_state()
        stats = worker_stats(
            scorer.counters,
            lag,
            started_at=started_at,
            now=time.time(),
            projection_pending=projection.pending,
            projection_failures=projection.failures,
            projection_skipped_writes=projection.skipped_writes,
            projection_pruned_alerts=projection.pruned_alerts,
            latency_s=latency.read(scorer.counters),
            loop_stall_s=watch.longest("stats"),
            stalled_s=stalled_s,
            fenced=scorer.fence.episodes,
        )
        projection.worker(worker_id, stats)
        await projection.flush()

    memory = MemoryWatch(projection.redis)

    @app.timer(interval=MEMORY_EVERY_S)  # type: ignore[untyped-decorator]
    async def watch_memory() -> None:
        await memory.check()

    async def close_projection(sender: Any, **kwargs: Any) -> None:
        await projection.close(timeout_s=3.0)

    app.on_before_shutdown.connect(close_projection)  # type: ignore[arg-type]
    del project, stage_stats, watch_memory


def run_worker(
    settings: Settings, config: ScoreConfig, loglevel: str = "info", connect_timeout_s: float = 60.0
) -> None:
    """Run one worker process until stopped (SIGINT/SIGTERM); BrokerUnavailable when no broker
    answers within `connect_timeout_s` at start-up."""
    asyncio.run(wait_for_broker(KafkaAccess.of(settings), connect_timeout_s, "starting the worker"))
    asyncio.run(ensure_topics(settings))
    app = create_app(settings, config)
    # Before the group join, so that the first assignment this worker makes as leader has them.
    asyncio.run(app.input_loads.measure_before_start())  # type: ignore[attr-defined]
    if settings.store.startswith("rocksdb"):
        open_local_stores(Path(app.conf.tabledir), settings.data_dir, settings.app_id)
    collect_less()  # the modules, classes and app built so far live as long as the process
    worker = JsonLogWorker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        # faust has stopped everything and closed its loop (the stores are closed, the producer
        # flushed). Exit now: the interpreter's own teardown of a large heap took seconds more
        # on a busy machine, and the watchdog cannot end it then.
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if code == 0 and app.scorer.stopped:  # type: ignore[attr-defined]
            stopped_cleanly(settings.data_dir)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class JsonLogWorker(faust.Worker):
    """A faust worker that logs one JSON object per line (faust installs its own handler)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # faust's terminal spinner wrote cursor escape codes (and " OK ^") into the log at
        # start-up; without it faust logs "Ready" like any other line.
        self.spinner = None
        configure_logging(logging.getLevelName(level or logging.INFO).lower())
        for noisy in ("aiokafka", "faust.transport", "faust.tables", "mode"):
            logging.getLogger(noisy).setLevel(max(level or logging.INFO, logging.WARNING))
