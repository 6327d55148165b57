"""Churn-prediction evaluation: one table of how well the health score predicts churn, per portfolio.

Portfolios: folders in the fightchurn layout (`--fightchurn DIR ...`, imported with
`streamer import --preset fightchurn`) and `streamer simulate` outputs for a few seeds. For each:
one `streamer backtest --tune --json` run (the default score's pooled figures, the usage baseline
and, on the held-out later third of the month starts, default vs tuned), then one row:

  portfolio, samples and churners (60 days), baseline AUC60, default AUC60, tuned AUC60 (held
  out: what --tune chose, ranked by what it publishes: churn_risk_60d since the [model] and the
  weights are decided apart, before that the tuned score unless a model-only candidate won),
  plain logistic regression AUC60 (held out, same features),
  red/green 60-day churn ratio

with the targets checked per cell: default >= baseline (and >= 0.70 where the baseline is
>= 0.70); tuned >= default (held out, same samples) and >= logistic; red >= 3x green. Where the
default or tuned falls short, the cell adds by how much, the standard error of that difference (a
paired bootstrap over accounts) and whether it is beyond two of them ("clear") or "noise"; a
default within two standard errors of 0.5 is marked "at chance" (the data rank no churn).

    .venv/bin/python bench/churn_eval.py --fightchurn DATA/crm6-s7 DATA/socialnet7-s7
    .venv/bin/python bench/churn_eval.py --seeds 3 --no-reuse --config tuned.toml
    .venv/bin/python bench/churn_eval.py --events crm6-s303=/data/crm6-s303.day.jsonl.gz --seeds

Each backtest saves its replay beside its figures (`NAME.replay.json.gz`, see `streamer backtest
--replay-cache`): a second run with the same events, configuration and core reuses it and only
re-tunes, in seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from machine import git_revision, load

from streamer.backtest.report import table

BENCH_DIR = Path(__file__).resolve().parent
STREAMER = str(Path(sys.executable).parent / "streamer")
HORIZON = "60"
FLOOR = 0.70  # the default score must reach it where the baseline does
RATIO = 3.0


@dataclass
class Portfolio:
    name: str
    events: Path
    make: list[str]  # the command that writes `events`
    steps: dict[str, float] = field(default_factory=dict)  # step -> wall seconds
    figures: dict[str, Any] = field(default_factory=dict)  # the backtest's --json
    error: str = ""


def run_step(portfolio: Portfolio, step: str, command: list[str]) -> bool:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=_env())
    portfolio.steps[step] = time.monotonic() - started
    print(f"  {portfolio.name}: {step} {portfolio.steps[step]:.1f} s", file=sys.stderr, flush=True)
    if done.returncode != 0:
        portfolio.error = f"{step} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}"
        print(f"  {portfolio.error}", file=sys.stderr)
        return False
    return True


def _env() -> dict[str, str]:
    """The caller's environment without a score configuration of its own (--config sets one)."""
    return {key: value for key, value in os.environ.items() if key != "HEALTHSTREAM_SCORE_CONFIG"}


def evaluate(portfolio: Portfolio, out: Path, reuse: bool, config: Path | None) -> None:
    given = portfolio.make[0] == "(given)"
    if given and not portfolio.events.exists():
        portfolio.error = f"{portfolio.events} does not exist"
        return
    if not (given or (reuse and portfolio.events.exists())):
        if not run_step(portfolio, portfolio.make[1], portfolio.make):
            return
    else:
        portfolio.steps["(reused events)"] = 0.0
    figures = out / f"{portfolio.name}.backtest.json"
    cache = out / f"{portfolio.name}.replay.json.gz"
    command = [STREAMER, "backtest", str(portfolio.events), "--tune", "--quiet", "--json", str(figures)]
    command += ["--replay-cache", str(cache)]  # re-running with another tuning reuses the replay
    if config is not None:
        command += ["--config", str(config)]
    if run_step(portfolio, "backtest --tune", command):
        portfolio.figures = orjson.loads(figures.read_bytes())


