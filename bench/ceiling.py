"""What the data allow: gradient boosted trees against `--tune`'s fits on saved replays.

Issue 9 asks the tuned churn score to reach a held-out 60-day AUC >= the plain logistic
regression, "0.80 where the data allow". This script asks whether a flexible learner, given the
same samples and the same information, ranks held-out churners clearly better than the plain
regression and the tuned score; if it does not, the portfolio's history does not allow much more.

    .venv/bin/python bench/ceiling.py crm6-s7=DIR/crm6-s7.replay.json.gz socialnet7-s7=...

Each replay (a `streamer backtest --replay-cache` file, read as it is) goes through `--tune`'s own
code path, exactly as `bench/retune.py` does: `analyse`, `label`, `tune(..., holdout)`. The
held-out samples and labels are `tune`'s (`test_labelled[60]`: the later third of the month
starts), and the training samples are the ones `tune` fits on: month-start and weekly-grid
samples whose 60-day label window ends by the first held-out month start (checked against
`tune`'s count). Columns, all held-out AUC60:

- default, tuned (what `--tune` chose, through what it publishes), plain (its unconstrained
  logistic regression on the signal sub-scores and the top feature volumes): as `retune.py`;
- GBM: scikit-learn's `HistGradientBoostingClassifier` on exactly the columns the plain
  regression reads (its `FeatureSpace`: sub-scores / 100 with training means for missing ones,
  the missing indicators, 100 x ln(1 + events over 28 days) of its top features);
- GBM, every field: the same, plus what else a sample carries (every feature's volume seen in
  training, ln(1 + MRR), the lifecycle stage and the plan as categories). The samples carry no
  raw signal values (only the 0-100 sub-scores), so there is no raw-value column.

The GBM's settings come from a fixed grid of `SETTINGS`, chosen inside the training period
only: rolling-origin folds over the training instants (`learn.time_folds`, up to `GBM_FOLDS`
validation instants at least 14 days apart, each fitted on the instants whose label window ends
by it; 60-day labels, or, as `--tune`'s own choice does, 30-day ones when the training period is
too short for a 60-day fold). The setting with the best pooled validation AUC wins (rounded to 4
places; ties go to the earlier, simpler setting) and is refitted on every training sample. The
held-out period is never looked at until the final prediction. For reference only, the hindsight
column is the best held-out AUC of any setting of the grid with either column set, read off the
held-out period: an optimistic bound on what this learner could show, never a choice.
`GBM - plain` has a bootstrap standard error over accounts (an account's held-out samples stay
together; `--tune`'s bootstrap: 200 resamples, seed 0). Everything is deterministic (no subsampling, no
early stopping, fixed seeds).

scikit-learn is not a project dependency: on first use the script installs it (with its
dependencies except numpy, pinned in `PINS`) into `bench/out/ceiling-lib` with this
interpreter's pip and reads it from there; OpenMP is held to one thread. CPU seconds per
portfolio on stderr.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from retune import replays_parser, tuned_replay

from streamer.backtest.analysis import TUNE_HORIZON, Labelled
from streamer.backtest.choice import bootstrap_se, plain_risk, plain_rows, volume_features
from streamer.backtest.learn import FOLD_SPACING_DAYS, Fold, time_folds
from streamer.backtest.metrics import roc_auc
from streamer.backtest.sampling import Sample
from streamer.backtest.tuning import split_months
from streamer.core.clock import DAY

Matrix = NDArray[np.float64]
LIB = Path(__file__).resolve().parent / "out" / "ceiling-lib"
PINS = (
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
    "joblib==1.6.0",
    "threadpoolctl==3.8.0",
    "cloudpickle==3.1.2",
    "narwhals==2.28.0",
)
GBM_FOLDS = 6  # validation instants inside the training period
SEED = 0
SETTINGS: tuple[dict[str, Any], ...] = tuple(
    {
        "learning_rate": 0.05,
        "max_iter": iterations,
        "max_leaf_nodes": leaves,
        "min_samples_leaf": min_leaf,
        "l2_regularization": 1.0,
    }
    for iterations in (50, 200)
    for leaves in (4, 15)
    for min_leaf in (80, 20)
)
"""The GBM's candidate settings, simplest first (fewer trees, fewer leaves, larger leaves)."""


