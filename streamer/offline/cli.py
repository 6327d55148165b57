"""`streamer offline`: backfill or try a score configuration on a file of events."""

from __future__ import annotations

import shutil
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NoReturn

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
from streamer.collector import collect_less
from streamer.contract.vocabulary import BANDS
from streamer.core.config import ScoreConfig
from streamer.interrupts import sigterm_interrupts
from streamer.offline.external_sort import SortedLines
from streamer.offline.parallel import (
    ChildFailed,
    Job,
    Result,
    default_jobs,
    file_lines_path,
    run_parallel,
    scratch_folder,
    sort_into,
)
from streamer.offline.runner import (
    OfflineRun,
    Summary,
    UnreadableInput,
    UntilDamaged,
    bounded_order_key,
    lines_and_file_lines,
    open_events,
    publication_ms,
    time_window,
)
from streamer.offline.staging import Staging
from streamer.outputs import prepare
from streamer.progress import Progress
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
@click.option(
    "--jobs",
    type=click.IntRange(1, 1024),
    default=None,
    help="Processes scoring partitions at once, each reading the file and scoring its share of the "
    "partitions; the outputs are byte-identical whatever the number (but for a dead letter's "
    "received_at, the wall clock when it was written). Default: the CPUs available, "
    "at most one per partition. 1: all in this process.",
)
@now_option()
@quiet_option("No progress bar.")
def offline(
    events: Path,
    out_dir: Path,
    config_path: Path | None,
    sort: bool,
    partitions: int | None,
    jobs: int | None,
    now: datetime | None,
    quiet: bool,
) -> None:
    """Score EVENTS (JSON lines, optionally .gz) through the same core as the stream agents.

    Writes accounts.jsonl (final snapshot per account), health.jsonl (the snapshots: each
    re-scored account once per batch of 5,000 lines, with as_of; a worker publishes more, once
    per event-time day, with the same last one per account), alerts.jsonl, deadletter.jsonl and
    portfolio.json into --out, and prints a summary. Use it to backfill history or to try a
    score configuration before deploying it. Partitions are scored by --jobs processes at once.

    \b
    Examples:
      streamer offline events.jsonl.gz --out out/scored --sort
      streamer offline events.jsonl.gz --out out/tuned --sort --config tuned.toml
      streamer offline old.jsonl --out out/may --sort --now 2024-06-01
    """
    settings = Settings()
    source = config_path or settings.score_config
    config = score_config_or_fail(source)
    # an input named alerts.jsonl in --out was emptied; --out /proc/x was a traceback
    prepare([out_dir / name for name in OUTPUTS], [events, source])
    published_ms = publication_ms(now)
    count = partitions or settings.partitions
    processes = min(jobs or default_jobs(count), count)
    if processes > 1 and not _regular_file(events):
        # Each process reads the whole input: from a pipe they would share its lines between them.
        processes = 1
    collect_less()  # this process (and its forked children) scores, then exits
    run = _Run(events, out_dir, config, count, settings.topic_prefix, published_ms, sort, quiet, processes)
    with sigterm_interrupts(), Staging(out_dir, OUTPUTS) as staged:
        try:
            scored = _score_into(run, staged)
        except KeyboardInterrupt:
            _interrupted(run, staged)
    click.echo(_summary_text(scored, processes, out_dir))
    if scored.damage is not None:
        raise scored.damage  # the outputs are those of the lines before it
    summary = scored.summary
    if summary.accepted == 0 and summary.duplicates == 0:
        raise click.ClickException(_nothing_scored(events, out_dir, summary))


OUTPUTS = ("accounts.jsonl", "health.jsonl", "alerts.jsonl", "deadletter.jsonl", "portfolio.json")


@dataclass
class _Run:
    """What a run scores, how, and (`lines`) how far it got."""

    events: Path
    out_dir: Path
    config: ScoreConfig
    partitions: int
    topic_prefix: str
    published_ms: int
    sort: bool
    quiet: bool
    processes: int
    lines: int = 0  # lines scored so far, for the line of an interrupted run


@dataclass
class _Scored:
    """A finished run's figures; `damage`: the error that ended a damaged input (the outputs
    are those of the lines before it)."""

    summary: Summary
    accounts: int
    portfolio: dict[str, Any]
    children: Result | None
    damage: UnreadableInput | None