# -- the table ----------------------------------------------------------------------------------


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else (" PASS" if ok else " FAIL")


def _held_out(figures: dict[str, Any], name: str) -> float | None:
    tuning = figures.get("tuning") or {}
    held = (tuning.get("held_out") or {}).get(name) or {}
    value = (held.get("auc") or {}).get(HORIZON)
    return float(value) if value is not None else None


def _shortfall(minus: dict[str, Any]) -> str:
    """Each negative difference of a `--json` "minus" table (name -> {auc, standard_error, clear}):
    by how much, with its standard error and whether it is beyond two of them ("clear") or "noise"."""
    parts = []
    for name, found in minus.items():
        if found.get("auc", 0.0) < 0 and found.get("standard_error") is not None:
            verdict = "clear" if found.get("clear") else "noise"
            parts.append(f"{found['auc']:+.3f} vs {name}, SE {found['standard_error']:.3f}: {verdict}")
    return f" ({'; '.join(parts)})" if parts else ""


def _tuned_shortfall(figures: dict[str, Any]) -> str:
    """Where what --tune chose ranks below the default or the plain LR held out (`_shortfall`)."""
    tuning = figures.get("tuning") or {}
    return _shortfall((((tuning.get("held_out") or {}).get("chosen") or {}).get("minus")) or {})


def _default_shortfall(horizon: dict[str, Any]) -> str:
    """Where the default ranks below the baseline (`_shortfall`), and "at chance" where its AUC is
    within two standard errors of 0.5 (figures from before these fields: nothing)."""
    minus = horizon.get("minus") or {}
    text = _shortfall({"baseline": minus["baseline"]} if "baseline" in minus else {})
    chance = minus.get("chance")
    if chance is not None and not chance.get("clear"):
        text += " at chance"
    return text


def _alerts(figures: dict[str, Any]) -> tuple[str, str, str]:
    """(count, precision, recall) of all at-risk alerts together (the backtest's first row)."""
    every = next((a for a in figures.get("alerts") or [] if a.get("rule") == "all at-risk"), None)
    if every is None:
        return "-", "-", "-"
    precision, recall = every.get("precision"), every.get("recall")
    return (
        f"{every['alerts']:,}",
        "-" if precision is None else f"{precision * 100:.1f}%",
        "-" if recall is None else f"{recall * 100:.0f}%",
    )


def row(portfolio: Portfolio) -> list[str]:
    figures = portfolio.figures
    if not figures:
        return [portfolio.name, *["-"] * 11, portfolio.error[:60]]
    horizon = figures["horizons"][HORIZON]
    baseline = (figures.get("baseline") or {}).get("auc", {}).get(HORIZON)
    default = horizon["auc"]
    default_held, logistic = _held_out(figures, "default"), _held_out(figures, "logistic")
    # what --tune chose, through what it publishes: churn_risk_60d (older figures: the tuned score
    # unless a model-only candidate won; the oldest have no "chosen": their tuned score)
    tuned = _held_out(figures, "chosen")
    if tuned is None:
        tuned = _held_out(figures, "tuned")
    bands = horizon["bands"]
    green, red = bands["green"]["rate"], bands["red"]["rate"]
    ratio: float | None = None
    if green is not None and red is not None:
        ratio = red / green if green > 0 else (math.inf if red > 0 else None)

    default_ok = None
    if default is not None and baseline is not None:
        default_ok = default >= baseline and (baseline < FLOOR or default >= FLOOR)
    tuned_ok = None
    if tuned is not None and default_held is not None:
        tuned_ok = tuned >= default_held and (logistic is None or tuned >= logistic)
    ratio_ok = ratio is not None and ratio >= RATIO  # no red sample at all: the score never warns
    by_band = " / ".join(
        "- (0)" if bands[b]["rate"] is None else f"{bands[b]['rate'] * 100:.1f}% ({bands[b]['samples']:,})"
        for b in ("green", "yellow", "red")
    )
    ratio_text = "-" if ratio is None else ("inf" if math.isinf(ratio) else f"{ratio:.1f}x")
    return [
        portfolio.name,
        f"{horizon['samples']:,}",
        f"{horizon['churned']:,}",
        _auc(baseline),
        _auc(default) + _verdict(default_ok) + _default_shortfall(horizon),
        f"{_auc(tuned)} (vs {_auc(default_held)})" + _verdict(tuned_ok) + _tuned_shortfall(figures),
        _auc(logistic),
        ratio_text + _verdict(ratio_ok) + ("" if red is not None else " (no red)"),
        by_band,
        *_alerts(figures),
        portfolio.error[:60],
    ]