def gbm_class() -> Any:
    """`HistGradientBoostingClassifier`, from `bench/out/ceiling-lib` (installed there once)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read when sklearn's OpenMP runtime loads
    if not (LIB / ".installed").exists():
        print(f"installing {', '.join(PINS)} into {LIB} (once) ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(LIB), *PINS],
            check=True,
        )
        (LIB / ".installed").touch()
    sys.path.append(str(LIB))  # after the venv's own packages: its numpy is the one used
    return importlib.import_module("sklearn.ensemble").HistGradientBoostingClassifier


@dataclass(frozen=True)
class Row:
    held_out: int
    churned: int
    train: int
    train_churned: int
    default: float
    tuned: float
    plain: float
    gbm: float
    gbm_setting: str
    gbm_validation: float  # pooled validation AUC of the chosen setting, inside the training period
    folds: str  # how many validation instants, of which label horizon
    gbm_se: float  # bootstrap SE of gbm - plain, held out
    every: float  # the GBM given every field a sample carries
    every_setting: str
    every_se: float  # bootstrap SE of every - plain, held out
    hindsight: float  # the best held-out AUC of any setting with either column set (not a choice)

    @property
    def best(self) -> float:
        return max(self.default, self.tuned, self.plain, self.gbm, self.every)


def auc(risk: Matrix, churned: NDArray[np.bool_]) -> float:
    found = roc_auc(risk, churned)
    return 0.5 if found is None else found


def label_of(setting: dict[str, Any]) -> str:
    return f"{setting['max_iter']}x{setting['max_leaf_nodes']}, leaf>={setting['min_samples_leaf']}"


class Columns:
    """Training-period encodings: the plain fit's columns, optionally with every other field."""

    def __init__(self, plain: Any, train: Sequence[Sample], every: bool) -> None:
        self.plain = plain
        self.features = volume_features(plain)
        self.every = every
        taken = set(self.features)
        self.extra = sorted({name for s in train for name in s.volumes} - taken) if every else []
        self.stages = {v: i for i, v in enumerate(sorted({s.stage for s in train}))}
        self.plans = {v: i for i, v in enumerate(sorted({str(s.plan) for s in train}))}

    def matrix(self, samples: Sequence[Sample]) -> Matrix:
        x = self.plain.space.matrix(plain_rows(samples, self.features))
        if not self.every:
            return np.asarray(x, dtype=np.float64)
        more = np.array(
            [
                [
                    *(math.log1p(s.volumes.get(name, 0)) for name in self.extra),
                    math.log1p(max(s.mrr, 0)),
                    self.stages.get(s.stage, np.nan),
                    self.plans.get(str(s.plan), np.nan),  # unseen in training: missing
                ]
                for s in samples
            ],
            dtype=np.float64,
        ).reshape(len(samples), len(self.extra) + 3)
        return np.hstack((x, more))

    def categorical(self, width: int) -> NDArray[np.bool_] | None:
        if not self.every:
            return None
        mask = np.zeros(width, dtype=bool)
        mask[-2:] = True  # stage, plan
        return mask


def fit_gbm(gbm: Any, setting: dict[str, Any], x: Matrix, y: NDArray[np.bool_], cat: Any) -> Any:
    model = gbm(**setting, early_stopping=False, categorical_features=cat, random_state=SEED)
    return model.fit(x, y)


