"""`streamer worker`, `streamer replay` and `streamer alerts tail`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click

from streamer.cli_options import (
    FloatRange,
    bootstrap_option,
    connect_timeout_option,
    events_argument,
    loglevel_option,
    partitions_option,
    quiet_option,
    score_config_option,
    settings_with,
)
from streamer.logs import configure_logging

if TYPE_CHECKING:
    from streamer.core.config import ScoreConfig
    from streamer.stream.replay import ReplaySummary

# The modules each command needs are imported when it runs, not for `streamer worker --help`.


def fail(command: str, error: Exception) -> NoReturn:
    """End the command with one line on stderr and exit code 1 (not a usage error)."""
    click.echo(f"streamer {command}: {error}", err=True)
    sys.exit(1)


def quiet_kafka_client_logs() -> None:
    """aiokafka logs every retry (NotLeaderForPartitionError on fresh topics, reconnects) as a
    warning; the commands report what matters themselves."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


@click.command("worker")
@bootstrap_option()
@partitions_option("Partitions of the input topics (default HEALTHSTREAM_PARTITIONS, 4).")
@score_config_option("Score configuration (TOML; default HEALTHSTREAM_SCORE_CONFIG, else the built-in one).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where RocksDB keeps table state (default HEALTHSTREAM_DATA_DIR, .local/worker).",
)
@click.option(
    "--store",
    type=click.Choice(["rocksdb://", "memory://"]),
    help="Table store (default HEALTHSTREAM_STORE, rocksdb://).",
)
@click.option(
    "--standby-replicas",
    type=click.IntRange(0, 16),
    help="Also keep standby copies of this many other workers' partition tables, for a fast "
    "failover (default HEALTHSTREAM_STANDBY_REPLICAS, 0).",
)
@loglevel_option()
@connect_timeout_option(60.0, "Seconds to wait for the broker at start-up before giving up (exit 1).")
def worker(
    bootstrap: str | None,
    partitions: int | None,
    config_path: Path | None,
    data_dir: Path | None,
    store: str | None,
    standby_replicas: int | None,
    loglevel: str,
    connect_timeout_s: float,
) -> None:
    """Run a stream worker: score events from the input topics, publish snapshots and alerts.

    Start several with the same settings to share the partitions (state moves with them
    through the changelog topics); the group's leader gives them out by the messages each
    holds, not by count. Stop with Ctrl-C or SIGTERM.
    """
    from streamer.cli_config import score_config_or_fail
    from streamer.stream.faust_imports import import_faust_types

    import_faust_types()  # before faust is imported: without aiohttp, which the worker never uses
    from streamer.stream.app import run_worker
    from streamer.stream.broker import BrokerUnavailable
    from streamer.stream.topics import TopicsUnusable

    settings = settings_with(
        kafka_bootstrap=bootstrap,
        partitions=partitions,
        data_dir=data_dir,
        store=store,
        score_config=config_path,
        standby_replicas=standby_replicas,
    )
    config = score_config_or_fail(settings.score_config)
    configure_logging(loglevel)
    from streamer.native import running
    from streamer.stream.faust_private import problems

    log = logging.getLogger(__name__)
    log.info(running())  # which core runs: the first line of the log
    log.info(score_config_line(settings.score_config, config))  # and what it scores with

    from streamer.stream.local_stores import data_dir_problem

    if unusable := data_dir_problem(settings.data_dir):
        raise click.ClickException(unusable)
    if found := problems():  # an upgraded faust: the guarantees that lean on its internals
        raise click.ClickException(
            "the installed faust lacks what the worker relies on: "
            + "; ".join(found)
            + " (install the faust-streaming version pinned in requirements.lock)"
        )
    try:
        run_worker(settings, config, loglevel, connect_timeout_s)
    except (BrokerUnavailable, TopicsUnusable) as error:
        fail("worker", error)


