"""`streamer import`: warehouse-style tables -> contract events for offline, replay and backtest."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from streamer.cli_options import score_config_option
from streamer.core.config import ScoreConfig
from streamer.importer.mapping import (
    Mapping,
    MappingError,
    Preset,
    load_mapping,
    preset_mapping,
    with_overrides,
)
from streamer.importer.run import Importer, ImportSummary, OutputError, check_writable
from streamer.importer.tables import BadRow, Progress, TableError
from streamer.importer.usage import UsageGrain
from streamer.outputs import prepare

SHOWN_LEFT_OUT = 10
# cancellations followed the next day by a new subscription, at least, and more than half of
# them: the end dates are likely inclusive
MIN_NEXT_DAY = 3


class TableProblem(click.ClickException):
    """A table the mapping names that is missing, lacks a column or cannot be read: exit code 2
    as a usage error (the mapping and the folder disagree), without the usage text, which is
    not where the problem is."""

    exit_code = 2


class MappingProblem(TableProblem):
    """A mapping (file, preset or --column override) that cannot be used: one line naming the
    key, exit code 2, as a table error."""


class OutProblem(TableProblem):
    """An --out written as a folder (`d/`): exit code 2 as a usage error, in one line."""


class OutFile(click.Path):
    """--out: a file to write, refused when written as a folder (`d/`), as `streamer simulate`
    refuses it: the path type drops the trailing separator, and a file named `d` was written."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = os.fsdecode(value) if isinstance(value, str | bytes | os.PathLike) else str(value)
        if text.endswith((os.sep, "/")) or (os.altsep is not None and text.endswith(os.altsep)):
            raise OutProblem(f"--out {text!r} names a folder, not a file: add the file's name")
        return super().convert(value, param, ctx)


class CurrencyProblem(TableProblem):
    """The mapping's currency has no exchange rate in the score configuration: every
    subscription event would be dead-lettered downstream. Exit code 2, as the mapping and the
    configuration disagree."""


EXAMPLES = """\b
Examples:
  streamer import exports/crm --preset fightchurn --out crm.jsonl.gz
  streamer import exports/crm --preset fightchurn --usage-grain day --out crm-day.jsonl.gz
  streamer import exports/shop --mapping shop.toml --skip-bad-rows --out shop.jsonl.gz
  streamer import exports/shop --mapping shop.toml --column subscriptions.mrr=amount --out shop.jsonl.gz
  streamer backtest crm.jsonl.gz

A mapping file names the tables (relative to FOLDER) and their columns; see the built-in
preset with --show-preset fightchurn, and README.md (`streamer import`)."""


def _progress_printer(doing: str = "reading", unit: str = "rows") -> Progress:
    """A line on stderr, rewritten at most once a second: `reading events.csv: 50,000 rows (12%)`."""
    shown = [0.0]

    def show(name: str, count: int, share: float) -> None:
        now = time.monotonic()
        if share < 1.0 and now - shown[0] < 1.0:
            return
        shown[0] = now
        end = "\n" if share >= 1.0 else ""
        click.echo(f"\r{doing} {name}: {count:,} {unit} ({100 * share:.0f}%)", err=True, nl=False)
        if end:
            click.echo("", err=True)

    return show


def _mapping(preset: Preset | None, mapping_path: Path | None, columns: tuple[str, ...]) -> Mapping:
    if (preset is None) == (mapping_path is None):
        raise click.UsageError("give exactly one of --preset NAME or --mapping FILE")
    try:
        mapping = preset_mapping(preset) if preset is not None else load_mapping(mapping_path)  # type: ignore[arg-type]
        overrides: dict[str, str] = {}
        for item in columns:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise MappingError(f"--column {item!r}: expected TABLE.KEY=VALUE")
            overrides[key] = value
        return with_overrides(mapping, overrides) if overrides else mapping
    except MappingError as exc:
        raise MappingProblem(str(exc)) from None


def _tables(folder: Path, mapping: Mapping) -> list[Path]:
    """The files the mapping reads: --out may not name one of them (nor the mapping file itself,
    which the caller adds)."""
    subs, events, accounts = mapping.subscriptions, mapping.events, mapping.accounts
    names = [subs.file, subs.addons_file]
    names += [events.file, events.lookup_file] if events is not None else []
    names += [accounts.file] if accounts is not None else []
    return [folder / name for name in names if name is not None]


def _score_config(config_path: Path | None) -> tuple[ScoreConfig, Path | None, str]:
    """The score configuration the events are checked against, as `streamer offline` loads it
    (--config, else HEALTHSTREAM_SCORE_CONFIG, else the built-in one): its [input] bounds and
    currency rates. With its file and how the file was named, for messages."""
    from streamer.cli_config import score_config_or_fail
    from streamer.settings import Settings

    source = config_path or Settings().score_config
    named = "--config" if config_path is not None else "HEALTHSTREAM_SCORE_CONFIG"
    return score_config_or_fail(source), source, named


