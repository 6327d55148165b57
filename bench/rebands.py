"""Recompute the bands of saved replays: red/green 60-day churn under the checkout's band rule.

`streamer backtest --replay-cache FILE` (and `bench/churn_eval.py --out DIR`) save every sample's
score and sub-scores; the band is a function of those and of the committed share of the
partition's peers, so a band rule can be compared on the same samples in seconds instead of a
replay per portfolio (a replay is still needed for the alerts, which follow the band over time):

    .venv/bin/python bench/rebands.py DIR/crm6-s7.replay.json.gz DIR/socialnet7-s101.replay.json.gz ...
    .venv/bin/python bench/rebands.py --grid --variant mix-red DIR/*.replay.json.gz

Each sample is banded with `Bands.band` of the checkout that runs the script (run it from two
checkouts to compare two rules, or give `--config` a TOML that turns a part of the rule off), from
its score, its usage composite and its standing per peer signal (the replay's sub-scores, rounded
as the core rounds percentiles). The committed share of the partition's peer reference is not in
the replay: the share of the partition's samples at that instant that are committed stands in for
it (each account's partition from the replay's partition count, as the worker's Kafka key does;
exact where no account is committed, e.g. the socialnet7 portfolios). The `same` column counts
the samples whose recomputed band equals the one the replay recorded: all of them when the
replay was made with the same rule, a measure of the stand-in otherwise (before this column the
share of all the month start's samples stood in, and crm6-s454 read 8.4x where the real run had
2.8x). `--grid` reads the weekly grid samples instead of the month starts: four times the
samples, the same churners, so it smooths the timing of few churns, not their number.

Columns: samples and churners (60 days), red/green, green and red as a share of the samples
and their churn, and P(>= 3x): the share of `--bootstrap` resamples of the portfolio's accounts
(with replacement, each with all its samples) where red churns at least 3x as often as green:
how sure a pass is when a handful of churners decide it. `--variant` applies one of the rules
that were tried and not adopted (VARIANTS), so their rows in docs/backtest-rounds.md can be rerun.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from streamer.backtest import replaycache
from streamer.backtest.analysis import TUNE_HORIZON, committed, label
from streamer.backtest.sampling import Sample
from streamer.core.clock import DAY
from streamer.core.config import ScoreConfig
from streamer.core.peers import PEER_SIGNALS
from streamer.partitioning import partition_of

VOLUME = ("events_28d", "active_days_28d", "user_days_28d", "feature_mix_28d")

# sample, its band under the checkout's rule, red_usage_below, first paid (epoch ms) -> its band
Variant = Callable[[Sample, str, float, int], str]
SEASONED_DAYS = 56  # two 28-day windows: the account's own baseline exists


def _mix_red(s: Sample, band: str, red_below: float, first_paid: int) -> str:
    """Red also from the bottom of the mix of use alone (not only of the composite): the
    checkout's rule since the ninth round (`Bands.red_also`), so a no-op on its defaults."""
    low = s.signals.get("feature_mix_28d", 100.0) < red_below
    return "red" if low and not committed(s) and "usage_28d" in s.signals else band


def _two_low(s: Sample, band: str, red_below: float, first_paid: int) -> str:
    """Red also when two of the four volume signals are in the bottom of the peers."""
    low = sum(s.signals.get(name, 100.0) < red_below for name in VOLUME) >= 2
    return "red" if low and not committed(s) and "usage_28d" in s.signals else band


def _not_declining(s: Sample, band: str, red_below: float, first_paid: int) -> str:
    """Green (for an account that can leave soon) also needs its events not to have fallen
    against its own previous 28 days (`events_trend_28d` sub-score >= 80: a change >= 0)."""
    falling = s.signals.get("events_trend_28d", 0.0) < 80
    return "yellow" if band == "green" and falling and not committed(s) else band


def _seasoned(s: Sample, band: str, red_below: float, first_paid: int) -> str:
    """Green (for an account that can leave soon) also needs `SEASONED_DAYS` of paying history:
    a short history is low confidence, yellow at best."""
    young = s.at - first_paid < SEASONED_DAYS * DAY
    return "yellow" if band == "green" and young and not committed(s) else band


VARIANTS: dict[str, Variant] = {
    "mix-red": _mix_red,
    "two-low": _two_low,
    "not-declining": _not_declining,
    "seasoned": _seasoned,
}


def committed_shares(samples: list[Sample], partitions: int) -> dict[tuple[int, int], float]:
    """Percent of each partition's samples at each month start (or grid instant) that are
    committed: what the partition's peer reference at that midnight counted."""
    counts: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for s in samples:
        key = (s.at, partition_of(s.account_id, partitions))
        counts[key][0] += committed(s)
        counts[key][1] += 1
    return {key: 100.0 * c / n for key, (c, n) in counts.items()}


def standing(s: Sample) -> dict[str, float]:
    """The sample's percentile per peer signal, healthier higher, as the core's band reads it
    (the sub-score of a signal in peer mode, rounded to a tenth like the core's percentiles)."""
    return {name: round(value, 1) for name, value in s.signals.items() if name in PEER_SIGNALS}


