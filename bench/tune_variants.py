"""Candidate `[model]` rules for `--tune`, measured side by side on saved replays (held-out AUC60).

`bench/retune.py` runs the checkout's own `--tune` on saved replays; this script rebuilds, from the
same replays, the out-of-fold and held-out rankings of a few candidates that `--tune` does not
write, and applies rules to them without changing `streamer/backtest/`. The folds, the training
samples, the held-out month starts, the plain yardstick (the plain fit at the penalty that ranks
best out of fold) and the one-standard-error bootstrap are `--tune`'s own (`streamer.backtest`);
out of fold, every combination is calibrated on its fold's fitting samples as `mix_fit` does, so
the pooled AUCs compare as `choose` compares them. Candidates (each a log-odds divided by its
spread over the fitting samples):

- `default`: the default score calibrated (`default_model`);
- `bag`: the plain fits at every penalty of `L2_GRID`, bagged (`bagged`);
- `prior path`: the unconstrained fit (signals and feature volumes) whose L2 penalty pulls the
  signals' coefficients towards the calibrated default's (`default_prior`) and the volumes and
  missing terms towards 0, at every penalty of `PRIOR_GRID`, bagged: a path from the plain fit
  (weak penalty) to the default (strong penalty), no penalty chosen on the folds.

Rules (columns): `main` (the mix of default and bag, unless the plain fit ranks better out of fold
by more than `MODEL_STANDARD_ERRORS` (two) standard errors: what `--tune` writes today; above the
churned-accounts bar, which this script does not apply), the same at one standard error (main's rule
up to the fifteenth round), the mix always, the same rule with
the default weighted 0.3 and the bag 0.7 in the mix (`mix.3`), the prior path
always, the prior path unless the plain fit ranks better by one standard error, and the average of
the default, the bag and the prior path. Every candidate is one linear model over the plain fit's
columns, so `[model]` could carry any of them.

    .venv/bin/python bench/tune_variants.py NAME=REPLAY ... [--reserved NAME ...]

NAME=REPLAY as for `bench/retune.py`; names given to `--reserved` are summed apart (the portfolios
a rule was not chosen on). CPU seconds per portfolio on stderr.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from numpy.typing import NDArray

from streamer.backtest import replaycache
from streamer.backtest.analysis import TUNE_HORIZON, Labelled, analyse, label
from streamer.backtest.choice import (
    MODEL_STANDARD_ERRORS,
    TOP_FEATURES,
    _log_odds,
    bagged,
    bootstrap_se,
    default_model,
    default_prior,
    plain_rows,
    top_features,
    usable_folds,
)
from streamer.backtest.learn import (
    L2_GRID,
    FeatureSpace,
    SignalModel,
    fit_l2_logistic,
    fit_signal_model,
    sigmoid,
)
from streamer.backtest.metrics import roc_auc
from streamer.backtest.sampling import Sample
from streamer.backtest.tuning import signal_scores_under, split_months
from streamer.core.clock import DAY
from streamer.core.config import ScoreConfig

Vector = NDArray[np.float64]
PRIOR_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
"""Penalties of the prior path (standardised columns): weak, the plain fit; strong, the default."""
COMBOS: dict[str, dict[str, float]] = {
    "mix": {"default": 0.5, "bag": 0.5},
    "mix.3": {"default": 0.3, "bag": 0.7},
    "prior": {"prior": 1.0},
    "three": {"default": 1 / 3, "bag": 1 / 3, "prior": 1 / 3},
}


@dataclass
class Ranked:
    """Rankings of one set of samples: each part's spread-scaled log-odds (and on the fitting samples)."""

    parts: dict[str, Vector]
    fitted: dict[str, Vector]  # the same parts on the fitting samples (calibration)
    fit_churned: NDArray[np.bool_]
    plain: dict[float, Vector]  # the plain fit's probability per penalty
    score: Vector  # minus the default score (the default candidate out of fold, as `choose` scores it)


