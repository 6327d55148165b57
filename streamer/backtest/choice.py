"""Which weighting `--tune` writes: the default, or a health fit, whichever ranks best out of fold.

Every candidate is scored on the same time-ordered folds inside the training months (see
`learn.time_folds`): the configured (default) score, the health fit at each penalty turned into
weights exactly as `--tune` would write them, and the plain (unconstrained) regression at each
penalty. The candidates' validation rankings are pooled over the folds and compared by ROC AUC,
rounded to 3 places so that noise does not decide; a tie goes to the simpler candidate: the
default first, then the health fit with the stronger penalty. The plain regression is the
yardstick: it is reported, but its coefficients may say that more health means more churn, so
it can never be written as weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from streamer.backtest.learn import L2_GRID, FeatureSpace, Fold, SignalModel, fit_signal_model, time_folds
from streamer.backtest.metrics import roc_auc
from streamer.backtest.sampling import Sample
from streamer.backtest.tuning import signal_scores_under
from streamer.core.config import ScoreConfig

Matrix = NDArray[np.float64]
AUC_PLACES = 3  # out-of-fold AUCs closer than this are a tie


class Kind(StrEnum):
    default = "default"  # the configured weights, unchanged
    health = "health"  # a health fit (coefficients <= 0) written as weights
    plain = "plain"  # the unconstrained regression: the yardstick, never written


@dataclass(frozen=True)
class Candidate:
    kind: Kind
    l2: float | None  # None for the default
    auc: float | None  # pooled out-of-fold ROC AUC (None: no usable fold)

    @property
    def label(self) -> str:
        return self.kind.value if self.l2 is None else f"{self.kind.value} l2={self.l2:g}"


@dataclass(frozen=True)
class Choice:
    """The winner among the writable candidates (default, health fits) and every candidate's AUC."""

    winner: Candidate
    candidates: list[Candidate]
    folds: list[Fold]

    @property
    def keeps_default(self) -> bool:
        return self.winner.kind is Kind.default

    def best(self, kind: Kind) -> Candidate | None:
        found = [c for c in self.candidates if c.kind is kind and c.auc is not None]
        return min(found, key=_preference) if found else None

    @property
    def plain_beats_winner(self) -> bool:
        plain = self.best(Kind.plain)
        return plain is not None and _rounded(plain.auc) > _rounded(self.winner.auc)


def _rounded(auc: float | None) -> float:
    return round(auc if auc is not None else 0.5, AUC_PLACES)


def _preference(candidate: Candidate) -> tuple[float, int, float]:
    """Sort key, best first: higher AUC, then the default, then the stronger penalty."""
    simpler = 0 if candidate.kind is Kind.default else 1
    return (-_rounded(candidate.auc), simpler, -(candidate.l2 or 0.0))


def usable_folds(samples: Sequence[Sample], churned: NDArray[np.bool_], horizon_days: int) -> list[Fold]:
    """Time-ordered folds whose fitting months hold churners and non-churners."""
    at = np.array([s.at for s in samples], dtype=np.int64)
    found = []
    for fold in time_folds(sorted(set(at.tolist())), horizon_days):
        labels = churned[np.isin(at, fold.fit_months)]
        if labels.any() and not labels.all():
            found.append(fold)
    return found


def choose(
    samples: Sequence[Sample],
    churned: NDArray[np.bool_],
    horizon_days: int,
    default: ScoreConfig,
    as_config: Callable[[SignalModel, Sequence[int], int], ScoreConfig],
    grid: Sequence[float] = L2_GRID,
) -> Choice:
    """Score every candidate out of fold; `as_config(model, fit_months, n)` is the configuration
    `--tune` would write for a health fit on those months' n samples."""
    at = np.array([s.at for s in samples], dtype=np.int64)
    folds = usable_folds(samples, churned, horizon_days)
    risks: dict[tuple[Kind, float | None], list[Matrix]] = {}
    observed: list[NDArray[np.bool_]] = []
    for fold in folds:
        fit_mask, test_mask = np.isin(at, fold.fit_months), at == fold.validate
        fit = [s for s, keep in zip(samples, fit_mask, strict=True) if keep]
        test = [s for s, keep in zip(samples, test_mask, strict=True) if keep]
        fit_rows, test_rows = [s.signals for s in fit], [s.signals for s in test]
        space = FeatureSpace.learn(fit_rows)
        observed.append(churned[test_mask])
        risks.setdefault((Kind.default, None), []).append(-signal_scores_under(test, default))
        for l2 in grid:
            health = fit_signal_model(space, fit_rows, churned[fit_mask], l2, health=True)
            written = as_config(health, fold.fit_months, len(fit))
            risks.setdefault((Kind.health, l2), []).append(-signal_scores_under(test, written))
            plain = fit_signal_model(space, fit_rows, churned[fit_mask], l2, health=False)
            risks.setdefault((Kind.plain, l2), []).append(plain.probability(test_rows))
    keys = [(Kind.default, None), *((kind, l2) for kind in (Kind.health, Kind.plain) for l2 in grid)]
    labels = np.concatenate(observed) if observed else np.zeros(0, dtype=bool)
    candidates = [
        Candidate(kind, l2, roc_auc(np.concatenate(risks[(kind, l2)]), labels) if observed else None)
        for kind, l2 in keys
    ]
    writable = [c for c in candidates if c.kind is not Kind.plain]
    return Choice(min(writable, key=_preference), candidates, folds)
