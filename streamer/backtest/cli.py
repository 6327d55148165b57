"""`streamer backtest`: how well the health score predicted churn in a file of history."""

from __future__ import annotations

import dataclasses
import stat
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson
from click.core import ParameterSource

from streamer.cli_config import score_config_or_fail
from streamer.cli_options import (
    FloatRange,
    events_argument,
    now_option,
    partitions_option,
    quiet_option,
    score_config_option,
)
from streamer.core.config import ScoreConfig
from streamer.extras import needs_extra
from streamer.interrupts import sigterm_interrupts
from streamer.offline.runner import publication_ms
from streamer.outputs import prepare, same_file
from streamer.progress import Progress
from streamer.settings import ConfigError, Settings, read_toml

if TYPE_CHECKING:  # the analysis needs numpy (the [backtest] extra): imported when it runs
    from streamer.backtest.analysis import Fitted, TuneResult
    from streamer.backtest.sampling import Replay


def _base_data(path: Path | None) -> dict[str, Any]:
    """The configuration file's own data (already validated), or empty for the defaults."""
    return read_toml(path, "score config", ConfigError) if path is not None else {}


def _config_text(base: dict[str, Any], fitted: Fitted, header: list[str]) -> str:
    from streamer.backtest.configfile import tuned_config_text

    return tuned_config_text(base, fitted.weights, header, fitted.signal_weights, fitted.model)


TUNING_OPTIONS = ("holdout", "top_features", "min_churned_accounts")


class ShareRange(FloatRange):
    """A share as a decimal (0.25) or a fraction (1/3): the help showed the default as 1/3, and
    `--holdout 1/3` was refused."""

    name = "share"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "/" in value:
            numerator, _, denominator = value.partition("/")
            try:
                value = float(numerator) / float(denominator)
            except (ValueError, ZeroDivisionError):
                self.fail(f"{value!r} is not a share: write it as 0.25 or 1/4", param, ctx)
        return super().convert(value, param, ctx)


def _tuning_options_need_tune(tune_weights: bool) -> None:
    """Refuse --holdout, --top-features and --min-churned-accounts without --tune: they only
    change the fit, and a run that ignored them would look like one that used them."""
    context = click.get_current_context()
    given = [
        "--" + name.replace("_", "-")
        for name in TUNING_OPTIONS
        if context.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
    ]
    if given and not tune_weights:
        verb = "changes" if len(given) == 1 else "change"
        raise click.UsageError(
            f"{' and '.join(given)} only {verb} the fit: add --tune (or --write-config FILE)"
        )


class ReplayCacheProblem(click.ClickException):
    """--replay-cache names an existing file that is not a replay cache, or is given with EVENTS
    that can be read only once: exit code 2, as a usage error, without the usage text."""

    exit_code = 2


def _refuse_a_stream(events: Path) -> None:
    """--replay-cache reads EVENTS twice (its SHA-256, then the replay): from a FIFO the second
    reading waited for ever, from a pipe on /dev/stdin it found nothing left."""
    try:
        regular = stat.S_ISREG(events.stat().st_mode)
    except OSError:
        regular = False
    if not regular:
        raise ReplayCacheProblem(
            "--replay-cache needs EVENTS to be a regular file, which it reads twice (its SHA-256, "
            f"then the replay): {click.format_filename(events)} is not one; save it to a file first, "
            "or leave out --replay-cache"
        )


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _refuse_shared_outputs(files: dict[str, Path | None], plots: Iterable[Path]) -> None:
    """Refuse, before the replay, two outputs that are one file (`files`: by option; `plots`: the
    files --plots writes): the one written last replaced the other, and a configuration announced
    as written was the JSON figures."""
    named = [(option, path) for option, path in files.items() if path is not None]
    for index, (option, path) in enumerate(named):
        for other, other_path in named[index + 1 :]:
            if same_file(path, other_path):
                raise click.ClickException(
                    f"{option} and {other} both name {click.format_filename(path)}: one would be "
                    "written over the other; give each its own path"
                )
        for plot in plots:
            if same_file(path, plot):
                raise click.ClickException(
                    f"{option} {click.format_filename(path)} is a plot --plots writes there; "
                    "give it another path"
                )


