"""What ChurnSim's own churn driver reaches: the room a usage score has above the activity count.

ChurnSim decides churn from a customer's monthly event counts through a utility with one
weight per event type (the config's `utility:`, some negative: `unfriend` -10, `adview` -1.5),
each count taken as a saturating share of the population's mean, sum of weight x mean x (1 -
e^(-2 x count / mean)), plus terms no usage shows (a satisfaction propensity drawn per
customer, its age, MRR). A score that reads only use cannot know those weights. So on a
portfolio where even the driver itself, with its true weights, ranks churn barely better than
the plain count, no usage score can beat the count by more than noise.

Per portfolio folder (the fightchurn layout `streamer import --preset fightchurn` reads), from
the raw tables alone: at each month start from 60 days after the simulation's start to the last
with 60 days of data after it, every account paying then (a subscription row active on `[start,
end)`), labelled churned when its run of touching rows ends within 60 days and by the
simulation's end; its events per type in the 28 days before. Pooled 60-day ROC AUC (the
backtest's `roc_auc`, ties one half) of, each ranked among the accounts paying at that month
start (portfolio-wide, one partition):

- `count`: events in 28 days (the backtest's baseline);
- `mix`: the geometric mean of the per-type percentiles, as `feature_mix_28d` (1 % floor);
- `driver`: the utility with the config's true weights on the 28-day counts (means over the
  accounts paying at that month start);
- `driver, linear`: the same weights on the counts without the saturation.

    .venv/bin/python bench/churn_driver.py ../data/socialnet7-s7 bench/out/churnsim/socialnet7-s*

Seconds per portfolio. The samples are close to the backtest's, not equal to them (it reads
the imported events and its own month starts): a bound to read beside its table, not a cell of it.
"""

from __future__ import annotations

import csv
import gzip
import re
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from common import parser
from numpy.typing import NDArray

from streamer.backtest.metrics import roc_auc
from streamer.backtest.report import table

WINDOW_DAYS = 28
HORIZON_DAYS = 60
WARMUP_DAYS = 60
MIX_FLOOR = 0.01

Floats = NDArray[np.float64]


def setting(conf: str, name: str) -> str:
    found = re.search(rf"^{name}: '?([^'\n]+)'?$", conf, re.M)
    if found is None:
        raise SystemExit(f"conf.yaml has no {name}")
    return found.group(1)


def utility_weights(folder: Path, conf: str) -> Floats:
    """The config's utility weight of each event type id (0 for a type it does not weigh)."""
    block = conf.split("\nutility:\n", 1)[1]
    weights: dict[str, float] = {}
    for line in block.splitlines():
        found = re.match(r"^  (\w+): (-?[0-9.]+)$", line)
        if found is None:
            break
        weights[found.group(1)] = float(found.group(2))
    with gzip.open(folder / "event_type.csv.gz", "rt") as handle:
        names = {int(row["event_type_id"]): row["event_type_name"] for row in csv.DictReader(handle)}
    return np.array([weights.get(names.get(i, ""), 0.0) for i in range(max(names) + 1)])


def paying_runs(folder: Path) -> dict[int, list[tuple[date, date]]]:
    """Per account, its runs of touching subscription rows as [start, end)."""
    rows: dict[int, list[tuple[date, date]]] = {}
    with gzip.open(folder / "subscription.csv.gz", "rt") as handle:
        for row in csv.DictReader(handle):
            span = (date.fromisoformat(row["start_date"]), date.fromisoformat(row["end_date"]))
            rows.setdefault(int(row["account_id"]), []).append(span)
    runs: dict[int, list[tuple[date, date]]] = {}
    for account, spans in rows.items():
        merged: list[list[date]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        runs[account] = [(start, end) for start, end in merged]
    return runs


def events(folder: Path, origin: date) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Every event's account, day (from `origin`) and type id."""
    accounts, days, types = [], [], []
    with gzip.open(folder / "event.csv.gz", "rt") as handle:
        next(handle)
        for line in handle:
            account, moment, kind, _ = line.split(",", 3)
            accounts.append(int(account))
            days.append((date.fromisoformat(moment[:10]) - origin).days)
            types.append(int(kind))
    return np.array(accounts), np.array(days), np.array(types)


def percentile(values: Floats) -> Floats:
    """Share of the group below each value, ties counted one half, 0-1."""
    ordered = np.sort(values)
    below = np.searchsorted(ordered, values, "left")
    upto = np.searchsorted(ordered, values, "right")
    return (below + 0.5 * (upto - below)) / len(values)


def figures(counts: Floats, weights: Floats) -> dict[str, Floats]:
    """Each figure of an account (higher = healthier) from its 28-day counts per type."""
    used = counts.sum(0) > 0
    shares = np.column_stack([percentile(counts[:, j]) for j in np.flatnonzero(used)])
    weights = weights[: counts.shape[1]]
    means = counts.mean(0) + 1e-12
    return {
        "count": counts.sum(1),
        "mix": np.exp(np.log(shares + MIX_FLOOR).mean(1)),
        "driver": ((1 - np.exp(-2 * counts / means)) * means * weights).sum(1),
        "driver, linear": (counts * weights).sum(1),
    }


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def measure(folder: Path) -> tuple[int, int, dict[str, float | None]]:
    conf = (folder / "conf.yaml").read_text()
    origin = date.fromisoformat(setting(conf, "start_date"))
    sim_end = date.fromisoformat(setting(conf, "end_date"))
    weights = utility_weights(folder, conf)
    runs = paying_runs(folder)
    accounts, days, types = events(folder, origin)
    data_end = origin + timedelta(days=int(days.max()))
    first = origin + timedelta(days=WARMUP_DAYS)
    month = (
        date(first.year, first.month, 1)
        if first.day == 1
        else date(first.year + first.month // 12, first.month % 12 + 1, 1)
    )
    scores: dict[str, list[Floats]] = {}
    labels: list[NDArray[np.int64]] = []
    shape = (max(max(runs), int(accounts.max())) + 1, int(types.max()) + 1)
    while month + timedelta(days=HORIZON_DAYS) <= data_end:
        paying, churned = [], []
        for account, spans in runs.items():
            for start, end in spans:
                if start <= month < end:
                    paying.append(account)
                    churned.append(int(end <= sim_end and end <= month + timedelta(days=HORIZON_DAYS)))
        day = (month - origin).days
        window = (days >= day - WINDOW_DAYS) & (days < day)
        counts = np.zeros(shape)
        np.add.at(counts, (accounts[window], types[window]), 1)
        for name, values in figures(counts[paying], weights).items():
            scores.setdefault(name, []).append(percentile(values))
        labels.append(np.array(churned))
        month = next_month(month)
    positive = np.concatenate(labels).astype(bool)
    found = {name: roc_auc(-np.concatenate(values), positive) for name, values in scores.items()}
    return len(positive), int(positive.sum()), found


def main(argv: list[str]) -> None:
    cli = parser(__doc__)
    cli.add_argument("folders", nargs="+", type=Path, help="ChurnSim portfolio folders (fightchurn layout)")
    args = cli.parse_args(argv)
    rows = []
    for folder in args.folders:
        samples, churned, found = measure(folder)
        cells = [f"{found[name]:.3f}" if found[name] is not None else "-" for name in found]
        rows.append([folder.name, f"{samples:,}", f"{churned:,}", *cells])
        print(f"{folder.name}: done", file=sys.stderr, flush=True)
    print(table(["portfolio", "samples", "churned", "count", "mix", "driver", "driver, linear"], rows))


if __name__ == "__main__":
    main(sys.argv[1:])