def _score_into(run: _Run, staged: Staging) -> _Scored:
    """Score the run into the staging folder and rename the five outputs into place, unless the
    run failed (one line saying the outputs were not replaced) or its input was refused before
    its first line (that error, as it is)."""
    try:
        scored = _in_process(run, staged) if run.processes == 1 else _in_processes(run, staged)
    except ChildFailed as failed:
        raise click.ClickException(_not_replaced(str(failed), run.out_dir)) from None
    except OSError as exc:
        raise click.ClickException(_not_replaced(_os_error(exc), run.out_dir)) from None
    if scored.damage is not None and scored.summary.lines == 0:
        raise scored.damage  # refused before its first line: nothing scored, nothing replaced
    staged.path("portfolio.json").write_bytes(orjson.dumps(scored.portfolio, option=orjson.OPT_INDENT_2))
    staged.commit()
    return scored


def _not_replaced(error: str, out_dir: Path) -> str:
    return f"{error}: the outputs in {click.format_filename(out_dir)} were not replaced"


def _os_error(exc: OSError) -> str:
    where = f"{click.format_filename(exc.filename)}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _interrupted(run: _Run, staged: Staging) -> NoReturn:
    """Ctrl-C or SIGTERM: one line saying how far the run got, exit code 130."""
    outputs = click.format_filename(run.out_dir)
    done = "were replaced (the run had finished)" if staged.committed else "were not replaced"
    click.echo(
        f"streamer offline: interrupted after {run.lines:,} lines of {click.format_filename(run.events)}; "
        f"the outputs in {outputs} {done}",
        err=True,
    )
    sys.exit(130)


# A share of lines rejected as too late (behind their partition's stream time) past which the
# file is most likely not in event-time order: the summary then suggests --sort.
TOO_LATE_SHARE = 0.01
TOO_LATE_LINES = 100


def _summary_text(scored: _Scored, processes: int, out_dir: Path) -> str:
    summary, portfolio, children = scored.summary, scored.portfolio, scored.children
    bands = portfolio["current"]["accounts_by_band"]
    by_band = ", ".join(f"{band} {bands[band]}" for band in BANDS)
    processes_note = ""
    if children is not None:
        spent = " + ".join(f"{cpu:,.1f}" for cpu in children.cpu)
        peak = max(children.peak_rss) / 2**20
        processes_note = f", {processes} processes: CPU {spent} s, peak RSS {peak:,.0f} MiB per process"
    return (
        f"{summary.lines:,} lines in {summary.seconds:.1f} s ({summary.rate:,.0f}/s{processes_note}): "
        f"{summary.accepted:,} accepted, {summary.duplicates:,} duplicates, {summary.rejected:,} rejected"
        f"{f', {summary.blank:,} blank skipped' if summary.blank else ''}\n"
        f"{_sort_hint(summary)}"
        f"{scored.accounts:,} accounts ({by_band}), "
        f"MRR {portfolio['current']['mrr']} {portfolio['currency']}, "
        f"{sum(summary.alerts.values()):,} alerts, {summary.snapshots:,} snapshots\n"
        f"wrote {out_dir}/{{accounts,health,alerts,deadletter}}.jsonl and portfolio.json"
    )


def _sort_hint(summary: Summary) -> str:
    """A line suggesting --sort when many lines came too late (an export not in event-time order)."""
    late = summary.too_late
    if late < TOO_LATE_LINES or late <= TOO_LATE_SHARE * summary.lines:
        return ""
    return (
        f"{late:,} lines were rejected as too late (behind their partition's stream time): the file "
        "is not in event-time order; try --sort\n"
    )