def _replay(
    events: Path,
    config: ScoreConfig,
    partitions: int,
    warmup_days: int,
    published_ms: int,
    quiet: bool,
    grid: bool,
) -> Replay:
    """The history replayed through the core, with its progress on stderr unless `quiet` (a bar
    on a terminal, a line every 200,000 events in a log file); `grid`: sampled on the weekly
    grid too, which only `--tune` reads (and a replay cache keeps, for a later `--tune`)."""
    from streamer.backtest.sampling import replay

    progress: Progress | None = None
    replayed = 0

    def on_sorted(total: int) -> None:
        nonlocal progress
        progress = Progress(total, f"replaying {events.name}", quiet, "events replayed", "of them")
        progress.__enter__()

    def on_progress(count: int) -> None:
        nonlocal replayed
        replayed += count
        if progress is not None:
            progress.update(replayed, replayed)

    if not quiet:
        click.echo(f"sorting {events} by event time ...", err=True)
    try:
        history = replay(
            events,
            config,
            partitions=partitions,
            warmup_days=warmup_days,
            on_sorted=on_sorted,
            on_progress=on_progress,
            published_ms=published_ms,
            grid=grid,
        )
    except ValueError as exc:
        if progress is not None:
            progress.__exit__(type(exc), exc, exc.__traceback__)
        raise click.ClickException(f"{events}: {exc}") from None
    if progress is not None:
        progress.__exit__(None, None, None)
    return history


def _no_auc_because(tuning: TuneResult) -> str:
    """Why a held-out AUC is not defined: one side of the ranking is empty."""
    from streamer.backtest.analysis import TUNE_HORIZON

    churned = tuning.test_labelled[TUNE_HORIZON].churned
    if not churned.any():
        return f"n/a: no churn within {TUNE_HORIZON} days in the held-out month starts"
    if churned.all():
        return f"n/a: every held-out sample churned within {TUNE_HORIZON} days"
    return "n/a: not defined on the held-out samples"


def _tuned_header(tuning: TuneResult, events: Path, source: Path | None) -> list[str]:
    """The comment lines atop a written configuration: how it was fitted, and how it ranked held out."""
    from streamer.backtest.analysis import TUNE_HORIZON
    from streamer.backtest.report import accounts, auc_text, day

    months = f"month starts {day(tuning.train_months[0])} .. {day(tuning.train_months[-1])}"
    fitted = (
        [
            f"Default weights and the score calibrated as the [model], by `streamer backtest --tune` on "
            f"{events.name}: {accounts(tuning.choice.churned_accounts)} churned in the training samples, "
            f"too few to fit (logistic regression of {TUNE_HORIZON}-day churn on the score, {months}).",
        ]
        if tuning.choice.too_few_churned
        else [
            f"Signal and component weights and [model] fitted by `streamer backtest --tune` on {events.name}",
            f"(L2 logistic regression of {TUNE_HORIZON}-day churn on the signal sub-scores, trained on "
            f"{months}).",
        ]
    )
    aucs = [held.auc.get(TUNE_HORIZON) for held in (tuning.default, tuning.tuned, tuning.risk)]
    return [
        *fitted,
        f"Held-out AUC {TUNE_HORIZON}d: configured score {auc_text(aucs[0])}, "
        f"tuned score {auc_text(aucs[1])}, churn_risk_60d {auc_text(aucs[2])}"
        + " ("
        + (f"{_no_auc_because(tuning)}; " if None in aucs else "")
        + f"chosen: {tuning.choice.winner.label} as the [model], "
        f"{tuning.choice.weighting.label} weights). "
        + (f"Other settings from {source}." if source is not None else "Everything else is the default."),
    ]


EXAMPLES = """\b
Examples:
  streamer backtest events.jsonl.gz --plots out/plots
  streamer backtest events.jsonl.gz --config score.toml --json out/figures.json
  streamer backtest events.jsonl.gz --tune --write-config tuned.toml
  streamer offline events.jsonl.gz --out out/scored --sort --config tuned.toml

See docs/backtest.md for the definitions and the figures measured on simulated data."""