def ranked(fit: Sequence[Sample], churned: NDArray[np.bool_], test: Sequence[Sample]) -> Ranked:
    config = ScoreConfig()
    signal_rows = [s.signals for s in fit]
    signal_space = FeatureSpace.learn(signal_rows)
    features = top_features(fit, TOP_FEATURES)
    rows, test_rows = plain_rows(fit, features), plain_rows(test, features)
    space = FeatureSpace.learn(rows)
    parts: dict[str, Vector] = {}
    fitted: dict[str, Vector] = {}

    def scaled(name: str, model: SignalModel) -> None:
        spread = float(np.std(_log_odds(model, rows)))
        if spread <= 1e-9:  # constant over the fitting samples: it drops out, as in `bagged` and `mix_fit`
            parts[name], fitted[name] = np.zeros(len(test_rows)), np.zeros(len(rows))
            return
        parts[name], fitted[name] = _log_odds(model, test_rows) / spread, _log_odds(model, rows) / spread

    scaled("default", default_model(signal_space, signal_rows, churned, config))
    plains = [fit_signal_model(space, rows, churned, l2, health=False) for l2 in L2_GRID]
    scaled("bag", bagged(plains, rows))
    _, prior = default_prior(signal_space, signal_rows, churned, config)
    path = [fit_signal_model(space, rows, churned, l2, health=False, prior=prior) for l2 in PRIOR_GRID]
    scaled("prior", bagged(path, rows))
    plain = {l2: sigmoid(_log_odds(m, test_rows)) for l2, m in zip(L2_GRID, plains, strict=True)}
    return Ranked(parts, fitted, churned, plain, -signal_scores_under(test, config))


def auc(risk: Vector, churned: NDArray[np.bool_]) -> float:
    found = roc_auc(risk, churned)
    return 0.5 if found is None else found


@dataclass
class Portfolio:
    folds: list[Ranked]  # out of fold, oldest first
    oof_churned: NDArray[np.bool_]
    oof_accounts: list[str]
    held: Ranked
    held_churned: NDArray[np.bool_]

    def oof(self, name: str) -> Vector:
        """Pooled out-of-fold risk of a combination, calibrated per fold on its fitting samples."""
        found = []
        for fold in self.folds:
            if name == "default":
                found.append(fold.score)
                continue
            if name.startswith("plain"):
                found.append(fold.plain[float(name[5:])])
                continue
            weights = COMBOS[name]
            z = sum(w * fold.parts[p] for p, w in weights.items())
            zf = sum(w * fold.fitted[p] for p, w in weights.items())
            a, slope = fit_l2_logistic(-np.asarray(zf)[:, None], fold.fit_churned, 1e-6, non_positive=[0])
            found.append(sigmoid(a - slope[0] * np.asarray(z)))
        return np.concatenate(found)

    def held_out(self, name: str) -> Vector:
        if name == "default":
            return self.held.score
        if name.startswith("plain"):
            return self.held.plain[float(name[5:])]
        return np.asarray(sum(w * self.held.parts[p] for p, w in COMBOS[name].items()))

    @property
    def yardstick(self) -> float:
        """The plain fit's penalty that ranks best out of fold (ties: the stronger), as `choose`."""
        return max(L2_GRID, key=lambda l2: (auc(self.oof(f"plain{l2}"), self.oof_churned), l2))

    def unless_plain(self, name: str, standard_errors: float = 1.0) -> str:
        """`name`, unless the plain yardstick ranks better out of fold by more than `standard_errors`
        standard errors of their difference."""
        plain = f"plain{self.yardstick}"
        p, m = self.oof(plain), self.oof(name)
        se = bootstrap_se(p, self.oof_churned, self.oof_accounts, m) or 0.0
        return plain if auc(p, self.oof_churned) > auc(m, self.oof_churned) + standard_errors * se else name


RULES: dict[str, Callable[[Portfolio], str]] = {
    "main: mix unless plain by 2 SE": lambda p: p.unless_plain("mix", MODEL_STANDARD_ERRORS),
    "mix unless plain by 1 SE": lambda p: p.unless_plain("mix"),
    "the mix always": lambda p: "mix",
    "the mix at 0.3 / 0.7 unless plain by 1 SE": lambda p: p.unless_plain("mix.3"),
    "the prior path always": lambda p: "prior",
    "the prior path unless plain by 1 SE": lambda p: p.unless_plain("prior"),
    "default, bag, prior path averaged": lambda p: "three",
}


