"""`streamer offline`: backfill or try a score configuration on a file of events."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click
import orjson

from streamer.cli_config import score_config_or_fail
from streamer.cli_options import (
    events_argument,
    now_option,
    partitions_option,
    quiet_option,
    score_config_option,
)
from streamer.core.vocabulary import BANDS
from streamer.offline.runner import OfflineRun, bounded_order_key, open_events, publication_ms, time_window
from streamer.settings import Settings


def _writer(handle: IO[bytes]) -> Any:
    def write(record: dict[str, Any]) -> None:
        handle.write(orjson.dumps(record))
        handle.write(b"\n")

    return write


@click.command("offline")
@events_argument()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for accounts.jsonl, health.jsonl, alerts.jsonl, deadletter.jsonl, portfolio.json.",
)
@score_config_option("Score configuration (TOML). Default: HEALTHSTREAM_SCORE_CONFIG or built-in defaults.")
@click.option(
    "--sort",
    is_flag=True,
    help="Order events by occurred_at first (default: file order, as a stream sees it).",
)
@partitions_option("Partitions to simulate, as the input topics have (default: HEALTHSTREAM_PARTITIONS, 4).")
@now_option()
@quiet_option("No progress bar.")
def offline(
    events: Path,
    out_dir: Path,
    config_path: Path | None,
    sort: bool,
    partitions: int | None,
    now: datetime | None,
    quiet: bool,
) -> None:
    """Score EVENTS (JSON lines, optionally .gz) through the same core as the stream agents.

    Writes accounts.jsonl (final snapshot per account), health.jsonl (every snapshot emitted,
    with as_of), alerts.jsonl, deadletter.jsonl and portfolio.json into --out, and prints a
    summary. Use it to backfill history or to try a score configuration before deploying it.
    """
    settings = Settings()
    config = score_config_or_fail(config_path or settings.score_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    published_ms = publication_ms(now)
    run = OfflineRun(
        config, partitions or settings.partitions, settings.topic_prefix, published_ms=published_ms
    )
    size = events.stat().st_size
    with (
        open_events(events) as source,
        (out_dir / "health.jsonl").open("wb") as health,
        (out_dir / "alerts.jsonl").open("wb") as alerts,
        (out_dir / "deadletter.jsonl").open("wb") as dead,
    ):
        raw = source.fileobj if hasattr(source, "fileobj") else source  # compressed position
        if sort:
            click.echo(f"sorting {events} by occurred_at ...", err=True)
            order = bounded_order_key(time_window(config, published_ms))
            lines = [line for _, line in sorted(enumerate(source), key=order)]
            iterator = iter(lines)
        else:
            iterator = iter(source)
        with click.progressbar(
            length=size,
            label=f"scoring {events.name}",
            file=sys.stderr,
            hidden=quiet,
            show_eta=True,
            show_pos=False,
        ) as bar:

            def progress() -> Any:
                position = 0
                for count, line in enumerate(iterator, start=1):
                    yield line
                    if count % 20000 == 0:
                        now = raw.tell() if not sort else size * count // max(1, len(lines))
                        bar.update(now - position)
                        position = now
                bar.update(size - position)

            summary = run.feed(
                progress(),
                on_snapshot=_writer(health),
                on_alert=_writer(alerts),
                on_dead_letter=_writer(dead),
                source=str(events),
            )
    with (out_dir / "accounts.jsonl").open("wb") as handle:
        write = _writer(handle)
        accounts = 0
        for snapshot in run.accounts():
            write(snapshot)
            accounts += 1
    portfolio = run.portfolio()
    (out_dir / "portfolio.json").write_bytes(orjson.dumps(portfolio, option=orjson.OPT_INDENT_2))
    bands = portfolio["current"]["accounts_by_band"]
    by_band = ", ".join(f"{band} {bands[band]}" for band in BANDS)
    click.echo(
        f"{summary.lines:,} lines in {summary.seconds:.1f} s ({summary.rate:,.0f}/s): "
        f"{summary.accepted:,} accepted, {summary.duplicates:,} duplicates, {summary.rejected:,} rejected\n"
        f"{accounts:,} accounts ({by_band}), "
        f"MRR {portfolio['current']['mrr']} {portfolio['currency']}, "
        f"{sum(summary.alerts.values()):,} alerts, {summary.snapshots:,} snapshots\n"
        f"wrote {out_dir}/{{accounts,health,alerts,deadletter}}.jsonl and portfolio.json"
    )