def training(
    by_horizon: dict[int, Labelled], grid: dict[int, Labelled], days: int, first_test: int
) -> Labelled:
    """`tune`'s training samples for `days`-day labels: month-start and weekly-grid samples whose
    label window ends by the first held-out month start."""
    found = [by_horizon[days], grid[days]]
    pooled = Labelled(
        days,
        [s for labelled in found for s in labelled.samples],
        np.concatenate([labelled.churned for labelled in found]),
    )
    return pooled.where(np.array([s.at + days * DAY <= first_test for s in pooled.samples], dtype=bool))


def validation_folds(inner: Labelled) -> list[Fold]:
    """Rolling-origin folds over `inner`'s instants whose fitting instants hold both classes."""
    at = np.array([s.at for s in inner.samples], dtype=np.int64)
    return [
        fold
        for fold in time_folds(sorted(set(at.tolist())), inner.days, GBM_FOLDS, FOLD_SPACING_DAYS)
        if 0 < inner.churned[np.isin(at, fold.fit_months)].sum() < np.isin(at, fold.fit_months).sum()
    ]


def choose_setting(
    gbm: Any, columns: Columns, inner: Labelled, folds: Sequence[Fold], cat: Any
) -> tuple[dict[str, Any], float]:
    """The setting with the best pooled AUC over time-ordered folds inside the training period."""
    if not folds:
        return SETTINGS[0], math.nan
    x, y = columns.matrix(inner.samples), inner.churned
    at = np.array([s.at for s in inner.samples], dtype=np.int64)
    scored: list[tuple[float, int]] = []
    for index, setting in enumerate(SETTINGS):
        predicted, observed = [], []
        for fold in folds:
            fit, check = np.isin(at, fold.fit_months), at == fold.validate
            model = fit_gbm(gbm, setting, x[fit], y[fit], cat)
            predicted.append(model.predict_proba(x[check])[:, 1])
            observed.append(y[check])
        scored.append((round(auc(np.concatenate(predicted), np.concatenate(observed)), 4), index))
    best, index = max(scored, key=lambda item: (item[0], -item[1]))
    return SETTINGS[index], best


def paired_se(a: Matrix, b: Matrix, churned: NDArray[np.bool_], accounts: Sequence[str]) -> float:
    """Standard error of AUC(a) - AUC(b) over resamples of accounts: `--tune`'s own bootstrap."""
    found = bootstrap_se(a, churned, accounts, b)
    return math.nan if found is None else found


def measure(path: Path, holdout: float, gbm: Any) -> Row:
    by_horizon, grid, tuning = tuned_replay(path, holdout)
    test = tuning.test_labelled[TUNE_HORIZON]

    months = sorted({s.at for s in by_horizon[TUNE_HORIZON].samples})
    first_test = split_months(months, holdout, TUNE_HORIZON * DAY)[1][0]
    assert first_test == tuning.test_months[0] == min(s.at for s in test.samples)
    train = training(by_horizon, grid, TUNE_HORIZON, first_test)
    assert len(train.samples) == tuning.train_samples and int(train.churned.sum()) == tuning.train_churned
    # the folds: like `tune`'s choice, the longest label horizon whose folds are usable (30 days
    # when the training period is too short for 60-day folds)
    for days in sorted((d for d in by_horizon if d <= TUNE_HORIZON), reverse=True):
        inner = training(by_horizon, grid, days, first_test)
        folds = validation_folds(inner)
        if folds:
            break

    plain = plain_risk(tuning.plain, test.samples)
    assert abs(auc(plain, test.churned) - (tuning.plain_risk.auc[TUNE_HORIZON] or 0.5)) < 1e-12
    accounts = [s.account_id for s in test.samples]
    found_gbm: list[tuple[float, str, float, float]] = []
    hindsight = 0.0
    for every in (False, True):
        columns = Columns(tuning.plain, train.samples, every)
        x, x_test = columns.matrix(train.samples), columns.matrix(test.samples)
        cat = columns.categorical(x.shape[1])
        setting, validation = choose_setting(gbm, columns, inner, folds, cat)
        risk = fit_gbm(gbm, setting, x, train.churned, cat).predict_proba(x_test)[:, 1]
        se = paired_se(risk, plain, test.churned, accounts)
        found_gbm.append((auc(risk, test.churned), label_of(setting), validation, se))
        for other in SETTINGS:  # for reference only: read off the held-out period
            fitted = fit_gbm(gbm, other, x, train.churned, cat)
            hindsight = max(hindsight, auc(fitted.predict_proba(x_test)[:, 1], test.churned))
    (gbm_auc, gbm_setting, validation, gbm_se), (every_auc, every_setting, _, every_se) = found_gbm
    return Row(
        len(test.samples),
        int(test.churned.sum()),
        len(train.samples),
        int(train.churned.sum()),
        tuning.default.auc[TUNE_HORIZON] or 0.5,
        tuning.chosen[TUNE_HORIZON] or 0.5,
        auc(plain, test.churned),
        gbm_auc,
        gbm_setting,
        validation,
        f"{len(folds)} x {inner.days}d",
        gbm_se,
        every_auc,
        every_setting,
        every_se,
        hindsight,
    )