def _regular_file(path: Path) -> bool:
    """A file that each of several processes can read whole (not a pipe, FIFO or device)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _nothing_scored(events: Path, out_dir: Path, summary: Summary) -> str:
    """Why a run that scored nothing fails: an empty file, or one whose every line was refused
    (a table rather than events, most often)."""
    if summary.rejected == 0:
        return f"{events} holds no events"
    with (out_dir / "deadletter.jsonl").open("rb") as letters:
        first = orjson.loads(letters.readline())
    hint = (
        " Tables of a warehouse export go through `streamer import` first." if looks_like_csv(first) else ""
    )
    return (
        f"no line of {events} is an event ({summary.rejected:,} rejected, the first as {first['error']}; "
        f"all in {out_dir}/deadletter.jsonl).{hint}"
    )


def looks_like_csv(dead_letter: dict[str, Any]) -> bool:
    """Whether the refused line is a table's row (text with a comma that is not JSON), for which
    `streamer import` is the way: the hint followed every refusal, events too late for `--now`
    and a gzip file read as text among them, where it sent people the wrong way."""
    original = dead_letter.get("original")
    if dead_letter.get("encoding") != "text" or not isinstance(original, str):
        return False
    text = original.strip()
    return "," in text and not text.startswith(("{", "["))


def _in_process(run: _Run, staged: Staging) -> _Scored:
    """`--jobs 1`: every partition in this process."""
    events, config = run.events, run.config
    scoring = OfflineRun(config, run.partitions, run.topic_prefix, published_ms=run.published_ms)
    size = events.stat().st_size
    with (
        ExitStack() as stack,
        open_events(events) as source,
        staged.path("health.jsonl").open("wb") as health,
        staged.path("alerts.jsonl").open("wb") as alerts,
        staged.path("deadletter.jsonl").open("wb") as dead,
    ):
        raw = source.fileobj if hasattr(source, "fileobj") else source  # compressed position
        readable = UntilDamaged(source)  # a damaged input ends there
        ordered: SortedLines | None = None
        file_lines: Iterator[int] | None = None  # each line's number in the file, when sorted
        if run.sort:
            click.echo(f"sorting {events} by occurred_at ...", err=True)
            order = bounded_order_key(time_window(config, run.published_ms))
            ordered = stack.enter_context(SortedLines(readable, order, scratch=run.out_dir))
            iterator, file_lines = lines_and_file_lines(ordered)
        else:
            iterator = iter(readable)
        with Progress(size, f"scoring {events.name}", run.quiet) as bar:
            cpu = time.process_time()

            def progress() -> Any:
                for count, line in enumerate(iterator, start=1):
                    yield line
                    run.lines = count
                    if count % 20000 == 0:
                        at = raw.tell() if ordered is None else size * count // max(1, ordered.count)
                        bar.update(count, at, time.process_time() - cpu)

            summary = scoring.feed(
                progress(),
                on_snapshot=_writer(health),
                on_alert=_writer(alerts),
                on_dead_letter=_writer(dead),
                source=str(events),
                file_lines=file_lines,
            )
    with staged.path("accounts.jsonl").open("wb") as handle:
        write = _writer(handle)
        accounts = 0
        for snapshot in scoring.accounts():
            write(snapshot)
            accounts += 1
    return _Scored(summary, accounts, scoring.portfolio(), None, readable.damage)


def _in_processes(run: _Run, staged: Staging) -> _Scored:
    """`--jobs N`: children score shares of the partitions; this process merges their records."""
    events, jobs = run.events, run.processes
    scratch = scratch_folder(run.out_dir)
    read, unterminated, damage = events, 0, None
    try:
        if run.sort:
            click.echo(f"sorting {events} by occurred_at ...", err=True)
            read = scratch / "sorted.jsonl"
            key = bounded_order_key(time_window(run.config, run.published_ms))
            unterminated, readable = sort_into(events, read, key)
            damage = readable.damage
            if damage is not None and readable.read == 0:
                raise damage  # refused before its first line
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    job = Job(
        run.config,
        run.partitions,
        run.topic_prefix,
        run.published_ms,
        read,
        str(events),
        unterminated,
        scratch,
    )
    if run.sort:
        job = replace(job, file_lines=file_lines_path(read))
    started = time.perf_counter()
    with (
        staged.path("health.jsonl").open("wb") as health,
        staged.path("alerts.jsonl").open("wb") as alerts,
        staged.path("deadletter.jsonl").open("wb") as dead,
        staged.path("accounts.jsonl").open("wb") as accounts_out,
        Progress(read.stat().st_size, f"scoring {events.name} ({jobs} processes)", run.quiet) as bar,
    ):

        def progress(lines: int, position: int, cpu: float) -> None:
            run.lines = lines
            bar.update(lines, position, cpu)

        outputs: dict[str, IO[bytes]] = {"health": health, "alerts": alerts, "deadletter": dead}
        result = run_parallel(job, jobs, outputs, accounts_out, progress)
    result.summary.seconds = time.perf_counter() - started
    run.lines = result.summary.lines
    if damage is None and result.damage is not None:
        damage = UnreadableInput(result.damage)
    return _Scored(result.summary, result.accounts, result.portfolio, result, damage)