@click.command("backtest", epilog=EXAMPLES)
@events_argument()
@score_config_option(
    "Score configuration (TOML) to test. Default: HEALTHSTREAM_SCORE_CONFIG or built-in defaults."
)
@click.option(
    "--tune",
    "tune_weights",
    is_flag=True,
    help="Fit signal weights to the history (starting from the configured ones, which are kept unless a "
    "fit ranks clearly better out of fold) and compare them on a held-out later time range.",
)
@click.option(
    "--write-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the configuration --tune chose ([weights], [signal_weights] and [model]) here; "
    "implies --tune.",
)
@click.option(
    "--holdout",
    type=ShareRange(0.1, 0.6),
    default="1/3",
    show_default=True,
    help="With --tune: share of the month starts, the latest ones, held out from fitting.",
)
@click.option(
    "--top-features",
    type=click.IntRange(0, 200),
    default=16,
    show_default=True,
    help="With --tune: the plain regression also reads the volume (events over 28 days) of this many "
    "product features, the portfolio's busiest in the training months.",
)
@click.option(
    "--min-churned-accounts",
    type=click.IntRange(1, 100_000),
    default=20,  # streamer.backtest.choice.MIN_CHURNED_ACCOUNTS (numpy is an extra: not imported here)
    show_default=True,
    help="With --tune: fewest accounts that churned in the training samples for a fit to be written; "
    "with fewer, the default weights are kept and the [model] is the score calibrated.",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "Folder for PNG plots: ROC curves, AUC by month, churn by band, score distributions, alerts; "
        "with --tune also the weights and the calibration of churn_risk_60d."
    ),
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every figure as JSON here.",
)
@click.option(
    "--replay-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the replay here (gzipped JSON) and reuse it on the next run when the events file (its "
    "content too), the "
    "configuration, --partitions, --warmup-days, --now and the scoring core are the same: re-tuning then "
    "takes seconds instead of a replay.",
)
@click.option(
    "--warmup-days",
    type=click.IntRange(0, 3650),
    default=60,
    show_default=True,
    help="Days of usage, ticket and survey history before the first month start sampled.",
)
@partitions_option(
    "Partitions to simulate, as the workers' input topics have (default: HEALTHSTREAM_PARTITIONS, 4). "
    "Each partition ranks its accounts among its own paying accounts, so the peer-relative signals, "
    "and the score with them, depend on it."
)
@now_option()
@quiet_option("No progress on stderr.")
def backtest(**options: Any) -> None:
    """Replay EVENTS (JSON lines, optionally .gz) and report how well the health score predicted churn.

    Events are applied in event-time order through the same core as `streamer offline --sort`;
    at each month start (after --warmup-days of activity) every paying account is scored from
    the events before that instant. Churn is read from the subscription events themselves: an
    account churns when its MRR reaches 0. Reported: ROC AUC of the score for churn within 30 and
    60 days (per month start and pooled), churn rate by band, and each alert rule's precision
    (alerts followed by churn within 60 days) and recall (churns alerted in the 60 days before).

    With --tune, an L2 logistic regression of 60-day churn on every signal's sub-score is fitted on
    the earlier month starts (and a weekly grid between them), its penalty pulling each coefficient
    towards the default score's weight (an infinite penalty is the default). On rolling-origin
    folds inside the training period the default, the fit per penalty, a plain (unconstrained)
    regression that also reads the --top-features feature volumes, and the mix of the default
    and the plain regressions at every penalty (their log-odds averaged) are compared. The
    [model] behind churn_risk_60d is the mix unless the plain regression ranks better out of
    fold by more than two standard errors of their difference; the weights are the default's
    unless the default ranks below the best health fit (coefficients kept <= 0) by more than one
    standard error (then the strongest penalty within it). With fewer than --min-churned-accounts
    accounts that churned in the training samples, nothing fitted is written: the default weights,
    and the score calibrated as the [model] (churn_risk_60d ranks as the score). On the later
    month starts it is compared with the configured score and with the plain regression (each
    difference with its standard error over accounts), and written with --write-config as a file
    `streamer offline --config` and the workers accept.
    """
    done = _Done(f"replaying {click.format_filename(options['events'])}")
    with sigterm_interrupts():
        try:
            _backtest(done=done, **options)
        except KeyboardInterrupt:
            click.echo(f"streamer backtest: interrupted while {done.stage}; {done.outputs()}", err=True)
            sys.exit(130)


@dataclass
class _Done:
    """How far a backtest got: what it was doing, and the outputs written."""

    stage: str
    written: list[Path] = field(default_factory=list)

    def outputs(self) -> str:
        if not self.written:
            return "no output was written (a replay cache is written only once whole)"
        return "written before it: " + ", ".join(click.format_filename(path) for path in self.written)


