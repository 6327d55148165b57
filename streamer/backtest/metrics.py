"""ROC AUC and curve, churn rate by band, and alert precision/recall (pure, numpy)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from streamer.backtest.labels import churn_instants
from streamer.backtest.sampling import AlertRecord
from streamer.contract.vocabulary import BANDS, Band

INFO_RULES = frozenset({"band_recovered"})  # good news: not an at-risk alert
ALL_RULES = "all at-risk"


def _ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(ordered)) + 1
    starts = np.concatenate(([0], boundaries))
    stops = np.concatenate((boundaries, [len(values)]))
    for start, stop in zip(starts, stops, strict=True):
        ranks[order[start:stop]] = (start + stop + 1) / 2
    return ranks


def roc_auc(risk: ArrayLike, positive: ArrayLike) -> float | None:
    """P(risk of a random positive > risk of a random negative), ties counting one half.

    None when there are no positives or no negatives. For a health score pass `-score`.
    """
    values = np.asarray(risk, dtype=np.float64)
    labels = np.asarray(positive, dtype=bool)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    rank_sum = float(_ranks(values)[labels].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


class RankedRisk:
    """One risk ranked once on fixed samples, so that its `roc_auc` under any integer weights per
    sample (a bootstrap draw: how often each sample was drawn) takes one pass, not a sort."""

    __slots__ = ("_order", "_positive", "_starts")

    def __init__(self, risk: ArrayLike, positive: ArrayLike) -> None:
        values = np.asarray(risk, dtype=np.float64)
        self._order = np.argsort(values, kind="mergesort")
        self._positive = np.asarray(positive, dtype=bool)[self._order]
        ordered = values[self._order]
        self._starts = np.concatenate(([0], np.flatnonzero(np.diff(ordered)) + 1))  # tie groups

    def auc(self, weights: NDArray[np.int64]) -> float | None:
        """`roc_auc` of the samples each repeated `weights[i]` times (None without both classes)."""
        drawn = weights[self._order].astype(np.float64)
        if not len(drawn):
            return None
        positives = np.add.reduceat(np.where(self._positive, drawn, 0.0), self._starts)
        negatives = np.add.reduceat(np.where(self._positive, 0.0, drawn), self._starts)
        total_positive, total_negative = float(positives.sum()), float(negatives.sum())
        if total_positive == 0 or total_negative == 0:
            return None
        below = np.cumsum(negatives) - negatives  # negatives of lower risk than each tie group
        return float((positives * (below + 0.5 * negatives)).sum()) / (total_positive * total_negative)


def roc_curve(risk: ArrayLike, positive: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(false positive rates, true positive rates) from (0, 0) to (1, 1), one point per distinct risk."""
    values = np.asarray(risk, dtype=np.float64)
    labels = np.asarray(positive, dtype=bool)
    order = np.argsort(-values, kind="mergesort")
    values, labels = values[order], labels[order]
    last_of_group = np.concatenate((np.flatnonzero(np.diff(values)), [len(values) - 1]))
    true_pos = np.cumsum(labels)[last_of_group]
    false_pos = np.cumsum(~labels)[last_of_group]
    positives, negatives = max(1, int(labels.sum())), max(1, int((~labels).sum()))
    fpr = np.concatenate(([0.0], false_pos / negatives))
    tpr = np.concatenate(([0.0], true_pos / positives))
    return fpr, tpr


@dataclass(frozen=True, slots=True)
class BandRate:
    band: str
    samples: int
    churned: int

    @property
    def rate(self) -> float | None:
        return self.churned / self.samples if self.samples else None


def churn_by_band(bands: Sequence[str], churned: Sequence[bool]) -> dict[str, BandRate]:
    """Samples and churners per band, green, yellow, red."""
    counts = {band.value: [0, 0] for band in BANDS}  # plain str keys: the report is JSON
    for band, label in zip(bands, churned, strict=True):
        counts[band][0] += 1
        counts[band][1] += int(label)
    return {band: BandRate(band, total, hits) for band, (total, hits) in counts.items()}


def band_ratio(rates: Mapping[str, BandRate], high: str = Band.red, low: str = Band.green) -> float | None:
    """Churn rate of one band over another's (red over green by default); None when undefined."""
    top, bottom = rates[high].rate, rates[low].rate
    if top is None or bottom is None:
        return None
    if bottom == 0:
        return float("inf") if top > 0 else None
    return top / bottom


@dataclass(frozen=True, slots=True)
class RuleStats:
    rule: str
    alerts: int  # alerts raised in the precision window
    true_positives: int  # of those, on accounts that churned within the horizon after
    churns: int  # churns in the recall window
    caught: int  # of those, preceded by at least one such alert within the horizon

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.caught / self.churns if self.churns else None


def alert_stats(
    alerts: Iterable[AlertRecord],
    timelines: Mapping[str, Sequence[tuple[int, int]]],
    *,
    start: int,
    end: int,
    horizon_ms: int,
) -> list[RuleStats]:
    """Precision and recall of each at-risk rule, and of all of them together (first row).

    Precision: alerts raised in [start, end - horizon] that were followed by a churn of their
    account within the horizon. Recall: churns in [start, end] with at least one alert in the
    horizon before them. `band_recovered` (info) is left out.
    """
    churns = {
        account: [at for at in churn_instants(timeline) if start <= at <= end]
        for account, timeline in timelines.items()
    }
    all_churns = {account: instants for account, instants in churns.items() if instants}
    churn_count = sum(len(instants) for instants in all_churns.values())
    at_risk = [alert for alert in alerts if alert.rule not in INFO_RULES]
    rules = sorted({alert.rule for alert in at_risk})
    results: list[RuleStats] = []
    for rule in (ALL_RULES, *rules):
        chosen = [alert for alert in at_risk if rule == ALL_RULES or alert.rule == rule]
        by_account: dict[str, list[int]] = {}
        for alert in chosen:
            by_account.setdefault(alert.account_id, []).append(alert.raised_at)
        counted = [alert for alert in chosen if start <= alert.raised_at <= end - horizon_ms]
        hits = sum(
            1
            for alert in counted
            if any(
                alert.raised_at < at <= alert.raised_at + horizon_ms
                for at in _all_churns(timelines, alert.account_id)
            )
        )
        caught = sum(
            1
            for account, instants in all_churns.items()
            for at in instants
            if any(at - horizon_ms <= raised < at for raised in by_account.get(account, ()))
        )
        results.append(RuleStats(rule, len(counted), hits, churn_count, caught))
    return results


def _all_churns(timelines: Mapping[str, Sequence[tuple[int, int]]], account: str) -> list[int]:
    timeline = timelines.get(account)
    return churn_instants(timeline) if timeline is not None else []