HEADER = [
    "portfolio",
    "samples 60d",
    "churners",
    "baseline AUC60",
    "default AUC60",
    "tuned AUC60 held out (vs default)",
    "logistic AUC60",
    "red/green 60d",
    "churn 60d green / yellow / red (samples)",
    "at-risk alerts",
    "precision",
    "recall",
    "note",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--fightchurn", nargs="*", type=Path, default=[], help="folders in the fightchurn layout"
    )
    parser.add_argument(
        "--events",
        nargs="*",
        default=[],
        metavar="NAME=FILE",
        help="already imported event files (contract JSON lines), each under a portfolio name",
    )
    parser.add_argument("--seeds", nargs="*", type=int, default=[3, 5, 11], help="streamer simulate seeds")
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--usage-grain", choices=["hour", "day", "none"], default="day")
    parser.add_argument("--config", type=Path, help="score configuration for every backtest")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "churn_eval")
    parser.add_argument("--no-reuse", dest="reuse", action="store_false", help="re-import / re-simulate")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    portfolios: list[Portfolio] = []
    for folder in args.fightchurn:
        name = folder.resolve().name
        events = args.out / f"{name}.{args.usage_grain}.jsonl.gz"
        make = [STREAMER, "import", str(folder), "--preset", "fightchurn", "--usage-grain", args.usage_grain]
        portfolios.append(Portfolio(name, events, [*make, "--out", str(events)]))
    for named in args.events:
        name, _, file = named.partition("=")
        if not file:
            parser.error(f"--events {named!r}: write NAME=FILE, e.g. crm6-s7=/data/crm6-s7.day.jsonl.gz")
        portfolios.append(Portfolio(name, Path(file), ["(given)", "(given)"]))
    for seed in args.seeds:
        name = f"simulate-{args.accounts}x{args.months}-s{seed}"
        events = args.out / f"{name}.jsonl.gz"
        sizes = ["--accounts", str(args.accounts), "--months", str(args.months), "--seed", str(seed)]
        portfolios.append(
            Portfolio(name, events, [STREAMER, "simulate", *sizes, "--out", str(events), "--quiet"])
        )

    started = time.monotonic()
    print(f"revision {git_revision()}, load {load()}", file=sys.stderr)
    for portfolio in portfolios:
        evaluate(portfolio, args.out, args.reuse, args.config)
    print(
        f"churn prediction at 60 days, revision {git_revision()}, score config {args.config or 'default'}, "
        f"usage grain {args.usage_grain}; load {load()}; {time.monotonic() - started:.0f} s in all"
    )
    print(table(HEADER, [row(p) for p in portfolios]))
    print(
        "targets: default >= baseline (and >= 0.70 where baseline >= 0.70); tuned >= default on the "
        "held-out month starts and >= logistic; red >= 3x green (60-day churn rates)"
    )
    print("wall time per step:")
    for portfolio in portfolios:
        steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in portfolio.steps.items())
        print(f"  {portfolio.name}: {steps}")
    summary = {p.name: {"steps": p.steps, "error": p.error, "row": dict(zip(HEADER, row(p), strict=True))}
               for p in portfolios}  # fmt: skip
    (args.out / "churn_eval.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