def main() -> None:
    args = replays_parser(__doc__).parse_args()
    gbm = gbm_class()
    rows: dict[str, Row] = {}
    print(
        "| portfolio | held out: churners / samples | training: churners / samples "
        "| default / tuned / plain AUC60 | GBM (setting; validation AUC, folds) | GBM - plain (SE) "
        "| GBM, every field (setting) | every - plain (SE) | best | GBM hindsight |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for item in args.replays:
        name, _, file = item.partition("=")
        started = time.process_time()
        row = rows[name] = measure(Path(file), args.holdout, gbm)
        print(f"{name}: {time.process_time() - started:.1f} CPU s", file=sys.stderr)
        print(
            f"| {name} | {row.churned} / {row.held_out} | {row.train_churned} / {row.train} "
            f"| {row.default:.3f} / {row.tuned:.3f} / {row.plain:.3f} "
            f"| {row.gbm:.3f} ({row.gbm_setting}; {row.gbm_validation:.3f}, {row.folds}) "
            f"| {row.gbm - row.plain:+.3f} ({row.gbm_se:.3f}) "
            f"| {row.every:.3f} ({row.every_setting}) | {row.every - row.plain:+.3f} ({row.every_se:.3f}) "
            f"| **{row.best:.3f}** | {row.hindsight:.3f} |",
            flush=True,
        )
    n = len(rows)
    columns = ("default", "tuned", "plain", "gbm", "every", "hindsight")
    means = [sum(getattr(r, c) for r in rows.values()) / n for c in columns]
    print(
        "\nmean held-out AUC60 default / tuned / plain / GBM / GBM every field / GBM hindsight: "
        + " / ".join(f"{m:.4f}" for m in means)
    )
    for column, se in (("gbm", "gbm_se"), ("every", "every_se")):
        above = [k for k, r in rows.items() if getattr(r, column) - r.plain > 2 * getattr(r, se)]
        below = [k for k, r in rows.items() if r.plain - getattr(r, column) > 2 * getattr(r, se)]
        print(
            f"{'GBM' if column == 'gbm' else 'GBM every field'} - plain > 2 SE: {len(above)} of {n} "
            f"({', '.join(above) or 'none'}); < -2 SE: {len(below)} ({', '.join(below) or 'none'})"
        )
    reach = [k for k, r in rows.items() if r.best >= 0.80]
    print(
        "best held-out AUC60 per portfolio: "
        + ", ".join(f"{k} {r.best:.3f}" for k, r in rows.items())
        + f"; >= 0.80: {len(reach)} of {n} ({', '.join(reach) or 'none'})"
    )
    if args.json is not None:
        data = {k: {**asdict(r), "best": r.best} for k, r in rows.items()}
        args.json.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
