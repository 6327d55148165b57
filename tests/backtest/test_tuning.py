"""The logistic regression, weight normalisation, rescoring, the time split and the tuned config file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from streamer.backtest.configfile import dump_toml, tuned_config_text, write_tuned_config
from streamer.backtest.tuning import (
    component_means,
    design,
    fit_logistic,
    normalised,
    rescore,
    scores_under,
    split_months,
)
from streamer.contract.vocabulary import LifecycleStage
from streamer.core.clock import DAY
from streamer.core.config import COMPONENTS, ScoreConfig
from streamer.settings import load_score_config

from .synthetic import churn_draws, sample


def test_recovers_a_known_weight_on_synthetic_churn() -> None:
    rng = np.random.default_rng(1)
    features = rng.uniform(0, 1, (6000, 4))
    # churn odds fall with component 0 (weight 6) and 3 (weight 2); 1 and 2 carry nothing
    logit = 2.0 - 6.0 * features[:, 0] - 2.0 * features[:, 3]
    churned = churn_draws(rng, logit)
    model = fit_logistic(features, churned, l2=0.01)
    assert model.health_weights[0] == pytest.approx(6.0, rel=0.15)
    assert model.health_weights[3] == pytest.approx(2.0, rel=0.3)
    assert model.health_weights[1] < 0.5 and model.health_weights[2] < 0.5
    assert model.intercept == pytest.approx(2.0, abs=0.4)


def test_a_separable_signal_takes_almost_all_the_weight() -> None:
    rng = np.random.default_rng(2)
    features = rng.uniform(0, 1, (2000, 4))
    churned = features[:, 1] < 0.3  # churn is exactly "component 1 below 30"
    weights = normalised(fit_logistic(features, churned).health_weights)
    assert weights["support"] > 0.9
    assert sum(weights.values()) == pytest.approx(1.0)
    risk = fit_logistic(features, churned).risk(features)
    assert risk[churned].min() > risk[~churned].max() - 0.5  # ranked almost perfectly


def test_a_component_that_raises_churn_gets_weight_zero_not_a_negative_one() -> None:
    rng = np.random.default_rng(3)
    features = rng.uniform(0, 1, (4000, 4))
    logit = -1.0 - 4.0 * features[:, 0] + 3.0 * features[:, 2]  # more of component 2, more churn
    churned = churn_draws(rng, logit)
    model = fit_logistic(features, churned)
    assert model.health_weights[2] == 0.0
    assert (model.health_weights >= 0).all()
    assert model.health_weights[0] > 2.0


def test_normalised_weights_sum_to_one_after_rounding() -> None:
    weights = normalised(np.array([1.0, 1.0, 1.0, 0.0]))
    assert weights == {"adoption": 0.334, "support": 0.333, "sentiment": 0.333, "financial": 0.0}
    assert sum(normalised(np.array([0.2, 0.7, 0.05, 0.3])).values()) == pytest.approx(1.0, abs=1e-9)
    assert normalised(np.zeros(4)) == dict.fromkeys(COMPONENTS, 0.25)


def test_rescore_renormalises_over_present_components_like_the_core() -> None:
    weights = ScoreConfig().weights.as_dict()
    # the default weights (0.35, 0.20, 0.20, 0.35) sum to 1.1: renormalised like the core does
    assert rescore((80.0, 60.0, 40.0, 100.0), weights, 50) == pytest.approx(
        round((0.35 * 80 + 0.2 * 60 + 0.2 * 40 + 0.35 * 100) / 1.1, 1)
    )
    # sentiment missing: the other three weights renormalise
    expected = round((0.35 * 80 + 0.2 * 60 + 0.35 * 100) / 0.9, 1)
    assert rescore((80.0, 60.0, None, 100.0), weights, 50) == expected
    assert rescore((None, None, None, None), weights, 50) == 50
    assert rescore((None, None, None, None), weights, 62.37) == 62.4  # published to one decimal, as the core


def test_scores_under_a_config_use_its_stage_overrides() -> None:
    config = ScoreConfig.model_validate(
        {"segments": {"renewal": {"weights": {"adoption": 0, "support": 0, "sentiment": 0, "financial": 1}}}}
    )
    renewing = sample((10.0, 20.0, 30.0, 90.0), account_id="a", stage=LifecycleStage.renewal, mrr=1)
    adopted = sample((10.0, 20.0, 30.0, 90.0), account_id="b", mrr=1)
    # adopted: the default weights, (0.35 x 10 + 0.2 x 20 + 0.2 x 30 + 0.35 x 90) / 1.1 = 40.9
    assert scores_under([renewing, adopted], config).tolist() == [90.0, 40.9]


def test_missing_sub_scores_are_imputed_with_the_training_mean() -> None:
    samples = [sample((80.0, None, 40.0, 100.0)), sample((60.0, None, None, 100.0))]
    means = component_means(samples)
    assert means.tolist() == [70.0, 50.0, 40.0, 100.0]  # support never present: neutral 50
    assert design(samples, means).tolist() == [[0.8, 0.5, 0.4, 1.0], [0.6, 0.5, 0.4, 1.0]]


def test_split_holds_out_the_latest_months_and_drops_training_windows_that_reach_them() -> None:
    months = [m * 31 * DAY for m in range(9)]
    train, test = split_months(months, 1 / 3, 60 * DAY)
    assert test == months[6:]
    assert train == months[:5]  # month 5's 60-day window reaches month 6
    train, test = split_months(months, 1 / 3, 30 * DAY)
    assert train == months[:6]


def test_tuned_config_keeps_the_base_settings_and_replaces_the_weights(tmp_path: Path) -> None:
    base_text = """
empty_score = 45
[weights]
adoption = 0.9
support = 0.1
sentiment = 0
financial = 0
[curves]
recency_days = [[0, 100], [7, 50], [30, 0]]
[segments.renewal.bands]
green = 75
yellow = 45
[alerts]
usage_drop = { enabled = false, cooldown_days = 10 }
[currency]
rates = { EUR = "1.1" }
"""
    base = tomllib.loads(base_text)
    tuned = {"adoption": 0.4, "support": 0.1, "sentiment": 0.2, "financial": 0.3}
    path = tmp_path / "tuned.toml"
    write_tuned_config(path, base, tuned, ["fitted by a test"])
    text = path.read_text()
    assert text.startswith("# fitted by a test\n")
    config = load_score_config(path)
    assert config.weights.as_dict() == tuned
    assert config.empty_score == 45
    assert config.alerts.usage_drop.enabled is False
    assert config.segments["renewal"].bands is not None and config.segments["renewal"].bands.green == 75
    data = tomllib.loads(text)
    del data["weights"], base["weights"]
    assert data == base  # everything else as it was


def test_tuned_config_without_a_base_is_just_the_weights() -> None:
    text = tuned_config_text({}, {"adoption": 0.5, "support": 0.0, "sentiment": 0.25, "financial": 0.25}, [])
    assert tomllib.loads(text) == {
        "weights": {"adoption": 0.5, "support": 0.0, "sentiment": 0.25, "financial": 0.25}
    }


def test_dump_toml_quotes_keys_and_strings_that_need_it() -> None:
    data = {"plans": {"Enterprise Plus": {"bands": {"green": 80}}}, "features": {"catalogue": ['a"b', "c"]}}
    assert tomllib.loads(dump_toml(data)) == data
