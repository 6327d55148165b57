"""ROC AUC and curve on hand-made examples (ties included), churn by band, alert precision/recall."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamer.backtest.choice import BOOTSTRAP_ROUNDS, BOOTSTRAP_SEED, bootstrap_se
from streamer.backtest.metrics import (
    ALL_RULES,
    RankedRisk,
    alert_stats,
    band_ratio,
    churn_by_band,
    roc_auc,
    roc_curve,
)
from streamer.backtest.sampling import AlertRecord
from streamer.core.clock import DAY


def test_auc_of_perfect_inverted_and_uninformative_rankings() -> None:
    assert roc_auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert roc_auc([4, 3, 2, 1], [False, False, True, True]) == 0.0
    assert roc_auc([5, 5, 5, 5], [True, False, True, False]) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_ranked_risk_under_weights_is_the_auc_of_the_samples_repeated(seed: int) -> None:
    rng = np.random.default_rng(seed)
    risk = rng.integers(0, 12, 200).astype(np.float64)  # many ties
    positive = rng.uniform(size=200) < 0.2
    weights = rng.integers(0, 4, 200)  # 0: left out of the draw
    repeated = np.repeat(np.arange(200), weights)
    assert RankedRisk(risk, positive).auc(weights) == pytest.approx(
        roc_auc(risk[repeated], positive[repeated])
    )
    assert RankedRisk(risk, positive).auc(np.ones(200, dtype=np.int64)) == pytest.approx(
        roc_auc(risk, positive)
    )
    assert RankedRisk(risk, positive).auc(np.where(positive, 0, 1)) is None  # no positive drawn


def test_the_account_bootstrap_draws_whole_accounts_as_resampling_them_would() -> None:
    """The same draws as concatenating each picked account's samples and ranking them again."""
    rng = np.random.default_rng(4)
    accounts = [f"a{i % 90}" for i in range(500)]  # several samples per account
    risk, against = rng.integers(0, 20, 500).astype(np.float64), rng.uniform(size=500)
    churned = rng.uniform(size=500) < 0.15
    members: dict[str, list[int]] = {}
    for index, account in enumerate(accounts):
        members.setdefault(account, []).append(index)
    groups = [np.array(indices) for indices in members.values()]
    draws = np.random.default_rng(BOOTSTRAP_SEED)
    differences = []
    for _ in range(BOOTSTRAP_ROUNDS):
        picked = np.concatenate([groups[i] for i in draws.integers(0, len(groups), len(groups))])
        auc, base = roc_auc(risk[picked], churned[picked]), roc_auc(against[picked], churned[picked])
        assert auc is not None and base is not None
        differences.append(auc - base)
    assert bootstrap_se(risk, churned, accounts, against) == pytest.approx(float(np.std(differences)))


def test_auc_counts_ties_as_one_half() -> None:
    # positives 2 and 3, negatives 1 and 2: pairs 1 + 0.5 + 1 + 1 over 4
    assert roc_auc([1, 2, 2, 3], [False, True, False, True]) == pytest.approx(0.875)
    # a health score: lower score = more risk, so pass -score
    scores = np.array([90, 80, 40, 40, 70])
    churned = np.array([False, False, True, False, True])
    # churners 40 and 70 vs stayers 90, 80, 40: (1 + 1 + 0.5) + (1 + 1 + 0) = 4.5 of 6
    assert roc_auc(-scores, churned) == pytest.approx(0.75)


def test_auc_matches_the_pairwise_definition_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(7)
    risk = rng.integers(0, 6, 200).astype(float)
    labels = rng.random(200) < 0.3
    pos, neg = risk[labels], risk[~labels]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(risk, labels) == pytest.approx(pairwise)


def test_auc_is_undefined_with_one_class_only() -> None:
    assert roc_auc([1, 2, 3], [False, False, False]) is None
    assert roc_auc([1, 2, 3], [True, True, True]) is None
    assert roc_auc([], []) is None


def test_roc_curve_runs_from_origin_to_one_with_one_point_per_distinct_risk() -> None:
    fpr, tpr = roc_curve([1, 2, 2, 3], [False, True, False, True])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert float(np.trapezoid(tpr, fpr)) == pytest.approx(0.875)  # the area is the AUC


def test_churn_by_band_and_the_red_green_ratio() -> None:
    bands = ["green"] * 10 + ["yellow"] * 4 + ["red"] * 2
    churned = [True] + [False] * 9 + [True, False, False, False] + [True, False]
    rates = churn_by_band(bands, churned)
    assert (rates["green"].samples, rates["green"].churned, rates["green"].rate) == (10, 1, 0.1)
    assert rates["yellow"].rate == 0.25
    assert rates["red"].rate == 0.5
    assert band_ratio(rates) == pytest.approx(5.0)
    assert band_ratio(rates, "yellow") == pytest.approx(2.5)
    none_green = churn_by_band(["green", "red"], [False, True])
    assert band_ratio(none_green) is not None and math.isinf(band_ratio(none_green) or 0)
    assert band_ratio(churn_by_band(["red"], [True])) is None  # no green sample at all


def test_alert_precision_and_recall_per_rule_and_overall() -> None:
    start, end, horizon = 0, 400 * DAY, 60 * DAY
    timelines = {
        "a": [(0, 100), (100 * DAY, 0)],  # churns on day 100
        "b": [(0, 100)],  # never churns
        "c": [(0, 100), (300 * DAY, 0)],  # churns on day 300, no alert before
    }
    alerts = [
        AlertRecord("a", "usage_drop", "warning", 50 * DAY),  # 50 days before: true positive
        AlertRecord("a", "silence", "warning", 20 * DAY),  # 80 days before: false positive, not caught
        AlertRecord("b", "usage_drop", "critical", 60 * DAY),  # never churns: false positive
        AlertRecord("b", "band_recovered", "info", 70 * DAY),  # good news: left out
        AlertRecord("c", "silence", "warning", 350 * DAY),  # after the precision window (end - 60 days)
    ]
    stats = {s.rule: s for s in alert_stats(alerts, timelines, start=start, end=end, horizon_ms=horizon)}
    assert set(stats) == {ALL_RULES, "usage_drop", "silence"}
    overall = stats[ALL_RULES]
    assert (overall.alerts, overall.true_positives, overall.churns, overall.caught) == (3, 1, 2, 1)
    assert overall.precision == pytest.approx(1 / 3)
    assert overall.recall == 0.5
    usage = stats["usage_drop"]
    assert (usage.alerts, usage.true_positives, usage.precision, usage.recall) == (2, 1, 0.5, 0.5)
    silence = stats["silence"]
    assert (silence.alerts, silence.true_positives, silence.caught) == (1, 0, 0)
    assert silence.recall == 0.0


def test_an_alert_at_the_churn_instant_does_not_count_and_churns_before_the_window_are_ignored() -> None:
    timelines = {"a": [(0, 100), (100 * DAY, 0)], "old": [(0, 100), (5 * DAY, 0)]}
    alerts = [AlertRecord("a", "silence", "warning", 100 * DAY)]
    overall = alert_stats(alerts, timelines, start=10 * DAY, end=400 * DAY, horizon_ms=60 * DAY)[0]
    assert (overall.alerts, overall.true_positives, overall.churns, overall.caught) == (1, 0, 1, 0)