def _check_currency(mapping: Mapping, config: ScoreConfig, source: Path | None, named: str) -> None:
    """Refuse, before the tables are read, a currency the score configuration (that offline, the
    worker and backtest read by default: HEALTHSTREAM_SCORE_CONFIG, else the built-in one) has no
    rate for: the import wrote every subscription event, which they then dead-lettered ("no
    exchange rate configured for currency 'CHF'")."""
    currency = config.currency
    if currency.rate(mapping.currency) is not None:
        return
    known = ", ".join(sorted({currency.reporting, *currency.rates}))
    where = f"the score config {source} ({named})" if source else "the built-in score config"
    raise CurrencyProblem(
        f"currency {mapping.currency!r} of the mapping has no exchange rate in {where} (configured: "
        f"{known}): offline, backtest and the worker would dead-letter every subscription event; add "
        "it under [currency.rates] of a score config named by --config or HEALTHSTREAM_SCORE_CONFIG, "
        "or change the mapping's currency"
    )


def render_summary(summary: ImportSummary) -> str:
    """The lines printed after an import."""
    read = ", ".join(f"{name} {count:,}" for name, count in summary.rows.items())
    written = ", ".join(f"{kind} {count:,}" for kind, count in sorted(summary.by_type.items()))
    in_table = (
        f" ({summary.accounts_in_table:,} in the account table)"
        if summary.accounts_in_table is not None
        else ""
    )
    lines = [
        f"rows read: {read}",
        (
            f"wrote {summary.events:,} events to {summary.out} in {summary.seconds:.1f} s: {written}"
            if summary.events
            else f"no event to write ({summary.seconds:.1f} s): {summary.out} was not written"
        ),
        f"accounts: {summary.accounts:,}{in_table}; subscriptions: {summary.subscriptions:,}; "
        f"add-on products: {', '.join(summary.addon_products) or 'none'}",
        f"event time: {summary.first_at or '-'} .. {summary.last_at or '-'}; "
        f"end of the data: {summary.data_end} ({summary.data_end_rule}; "
        "subscriptions running then are not canceled)",
    ]
    if summary.addons_missing is not None:
        lines.append(
            f"no {summary.addons_missing} in the folder: only the mapping's addon_products are add-ons; "
            "every other product is a plan, on the account's one plan line"
        )
    if summary.days_beyond > 1:
        lines.append(
            f"note: the end of the data is {summary.days_beyond:,.0f} days after the latest subscription "
            f"start or product event ({summary.latest_seen}): subscriptions that end between them read "
            "as canceled (is that the export date?)"
        )
    canceled = summary.by_type.get("subscription.canceled", 0)
    if summary.next_day >= MIN_NEXT_DAY and 2 * summary.next_day > canceled:
        lines.append(
            f"warning: {summary.next_day:,} of the {canceled:,} cancellations are followed by a new "
            "subscription of the same account the next day: are the end dates inclusive (the last day "
            "paid)? Rows are read as active on [start, end), so each such renewal reads as a churn: "
            "add one day to the end dates in the export (no mapping option does it)"
        )
    if summary.usage_rows:
        usage = summary.by_type.get("usage.recorded", 0)
        lines.append(f"usage: {summary.usage_rows:,} rows -> {usage:,} usage.recorded events")
    after = sum(summary.after_end.values())
    if after:
        detail = ", ".join(f"{name} {count:,}" for name, count in summary.after_end.items() if count)
        lines.append(f"left out after the end of the data: {after:,} rows ({detail})")
    if summary.left_out:
        shown = ", ".join(summary.left_out[:SHOWN_LEFT_OUT])
        more = (
            f" and {len(summary.left_out) - SHOWN_LEFT_OUT:,} more"
            if len(summary.left_out) > SHOWN_LEFT_OUT
            else ""
        )
        lines.append(
            f"accounts left out: {len(summary.left_out):,}, whose skipped subscription rows would read "
            f"as a gap (a churn) or a lower MRR, and their {summary.left_out_usage:,} product-event rows: "
            f"{shown}{more}"
        )
    bad = summary.bad_rows
    lines.append(f"skipped bad rows: {bad.count:,}")
    lines += [f"  {example}" for example in bad.examples]
    if bad.count > len(bad.examples):
        lines.append(f"  ... and {bad.count - len(bad.examples):,} more")
    return "\n".join(lines)