def _backtest(
    events: Path,
    config_path: Path | None,
    tune_weights: bool,
    write_config: Path | None,
    holdout: float,
    top_features: int,
    min_churned_accounts: int,
    plots_dir: Path | None,
    json_path: Path | None,
    replay_cache: Path | None,
    warmup_days: int,
    partitions: int | None,
    now: datetime | None,
    quiet: bool,
    done: _Done,
) -> None:
    """`backtest`, its progress noted in `done`."""
    with needs_extra("backtest", "backtest"):  # numpy, and matplotlib for --plots
        from streamer.backtest.analysis import NotEnoughHistory, analyse, label, tune
        from streamer.backtest.replaycache import NotACache, fingerprint
        from streamer.backtest.replaycache import load as load_replay
        from streamer.backtest.replaycache import save as save_replay
        from streamer.backtest.report import render
        from streamer.backtest.report import to_json as report_json

        if plots_dir is not None:
            from streamer.backtest.plots import PLOT_FILES, write_all
    settings = Settings()
    source = config_path or settings.score_config
    config = score_config_or_fail(source)
    tune_weights = tune_weights or write_config is not None
    _tuning_options_need_tune(tune_weights)

    partitions = partitions or settings.partitions
    # Checked before the replay: a path that cannot be written failed after minutes of work, and
    # --replay-cache EVENTS replaced the events with a cache. The plots folder by a probe file.
    plots_probe = plots_dir / ".healthstream-write-check" if plots_dir is not None else None
    outputs = {
        "--json": json_path,
        "--write-config": write_config,
        "--replay-cache": replay_cache,
        "--plots": plots_dir,
    }
    plots = [plots_dir / name for name in PLOT_FILES.values()] if plots_dir is not None else []
    _refuse_shared_outputs(outputs, plots)
    prepare([json_path, write_config, replay_cache, plots_probe], [events, source])
    published_ms = publication_ms(now)  # one bound on event time for the fingerprint and the replay
    if replay_cache is not None:
        _refuse_a_stream(events)
    made_from = (
        fingerprint(events, config, partitions, warmup_days, now, published_ms)
        if replay_cache is not None
        else {}
    )
    try:
        history = load_replay(replay_cache, made_from, _warn) if replay_cache is not None else None
    except NotACache as exc:  # an events file or notes named by mistake: never written over
        raise ReplayCacheProblem(str(exc)) from None
    reused = history is not None
    if reused and not quiet:
        click.echo(f"reusing the replay saved in {replay_cache}", err=True)
    if history is None:
        weekly = tune_weights or replay_cache is not None
        history = _replay(events, config, partitions, warmup_days, published_ms, quiet, weekly)
        if replay_cache is not None:
            save_replay(replay_cache, history, made_from)
            done.written.append(replay_cache)
    done.stage = "analysing the replay"
    try:
        result = analyse(history)
    except NotEnoughHistory as exc:
        raise click.ClickException(str(exc)) from None
    cannot_tune: str | None = None
    if tune_weights:
        base = _base_data(source)

        def adopt(fitted: Fitted) -> ScoreConfig:
            return ScoreConfig.model_validate(tomllib.loads(_config_text(base, fitted, [])))

        grid = {d: label(history, d, history.grid_samples) for d in result.horizons}
        by_horizon = {d: h.labelled for d, h in result.horizons.items()}
        try:
            result = dataclasses.replace(
                result,
                tuning=tune(by_horizon, config, adopt, holdout, grid, top_features, min_churned_accounts),
            )
        except NotEnoughHistory as exc:  # the report of the configured score still stands
            cannot_tune = str(exc)
    click.echo(render(result, str(events), reused=replay_cache if reused else None))
    if write_config is not None and result.tuning is not None:  # first: the result that cost most
        header = _tuned_header(result.tuning, events, source)
        write_config.write_text(_config_text(_base_data(source), result.tuning.fitted, header))
        done.written.append(write_config)
        click.echo(
            f"wrote {write_config}: try it with "
            f"`streamer offline {events} --out DIR --sort --config {write_config}`"
        )
    if plots_dir is not None:
        done.stage = "writing the plots"
        written = write_all(result, plots_dir, (config.bands.yellow, config.bands.green))
        done.written += written
        click.echo(f"plots: {', '.join(str(path) for path in written)}")
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(report_json(result), option=orjson.OPT_INDENT_2))
        done.written.append(json_path)
        click.echo(f"figures: {json_path}")
    if cannot_tune is not None:
        unwritten = " and no configuration was written" if write_config is not None else ""
        raise click.ClickException(
            f"{cannot_tune}: the report above is the configured score's{unwritten} (a smaller --holdout "
            "trains on more month starts)"
        )