def bands_of(
    samples: list[Sample],
    shares: dict[tuple[int, int], float],
    partitions: int,
    config: ScoreConfig,
    variant: Variant | None,
    first_paid: dict[str, int],
) -> list[str]:
    out = []
    for s in samples:
        bands = config.bands_for(s.stage, s.plan)
        share = shares[(s.at, partition_of(s.account_id, partitions))]
        usage = s.signals.get("usage_28d")
        band = str(bands.rule.band(s.score, usage, committed(s), share, standing(s)))
        if variant is not None:
            band = variant(s, band, bands.red_usage_below, first_paid.get(s.account_id, s.at))
        out.append(band)
    return out


def ratio(red: tuple[float, float], green: tuple[float, float]) -> float | None:
    """Red's churn rate over green's from (churned, samples) pairs (inf: green never churned)."""
    if red[1] == 0 or green[1] == 0:
        return None
    g = green[0] / green[1]
    return float("inf") if g == 0 else (red[0] / red[1]) / g


def bootstrap(per_account: np.ndarray, draws: int, rng: np.random.Generator) -> float:
    """Share of account resamples with red >= 3x green (columns: green n, churned, red n, churned)."""
    picks = rng.integers(0, len(per_account), size=(draws, len(per_account)))
    sums = per_account[picks].sum(axis=1)
    green = sums[:, 1] / np.maximum(sums[:, 0], 1)
    red = sums[:, 3] / np.maximum(sums[:, 2], 1)
    return float(np.mean((red >= 3 * green) & (sums[:, 2] > 0) & (sums[:, 3] > 0)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("replays", nargs="+", metavar="FILE", help="NAME.replay.json.gz files")
    parser.add_argument("--config", type=Path, help="score configuration TOML (default: the defaults)")
    parser.add_argument("--grid", action="store_true", help="the weekly grid samples, not the month starts")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="a rule tried and not adopted")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N")
    args = parser.parse_args()
    config = ScoreConfig.model_validate(tomllib.loads(args.config.read_text()) if args.config else {})
    variant = VARIANTS[args.variant] if args.variant else None
    rng = np.random.default_rng(1)
    print(
        "| portfolio | samples / churners | red/green | green: share, churn | red: share, churn "
        "| P(>= 3x) | same |"
    )
    print("|---|---|---|---|---|---|---|")
    passes, expected = 0, 0.0
    for path in map(Path, args.replays):
        started = time.process_time()
        with gzip.open(path, "rb") as handle:
            made_from = orjson.loads(handle.read())["made_from"]
        history = replaycache.load(path, made_from)  # the file's own fingerprint: read as it is
        if history is None:
            raise SystemExit(f"{path}: not a saved replay")
        labelled = label(history, TUNE_HORIZON, history.grid_samples if args.grid else None)
        first_paid = {account: points[0][0] for account, points in history.timelines.items() if points}
        partitions = int(made_from.get("partitions") or 4)
        shares = committed_shares(history.grid_samples if args.grid else history.samples, partitions)
        bands = bands_of(labelled.samples, shares, partitions, config, variant, first_paid)
        same = sum(band == s.band for band, s in zip(bands, labelled.samples, strict=True))
        tally: dict[str, list[float]] = {b: [0.0, 0.0] for b in ("green", "yellow", "red")}
        accounts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(4))
        for s, band, churned in zip(labelled.samples, bands, labelled.churned.tolist(), strict=True):
            tally[band][0] += churned
            tally[band][1] += 1
            if band in ("green", "red"):
                column = 0 if band == "green" else 2
                accounts[s.account_id][column] += 1
                accounts[s.account_id][column + 1] += churned
        red, green = tally["red"], tally["green"]
        found = ratio((red[0], red[1]), (green[0], green[1]))
        sure = bootstrap(np.array(list(accounts.values())), args.bootstrap, rng) if accounts else 0.0
        passes += found is not None and found >= 3
        expected += sure
        n = len(labelled.samples)

        def cell(part: list[float], n: int = n) -> str:
            rate = f"{100 * part[0] / part[1]:.1f}%" if part[1] else "-"
            return f"{100 * part[1] / n:.0f}%, {rate} ({int(part[0])} of {int(part[1]):,})"

        name = path.name.removesuffix(".replay.json.gz")
        shown = "-" if found is None else ("inf" if found == float("inf") else f"{found:.2f}x")
        print(
            f"| {name} | {n:,} / {int(labelled.churned.sum())} | {shown} | {cell(green)} "
            f"| {cell(red)} | {sure:.2f} | {same:,} |",
            flush=True,
        )
        print(f"{name}: {time.process_time() - started:.1f} CPU s", file=sys.stderr)
    print(f"\nred >= 3x green: {passes} of {len(args.replays)}; expected passes (sum of P): {expected:.2f}")


if __name__ == "__main__":
    main()