@click.command("import", epilog=EXAMPLES)
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=OutFile(dir_okay=False, path_type=Path),
    help="Events file to write (JSON lines; gzip when it ends in .gz).",
)
@click.option("--preset", type=click.Choice([p.value for p in Preset]), help="A built-in mapping.")
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TOML mapping file: the tables (relative to FOLDER) and their columns.",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="TABLE.KEY=VALUE",
    help=(
        "Override one key of the mapping, e.g. subscriptions.mrr=amount, events.file=ev.csv or "
        "accounts.attributes.region=region (repeatable); an empty VALUE removes the key (its "
        "default: an optional column is not read)."
    ),
)
@click.option(
    "--data-end",
    help="The export date YYYY-MM-DD: subscriptions ending at or after it are still running, rows after "
    "it are left out. Also 'latest-seen' (the latest subscription start or product event) or "
    "'latest-start' (the latest subscription start). Default: the mapping's data_end (the fightchurn "
    "preset: latest-start; a mapping without one: latest-seen).",
)
@click.option(
    "--usage-grain",
    type=click.Choice([g.value for g in UsageGrain]),
    default=UsageGrain.hour.value,
    show_default=True,
    help="One usage.recorded per account, user, feature and hour (or day) with a count; 'none': one per row.",
)
@click.option("--skip-bad-rows", is_flag=True, help="Skip rows that cannot be imported and count them.")
@score_config_option(
    "Score configuration (TOML) whose [input] bounds and currency rates the events must pass, as "
    "`streamer offline --config` reads them. Default: HEALTHSTREAM_SCORE_CONFIG or built-in defaults."
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress on stderr (default: when it is a terminal)."
)
@click.option(
    "--show-preset",
    type=click.Choice([p.value for p in Preset]),
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, _param, value: _show_preset(ctx, value),
    help="Print a built-in mapping (a starting point for your own) and exit.",
)
def import_tables(
    folder: Path,
    out: Path,
    preset: str | None,
    mapping_path: Path | None,
    columns: tuple[str, ...],
    data_end: str | None,
    usage_grain: str,
    skip_bad_rows: bool,
    config_path: Path | None,
    progress: bool | None,
) -> None:
    """Convert warehouse-style tables in FOLDER into contract events (sorted by event time).

    Subscriptions: rows active on [start, end) with MRR, seats and billing period, grouped per
    account into a plan line and add-on lines -> subscription.started / changed / renewed /
    canceled (a gap or a last end before the end of the data is a cancellation at that end).
    Product events -> usage.recorded (aggregated per --usage-grain). Accounts with a name, owner,
    segment, tier or attributes mapped -> one account.updated each, at its first event (a
    subscription or a product event). The output is accepted by `streamer offline --sort`,
    `streamer replay` and `streamer backtest`; event ids are hashes of the source rows, so
    importing again gives the same file.
    """
    mapping = _mapping(Preset(preset) if preset else None, mapping_path, columns)
    if data_end is not None:
        if not data_end.strip():  # with_overrides reads an empty value as "no key": another rule, silently
            raise click.BadParameter(
                "empty (an unset shell variable?): give the export date YYYY-MM-DD, 'latest-seen' or "
                "'latest-start', or leave the option out for the mapping's data_end",
                param_hint="--data-end",
            )
        try:
            mapping = with_overrides(mapping, {"data_end": data_end})
        except MappingError as exc:
            raise click.BadParameter(str(exc).split(": ", 1)[-1], param_hint="--data-end") from None
    config, source, named = _score_config(config_path)
    _check_currency(mapping, config, source, named)
    # before the (long) read: its folder, writable; none of the inputs (the config either)
    prepare([out], [*_tables(folder, mapping), mapping_path, source])
    try:
        check_writable(out)
    except OutputError as exc:
        raise click.ClickException(str(exc)) from None
    show = sys.stderr.isatty() if progress is None else progress
    importer = Importer(
        folder,
        mapping,
        grain=UsageGrain(usage_grain),
        skip_bad_rows=skip_bad_rows,
        progress=_progress_printer() if show else None,
        write_progress=_progress_printer("sorting and writing", "events") if show else None,
        data_end_source=_data_end_source(data_end, columns, mapping_path, preset),
        config=config,
    )
    try:
        summary = importer.run(out)
    except TableError as exc:
        raise TableProblem(str(exc)) from None
    except BadRow as exc:
        raise click.ClickException(f"{exc} (--skip-bad-rows skips such rows and counts them)") from None
    except OutputError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render_summary(summary))
    if summary.events == 0:  # exit 0 with an empty file read as an import that worked
        why = (
            "every row is after the end of the data" if sum(summary.after_end.values()) else "no row made one"
        )
        raise click.ClickException(f"no event written to {out}: {why} (the summary above says what was read)")


def _data_end_source(
    data_end: str | None, columns: tuple[str, ...], mapping_path: Path | None, preset: str | None
) -> str:
    """Where the end of the data comes from, as the summary names it: the option, a --column
    override or the mapping file (the preset)."""
    if data_end is not None:
        return "--data-end"
    if any(item.partition("=")[0] == "data_end" for item in columns):
        return "--column data_end"
    return f"data_end in {mapping_path}" if mapping_path is not None else f"data_end of the preset {preset}"


def _show_preset(ctx: click.Context, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from importlib import resources

    click.echo(resources.files("streamer.importer").joinpath(f"{value}.toml").read_text(), nl=False)
    ctx.exit(0)