def score_config_line(path: Path | None, config: ScoreConfig) -> str:
    """The worker's second log line: which score configuration it runs, and whether a [model]
    makes its snapshots carry churn_risk_60d."""
    source = f"score config: {path}" if path is not None else "score config: the built-in defaults"
    if config.model is None:
        return f"{source}, no [model] (churn_risk_60d null)"
    return f"{source}, [model] {config.model.version!r} (churn_risk_60d published)"


@click.command("replay")
@events_argument()
@bootstrap_option()
@click.option(
    "--rate",
    type=FloatRange(min=0, min_open=True),
    help="At most this many events per second (default: as fast as the broker takes them).",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=120.0,
    show_default=True,
    type=FloatRange(min=0, min_open=True),
    help="Give up (exit 1) when the broker accepts nothing for this many seconds.",
)
@quiet_option("No progress bar (a stalled broker is still reported).")
def replay(events: Path, bootstrap: str | None, rate: float | None, timeout_s: float, quiet: bool) -> None:
    """Publish EVENTS (JSON lines, optionally .gz) to the input topics, keyed by account_id.

    Each line goes to the topic of its event type's family (subscriptions, usage, tickets,
    surveys). Lines no topic and key can be read from (no known event_type, not JSON) are skipped,
    counted and the first one named (`streamer offline` dead-letters them). When the broker goes
    away (a restart), replay waits for it, shows the stall and sends every unacknowledged
    event again: nothing is lost, an event may reach Kafka twice (the worker ignores a
    repeated event_id). It gives up after --timeout seconds without the broker.
    """
    from streamer.offline.runner import open_events
    from streamer.stream.replay import BrokerUnavailable, Interrupted, publish
    from streamer.stream.topics import TopicsUnusable

    settings = settings_with(kafka_bootstrap=bootstrap)
    quiet_kafka_client_logs()
    _has_a_line(events)
    size = events.stat().st_size
    label = f"publishing {events.name}"
    with (
        open_events(events) as handle,
        click.progressbar(length=size, label=label, file=sys.stderr, hidden=quiet, show_pos=False) as bar,
    ):
        raw = handle.fileobj if hasattr(handle, "fileobj") else handle
        position = 0
        stalled = False

        def progress(_count: int) -> None:
            nonlocal position
            now = raw.tell()
            bar.update(now - position)
            position = now

        def stall(seconds: float | None) -> None:
            nonlocal stalled
            if seconds is None:
                bar.label = label
                message = "the broker answers again; sent the unacknowledged events again"
            else:
                bar.label = f"{label} (broker not answering for {seconds:.0f} s, retrying)"
                message = f"the broker at {settings.kafka_bootstrap} stopped acknowledging; retrying"
            if quiet and (seconds is None) == stalled:  # one line when it stalls, one when it is back
                click.echo(f"streamer replay: {message}", err=True)
            stalled = seconds is not None
            bar.render_progress()

        interrupted = threading.Event()

        async def running() -> ReplaySummary:
            # Ctrl-C cancels the task (asyncio.run's handler, kept), and is noted: under load a
            # library await swallowed the cancellation and the replay ran on to exit 0.
            cancel = signal.getsignal(signal.SIGINT)

            def on_sigint(signum: int, frame: FrameType | None) -> None:
                interrupted.set()
                if callable(cancel):
                    cancel(signum, frame)

            signal.signal(signal.SIGINT, on_sigint)
            return await publish(
                handle,
                settings,
                rate=rate,
                timeout_s=timeout_s,
                on_progress=progress,
                on_stall=stall,
                stopped=interrupted.is_set,
            )

        try:
            summary = asyncio.run(running())
            if interrupted.is_set():
                raise Interrupted
        except (BrokerUnavailable, TopicsUnusable) as error:
            bar.render_finish()
            fail("replay", error)
        except (KeyboardInterrupt, Interrupted):
            bar.render_finish()
            # The progress callback moves `position` every 5,000 lines only: an interrupt before
            # the first of them said "byte 0" however many events had been sent.
            with contextlib.suppress(OSError, ValueError):
                position = raw.tell()
            click.echo(
                f"streamer replay: interrupted at byte {position:,} of {size:,}; what was sent stays"
                " in Kafka, and publishing the file again is safe (the worker ignores repeated event ids)",
                err=True,
            )
            sys.exit(130)
        bar.update(size - position)
    per_topic = ", ".join(f"{topic} {count:,}" for topic, count in sorted(summary.sent.items()))
    again = (
        f"; {summary.resent:,} sent again after {summary.stalls} broker stall(s) (repeats are ignored "
        "by the worker)"
        if summary.stalls
        else ""
    )
    skipped = f"{summary.skipped:,} lines skipped"
    if summary.first_skipped is not None:
        number, why = summary.first_skipped
        skipped += f" (no topic and key could be read from them; the first, line {number:,}: {why:.200})"
    click.echo(
        f"published {summary.total:,} events in {summary.seconds:.1f} s "
        f"({summary.total / max(summary.seconds, 1e-9):,.0f}/s){': ' + per_topic if per_topic else ''}; "
        f"{skipped}{again}"
    )
    if summary.total == 0:  # as `streamer offline` on the same file: a run that did nothing fails
        raise click.ClickException(
            _holds_no_events(events)
            if summary.skipped == 0
            else f"nothing published: no line of {events} is an event (tables go through `streamer import`)"
        )


