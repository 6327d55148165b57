"""`streamer simulate`: write a simulated SaaS portfolio's contract events and ground truth."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from streamer.cli_options import FloatRange, quiet_option
from streamer.outputs import prepare, same_file
from streamer.sim.config import MAX_ACCOUNTS, SimulationConfig
from streamer.sim.sink import DEFAULT_GZIP_LEVEL
from streamer.sim.writer import WriteReport, truth_path_for, write_simulation

EPILOG = """\b
Examples:
  streamer simulate --accounts 100 --months 6 --out out/small.jsonl.gz
  streamer simulate --accounts 500 --months 12 --seed 7 --out out/year.jsonl.gz
  streamer simulate --accounts 50 --months 3 --dirty-rate 0.01 --out out/dirty.jsonl

\b
The events file holds one contract event per line (subscriptions, usage, tickets,
surveys, and account.updated: each account's name, owner and segment) in
nondecreasing occurred_at order; the truth file beside it
(events.jsonl.gz -> events.truth.json) holds each account's hidden health by week
and every churn (the instant its MRR reached 0), reactivation and pending cancellation.
The same options always produce byte-identical files.
"""


class OutFile(click.Path):
    """A file to write, refused when written as a folder (`d/`): the path type drops the
    trailing separator, and a file named `d` was written silently."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = os.fsdecode(value) if isinstance(value, str | bytes | os.PathLike) else str(value)
        if text.endswith((os.sep, "/")) or (os.altsep is not None and text.endswith(os.altsep)):
            self.fail(f"{text!r} names a folder, not a file: add the file's name", param, ctx)
        return super().convert(value, param, ctx)


@click.command("simulate", epilog=EPILOG)
@click.option(
    "--accounts",
    type=click.IntRange(1, MAX_ACCOUNTS),
    default=100,
    show_default=True,
    help="Accounts over the whole run: customers at the start plus those joining later.",
)
@click.option(
    "--months",
    type=click.IntRange(1, 120),
    default=12,
    show_default=True,
    help="Length of the simulated period in calendar months.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),
    default=1,
    show_default=True,
    help="Random seed; the same seed and options give byte-identical output.",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default="2024-01-01",
    show_default=True,
    help="First simulated day (00:00 UTC), from 1990-01-01; the run must end by 9000-01-01, from which "
    "every consumer refuses event times (--months 12: start by 8999-01-01). Billing history of existing "
    "customers (their subscription starts and renewals) is dated before it.",
)
@click.option(
    "--out",
    type=OutFile(dir_okay=False, path_type=Path),
    required=True,
    help="Events file, JSON lines; gzip-compressed when the name ends in .gz (any case).",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ground-truth file [default: beside --out, NAME.truth.json].",
)
@click.option(
    "--usage-density",
    type=FloatRange(0.0, 10.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Volume knob for usage.recorded (over 95 % of the events): scales the share of "
    "users active on a day (by its square root) and the features each uses. 1.0 gives "
    "about 7-8 events per account-day; 0.3 about a third of that.",
)
@click.option(
    "--initial-share",
    type=FloatRange(0.0, 1.0),
    default=0.65,
    show_default=True,
    help="Share of the accounts already customers at --start; the rest join at random "
    "days during the run (and go through onboarding).",
)
@click.option(
    "--history-months",
    type=click.IntRange(1, 240),
    default=36,
    show_default=True,
    help="Existing customers became customers up to this many months before --start.",
)
@click.option(
    "--churn-scale",
    type=FloatRange(0.0, 20.0),
    default=1.0,
    show_default=True,
    help="Multiplies the voluntary-churn hazard (1.0: roughly 15-25 % logo churn a year).",
)
@click.option(
    "--dirty-rate",
    type=FloatRange(0.0, 0.5),
    default=0.0,
    show_default=True,
    help="Fraction of bad records mixed in: invalid JSON, negative amounts, unknown event "
    "types, out-of-range scores, missing or mistyped fields, duplicated event_ids and "
    "very late events. 0 writes a clean file.",
)
@click.option(
    "--gzip-level",
    type=click.IntRange(1, 9),
    default=DEFAULT_GZIP_LEVEL,
    show_default=True,
    help="Compression level for .gz output (1 fastest, 9 smallest).",
)
@quiet_option("No progress lines on stderr, only the summary.")
def simulate(
    accounts: int,
    months: int,
    seed: int,
    start: datetime,
    out: Path,
    truth: Path | None,
    usage_density: float,
    initial_share: float,
    history_months: int,
    churn_scale: float,
    dirty_rate: float,
    gzip_level: int,
    quiet: bool,
) -> None:
    """Simulate a SaaS customer portfolio and write its contract events.

    Each account has a hidden health that drifts and suffers shocks; it drives usage,
    support tickets, survey answers, payment failures, expansions and contractions,
    and churn, which is usually preceded by one to three months of visible decline.
    Progress goes to stderr; a summary is printed at the end.
    """
    try:
        config = SimulationConfig(
            accounts=accounts,
            months=months,
            seed=seed,
            start=start.date(),
            usage_density=usage_density,
            initial_share=initial_share,
            history_months=history_months,
            churn_scale=churn_scale,
            dirty_rate=dirty_rate,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if not out.name or _is_folder(out):
        raise click.UsageError(f"--out {str(out)!r} names no file")
    truth_path = truth or truth_path_for(out)
    if same_file(truth_path, out):  # a hard link too: the truth was written over the events
        raise click.UsageError(f"--truth must differ from --out ({out})")
    prepare([out, truth_path])  # a traceback after the whole portfolio was built, before

    def progress(lines: int, rate: float, occurred_at: str) -> None:
        click.echo(f"  {lines:>12,} records  {rate:>10,.0f}/s  event time {occurred_at}", err=True)

    if not quiet:  # --quiet: only the summary
        click.echo(
            f"simulating {accounts} accounts over {months} months from {config.start} (seed {seed}) -> {out}",
            err=True,
        )
    try:
        report = write_simulation(
            config, out, truth_path, progress=None if quiet else progress, gzip_level=gzip_level
        )
    except OSError as error:  # a full disk: the files are left as they were
        raise click.ClickException(
            f"cannot write {out} and {truth_path}: {error.strerror or error}"
        ) from None
    click.echo(_summary(report))


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _summary(report: WriteReport) -> str:
    truth = report.truth_summary
    clean = sum(report.by_type.values())
    rate = report.lines / report.seconds if report.seconds else 0.0
    lines = [
        f"accounts: {truth['accounts']} ({truth['joined_during_simulation']} joined during "
        f"the run), churned: {truth['churned_accounts']} ({truth['churn_events']} churns), "
        f"reactivated: {truth['reactivated_accounts']}, customers at end: "
        f"{truth['customers_at_end']}",
        f"events: {clean:,} from {report.first_at} to {report.last_at}",
    ]
    lines += [f"  {name:<30} {count:>12,}" for name, count in sorted(report.by_type.items())]
    if report.dirty:
        lines.append(f"dirty records: {sum(report.dirty.values()):,}")
        lines += [f"  {name:<30} {count:>12,}" for name, count in sorted(report.dirty.items())]
    lines += [
        f"files: {report.events_path} {_size(report.events_bytes)}, "
        f"{report.truth_path} {_size(report.truth_bytes)}",
        f"time: {report.seconds:.1f} s ({rate:,.0f} records/s)",
    ]
    return "\n".join(lines)


def _is_folder(path: Path) -> bool:
    """Whether `path` is a folder; a one-line error when it cannot be asked (a name too long)."""
    try:
        return path.is_dir()
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror or error}") from None
