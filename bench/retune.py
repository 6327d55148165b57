"""Re-tune saved replays: held-out AUC 60d of the default, of what `--tune` chose and of the plain fit.

`streamer backtest --replay-cache FILE` saves a replay (every sample's signals, volumes and
labels' timelines); this script reads such files as they are, whatever events file, core or
revision made them, runs `--tune`'s fitting and choice of the checkout it runs from on them, and
prints one row per portfolio and a summary. Running it from two checkouts on the same files
compares two tuning rules on exactly the same samples (the replays are not redone):

    .venv/bin/python bench/retune.py crm6-s7=DIR/crm6-s7.replay.json.gz socialnet7-s7=...

Columns, on the held-out later third of the month starts (60-day churn): the default score, what
`--tune` chose ranked by what it publishes (the tuned score, or churn_risk_60d when the written
candidate is a model only), the plain logistic regression; the winner of the choice and whether
tuned >= default and tuned >= plain; the mix of the calibrated default and the plain regressions
(a `--tune` candidate, see streamer/backtest/choice.py) held out, and where the written weights
come from (the default or a health fit; a checkout before they were decided apart: whether the
mix was within one standard error of the best out of fold). CPU seconds per portfolio on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import orjson

from streamer.backtest import replaycache
from streamer.backtest.analysis import TUNE_HORIZON, Fitted, Labelled, TuneResult, analyse, label, tune
from streamer.backtest.configfile import tuned_config_text
from streamer.core.clock import DAY
from streamer.core.config import ScoreConfig


def adopt(fitted: Fitted) -> ScoreConfig:
    text = tuned_config_text({}, fitted.weights, [], fitted.signal_weights, fitted.model)
    return ScoreConfig.model_validate(tomllib.loads(text))


@dataclass(frozen=True)
class Row:
    default: float
    tuned: float  # what --tune chose, through what it publishes
    plain: float
    winner: str
    samples: int  # held out, 60-day labels
    churned: int
    brier: float  # the written [model]'s, held out
    mix: float | None  # the mix of the calibrated default and the plain fit, held out
    weights: str  # the written weights' candidate (older checkouts: whether the mix was within 1 SE)
    churned_accounts: int  # accounts with a 60-day churn label in the training samples
    shortfall: str = ""  # where tuned ranks below the default / plain held out: by how much, its SE
    clear_shortfall: bool = False  # one of them beyond two standard errors

    @property
    def passes(self) -> bool:
        return self.tuned >= self.default and self.tuned >= self.plain


def tuned_replay(path: Path, holdout: float) -> tuple[dict[int, Labelled], dict[int, Labelled], TuneResult]:
    """A saved replay (read as it is, whatever made it) tuned as `--tune` would: the labelled
    month-start samples and weekly-grid samples per horizon, and the tuning."""
    with gzip.open(path, "rb") as handle:
        made_from = orjson.loads(handle.read())["made_from"]
    history = replaycache.load(path, made_from)  # the file's own fingerprint: read as it is
    if history is None:
        raise SystemExit(f"{path}: not a saved replay")
    result = analyse(history)
    grid = {days: label(history, days, history.grid_samples) for days in result.horizons}
    by_horizon = {days: h.labelled for days, h in result.horizons.items()}
    return by_horizon, grid, tune(by_horizon, ScoreConfig(), adopt, holdout, grid)


def retune(path: Path, holdout: float) -> Row:
    by_horizon, grid, tuning = tuned_replay(path, holdout)
    test = tuning.test_labelled[TUNE_HORIZON]
    mix = getattr(tuning, "mix_risk", None)  # a checkout before the mix has none
    return Row(
        tuning.default.auc[TUNE_HORIZON] or 0.5,
        tuning.chosen[TUNE_HORIZON] or 0.5,
        tuning.plain_risk.auc[TUNE_HORIZON] or 0.5,
        tuning.choice.winner.label,
        len(test.samples),
        int(test.churned.sum()),
        tuning.risk.brier,
        mix.auc[TUNE_HORIZON] or 0.5 if mix is not None else None,
        tuning.choice.weighting.label
        if hasattr(tuning.choice, "weighting")
        else f"mix within 1 SE: {any(c.kind.value == 'mix' for c in getattr(tuning.choice, 'eligible', []))}",
        churned_accounts(by_horizon[TUNE_HORIZON], grid[TUNE_HORIZON], tuning),
        *shortfall(tuning),
    )


def shortfall(tuning: TuneResult) -> tuple[str, bool]:
    """Where what --tune chose ranks below the default score or the plain fit held out: the
    difference, its standard error (paired bootstrap over accounts) and whether it is beyond two of
    them; empty on a checkout that does not compute them."""
    versus = getattr(tuning, "versus", {})
    below = {name: found for name, found in versus.items() if found.auc < 0}
    text = "; ".join(
        f"{found.auc:+.3f} vs {name} (SE {found.standard_error or 0.0:.3f}{', clear' if found.clear else ''})"
        for name, found in below.items()
    )
    return text, any(found.clear for found in below.values())


def churned_accounts(months: Labelled, grid: Labelled, tuning: TuneResult) -> int:
    """Accounts with a 60-day churn label in `--tune`'s training samples (month starts and weekly
    grid whose label window ends by the first held-out month start), counted here so that older
    checkouts, which do not count them, print it too."""
    first_test = tuning.test_months[0]
    return len(
        {
            s.account_id
            for labelled in (months, grid)
            for s, churned in zip(labelled.samples, labelled.churned, strict=True)
            if churned and s.at + TUNE_HORIZON * DAY <= first_test
        }
    )


def replays_parser(doc: str | None) -> argparse.ArgumentParser:
    """The command line of a script over saved replays: NAME=FILE ..., --holdout, --json."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("replays", nargs="+", metavar="NAME=FILE")
    parser.add_argument("--holdout", type=float, default=1 / 3)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    return parser