def _has_a_line(events: Path) -> None:
    """Read EVENTS up to its first line that is not blank before the broker is asked for: an
    empty, blank or damaged file waited out --timeout without a broker, then spoke only of the
    broker. A damaged .gz raises `UnreadableInput` (one line, exit 1)."""
    from streamer.contract.decode import JSON_WHITESPACE
    from streamer.offline.runner import open_events

    if not events.is_file():  # a pipe is read once: what this read would be lost to the replay
        return
    with open_events(events) as handle:
        if not any(line.strip(JSON_WHITESPACE) for line in handle):
            raise click.ClickException(_holds_no_events(events))


def _holds_no_events(events: Path) -> str:
    return f"nothing published: {events} holds no events"


@click.group("alerts")
def alerts() -> None:
    """Watch the alerts topic."""


@alerts.command("tail")
@bootstrap_option()
@click.option("--from-beginning", is_flag=True, help="Start with the oldest alert instead of new ones.")
@click.option("--json", "as_json", is_flag=True, help="Print each alert as its JSON record.")
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Stop after this many alerts.")
@click.option(
    "--timeout",
    type=FloatRange(min=0, min_open=True),
    help="Stop after this many seconds (above 0; default: until Ctrl-C or --limit).",
)
@connect_timeout_option(30.0, "Seconds to wait for the broker before giving up (exit 1).")
def tail_command(
    bootstrap: str | None,
    from_beginning: bool,
    as_json: bool,
    limit: int | None,
    timeout: float | None,
    connect_timeout_s: float,
) -> None:
    """Print alerts as they arrive (Ctrl-C to stop)."""
    from streamer.stream.broker import BrokerUnavailable
    from streamer.stream.tail import NoAlertsTopic, format_alert, json_line, shown, tail

    settings = settings_with(kafka_bootstrap=bootstrap)

    def emit(alert: dict[str, Any]) -> None:
        click.echo(json_line(alert) if as_json else format_alert(alert))

    quiet_kafka_client_logs()
    following = tail(
        settings,
        emit,
        from_beginning=from_beginning,
        limit=limit,
        timeout_s=timeout,
        connect_timeout_s=connect_timeout_s,
        skipped=lambda why: click.echo(f"skipped a record that is not an alert: {shown(why)}", err=True),
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(following)
    except (BrokerUnavailable, NoAlertsTopic) as error:
        fail("alerts tail", error)