def load(path: Path) -> Portfolio:
    """`--tune`'s training samples, folds and held-out month starts for one saved replay."""
    with gzip.open(path, "rb") as handle:
        made_from = orjson.loads(handle.read())["made_from"]
    history = replaycache.load(path, made_from)
    if history is None:
        raise SystemExit(f"{path}: not a saved replay")
    result = analyse(history)
    grid = {days: label(history, days, history.grid_samples) for days in result.horizons}
    by_horizon = {days: h.labelled for days, h in result.horizons.items()}
    main = by_horizon[TUNE_HORIZON]
    _, test_months = split_months(sorted({s.at for s in main.samples}), 1 / 3, TUNE_HORIZON * DAY)
    first_test = test_months[0]

    def training(days: int) -> Labelled:
        found = [by_horizon[days], grid[days]]
        samples = [s for labelled in found for s in labelled.samples]
        churned = np.concatenate([labelled.churned for labelled in found])
        keep = np.array([s.at + days * DAY <= first_test for s in samples], dtype=bool)
        return Labelled(days, samples, churned).where(keep)

    inner: Mapping[int, Labelled] = {d: training(d) for d in sorted(by_horizon) if d <= TUNE_HORIZON}
    horizon, folds = TUNE_HORIZON, []
    for days in sorted(inner, reverse=True):  # the longest horizon with usable folds, as `choose`
        horizon, folds = days, usable_folds(inner[days].samples, inner[days].churned, days)
        if folds:
            break
    samples, churned = inner[horizon].samples, inner[horizon].churned
    at = np.array([s.at for s in samples], dtype=np.int64)
    ranked_folds, observed, accounts = [], [], []
    for fold in folds:
        fit_mask, test_mask = np.isin(at, fold.fit_months), at == fold.validate
        fit = [s for s, keep in zip(samples, fit_mask, strict=True) if keep]
        test = [s for s, keep in zip(samples, test_mask, strict=True) if keep]
        ranked_folds.append(ranked(fit, churned[fit_mask], test))
        observed.append(churned[test_mask])
        accounts.extend(s.account_id for s in test)
    train = training(TUNE_HORIZON)
    held_mask = np.array([s.at >= first_test for s in main.samples], dtype=bool)
    held = [s for s, keep in zip(main.samples, held_mask, strict=True) if keep]
    return Portfolio(
        ranked_folds,
        np.concatenate(observed),
        accounts,
        ranked(train.samples, train.churned, held),
        main.churned[held_mask],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("replays", nargs="+", metavar="NAME=FILE")
    parser.add_argument("--reserved", nargs="*", default=[], help="names summed apart")
    args = parser.parse_args()
    print(
        "| portfolio | held out: churners / samples | default / plain | "
        + " | ".join(RULES)
        + " |\n|---|---|---|"
        + "---|" * len(RULES)
    )
    results: dict[str, list[tuple[float, float, float]]] = {rule: [] for rule in RULES}
    reserved: list[bool] = []
    for item in args.replays:
        name, _, file = item.partition("=")
        started = time.process_time()
        portfolio = load(Path(file))
        y = portfolio.held_churned
        default = auc(portfolio.held_out("default"), y)
        plain = auc(portfolio.held_out(f"plain{portfolio.yardstick}"), y)
        cells = []
        for rule, pick in RULES.items():
            chosen = pick(portfolio)
            tuned = auc(portfolio.held_out(chosen), y)
            results[rule].append((tuned, default, plain))
            gap = tuned - max(default, plain)
            cells.append(f"{tuned:.3f}" + ("" if gap >= 0 else f" (**{gap:+.3f}**)") + f", {chosen}")
        reserved.append(name in args.reserved)
        print(f"{name}: {time.process_time() - started:.1f} CPU s", file=sys.stderr)
        print(
            f"| {name} | {int(y.sum())} / {len(y):,} | {default:.3f} / {plain:.3f} | "
            + " | ".join(cells)
            + " |",
            flush=True,
        )
    groups = [
        ("development", [not r for r in reserved]),
        ("--reserved", reserved),
        ("all", [True] * len(reserved)),
    ]
    for label_, keep in groups:
        if not any(keep):
            continue
        cells = []
        for rule in RULES:
            rows = [r for r, k in zip(results[rule], keep, strict=True) if k]
            passes = sum(t >= max(d, p) for t, d, p in rows)
            cells.append(f"{passes} of {len(rows)}, mean {np.mean([t for t, _, _ in rows]):.3f}")
        rows = [r for r, k in zip(results[next(iter(RULES))], keep, strict=True) if k]
        means = f"{np.mean([d for _, d, _ in rows]):.3f} / {np.mean([p for _, _, p in rows]):.3f}"
        print(
            f"| **passes tuned >= default and >= plain, mean: {label_}** | | {means} | "
            + " | ".join(cells)
            + " |"
        )


if __name__ == "__main__":
    main()