def main() -> None:
    args = replays_parser(__doc__).parse_args()
    rows: dict[str, Row] = {}
    print(
        "| portfolio | churned accounts (training) | held out: churners / samples "
        "| default / tuned / plain AUC60 | chosen | tuned >= default, plain | short by (SE) "
        "| mix held out (weights) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for item in args.replays:
        name, _, file = item.partition("=")
        started = time.process_time()
        row = rows[name] = retune(Path(file), args.holdout)
        print(f"{name}: {time.process_time() - started:.1f} CPU s", file=sys.stderr)
        print(
            f"| {name} | {row.churned_accounts} | {row.churned} / {row.samples} "
            f"| {row.default:.3f} / **{row.tuned:.3f}** / {row.plain:.3f} "
            f"| {row.winner} | {'yes' if row.tuned >= row.default else 'no'}, "
            f"{'yes' if row.tuned >= row.plain else 'no'} | {row.shortfall or '-'} "
            f"| {'n/a' if row.mix is None else f'{row.mix:.3f}'} ({row.weights}) |",
            flush=True,
        )
    both = [name for name, row in rows.items() if row.passes]
    print(f"\ntuned >= default and >= plain: {len(both)} of {len(rows)} ({', '.join(both)})")
    clear = [name for name, row in rows.items() if row.clear_shortfall]
    print(
        f"short by more than two standard errors of the held-out difference: {len(clear)} of "
        f"{len(rows) - len(both)} ({', '.join(clear) or 'none'})"
    )
    means = [
        sum(getattr(r, column) for r in rows.values()) / len(rows) for column in ("default", "tuned", "plain")
    ]
    print("mean held-out AUC60 default / tuned / plain: " + " / ".join(f"{m:.4f}" for m in means))
    if args.json is not None:
        args.json.write_bytes(
            orjson.dumps({n: dataclasses.asdict(r) for n, r in rows.items()}, option=orjson.OPT_INDENT_2)
        )


if __name__ == "__main__":
    main()
