"""`streamer worker`, `streamer replay` and `streamer alerts tail`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from streamer.cli_config import score_config_or_fail
from streamer.logs import configure_logging
from streamer.offline.runner import open_events
from streamer.settings import Settings


def _settings(**overrides: Any) -> Settings:
    values = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**values)


@click.command("worker")
@click.option(
    "--bootstrap", help="Kafka bootstrap servers (default HEALTHSTREAM_KAFKA_BOOTSTRAP, 127.0.0.1:9092)."
)
@click.option(
    "--partitions", type=click.IntRange(1, 1024), help="Partitions of the input topics (default 4)."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Score configuration (TOML).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where RocksDB keeps table state (default .local/worker).",
)
@click.option(
    "--store", type=click.Choice(["rocksdb://", "memory://"]), help="Table store (default rocksdb://)."
)
@click.option(
    "--loglevel", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"])
)
def worker(
    bootstrap: str | None,
    partitions: int | None,
    config_path: Path | None,
    data_dir: Path | None,
    store: str | None,
    loglevel: str,
) -> None:
    """Run a stream worker: score events from the input topics, publish snapshots and alerts.

    Start several with the same settings to share the partitions (state moves with them
    through the changelog topics). Stop with Ctrl-C or SIGTERM.
    """
    from streamer.stream.app import run_worker

    settings = _settings(
        kafka_bootstrap=bootstrap,
        partitions=partitions,
        data_dir=data_dir,
        store=store,
        score_config=config_path,
    )
    config = score_config_or_fail(settings.score_config)
    configure_logging(loglevel)
    run_worker(settings, config, loglevel)


@click.command("replay")
@click.argument("events", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--bootstrap", help="Kafka bootstrap servers (default HEALTHSTREAM_KAFKA_BOOTSTRAP).")
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), help="At most this many events per second."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def replay(events: Path, bootstrap: str | None, rate: float | None, quiet: bool) -> None:
    """Publish EVENTS (JSON lines, optionally .gz) to the input topics, keyed by account_id.

    Each line goes to the topic of its event type's family (subscriptions, usage, tickets,
    surveys). Lines without a known event_type are skipped and counted.
    """
    from streamer.stream.replay import publish
    from streamer.stream.topics import ensure_topics

    settings = _settings(kafka_bootstrap=bootstrap)
    asyncio.run(ensure_topics(settings))
    size = events.stat().st_size
    with (
        open_events(events) as handle,
        click.progressbar(
            length=size, label=f"publishing {events.name}", file=sys.stderr, hidden=quiet, show_pos=False
        ) as bar,
    ):
        raw = handle.fileobj if hasattr(handle, "fileobj") else handle
        position = 0

        def progress(_count: int) -> None:
            nonlocal position
            now = raw.tell()
            bar.update(now - position)
            position = now

        summary = asyncio.run(publish(handle, settings, rate=rate, on_progress=progress))
        bar.update(size - position)
    per_topic = ", ".join(f"{topic} {count:,}" for topic, count in sorted(summary.sent.items()))
    click.echo(
        f"published {summary.total:,} events in {summary.seconds:.1f} s "
        f"({summary.total / max(summary.seconds, 1e-9):,.0f}/s): {per_topic}; "
        f"{summary.skipped:,} lines skipped (no known event_type)"
    )


@click.group("alerts")
def alerts() -> None:
    """Watch the alerts topic."""


@alerts.command("tail")
@click.option("--bootstrap", help="Kafka bootstrap servers (default HEALTHSTREAM_KAFKA_BOOTSTRAP).")
@click.option("--from-beginning", is_flag=True, help="Start with the oldest alert instead of new ones.")
@click.option("--json", "as_json", is_flag=True, help="Print each alert as its JSON record.")
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Stop after this many alerts.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop after this many seconds.")
def tail_command(
    bootstrap: str | None, from_beginning: bool, as_json: bool, limit: int | None, timeout: float | None
) -> None:
    """Print alerts as they arrive (Ctrl-C to stop)."""
    from streamer.stream.tail import format_alert, tail

    settings = _settings(kafka_bootstrap=bootstrap)

    def emit(alert: dict[str, Any]) -> None:
        click.echo(orjson.dumps(alert).decode() if as_json else format_alert(alert))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(settings, emit, from_beginning=from_beginning, limit=limit, timeout_s=timeout))
