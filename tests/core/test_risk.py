"""Calibrated churn risk: a hand-written model gives the hand-computed probability."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from streamer.core.config import RiskModel, ScoreConfig
from streamer.core.risk import churn_log_odds, churn_risk

MODEL = {
    "version": "test-1",
    "intercept": -1.0,
    "coefficients": {"recency_days": -2.0, "nps": -1.0, "payment_failures": -0.5},
    "means": {"recency_days": 80.0, "nps": 50.0, "payment_failures": 90.0},
    "missing": {"nps": 0.3},
}


def model() -> RiskModel:
    config = ScoreConfig.model_validate({"model": MODEL})
    assert config.model is not None
    return config.model


def test_a_hand_written_model_gives_the_hand_computed_probability() -> None:
    signals = {"recency_days": (2.0, 90.0), "nps": (-20.0, 40.0), "payment_failures": (0.0, 100.0)}
    # -1 - 2 * 0.9 - 1 * 0.4 - 0.5 * 1.0 = -3.7
    assert churn_log_odds(signals, model()) == pytest.approx(-3.7)
    assert churn_risk(signals, model()) == round(1 / (1 + math.exp(3.7)), 4) == 0.0241


def test_a_missing_signal_takes_its_training_mean_and_its_missing_coefficient() -> None:
    signals = {"recency_days": (2.0, 90.0), "payment_failures": (0.0, 100.0), "stickiness": (0.1, 10.0)}
    # nps absent: -1 * 0.5 + 0.3; stickiness is not in the model and changes nothing
    expected = -1.0 - 1.8 - 0.5 + 0.3 - 0.5
    assert churn_log_odds(signals, model()) == pytest.approx(expected)
    assert churn_risk(signals, model()) == round(1 / (1 + math.exp(-expected)), 4)
    # nothing at all: every signal at its mean (payment_failures and recency have no missing term)
    assert churn_log_odds({}, model()) == pytest.approx(-1.0 - 1.6 - 0.5 + 0.3 - 0.45)


def test_no_model_no_risk_and_extreme_log_odds_stay_finite() -> None:
    assert churn_risk({"nps": (0.0, 50.0)}, None) is None
    steep = RiskModel.model_validate({**MODEL, "intercept": 5000.0})
    assert churn_risk({}, steep) == 1.0


def test_a_model_without_the_mean_of_one_of_its_signals_is_refused() -> None:
    means = {"recency_days": 80.0, "payment_failures": 1}
    with pytest.raises(ValidationError, match=r"model\.means lacks nps"):
        ScoreConfig.model_validate({"model": {**MODEL, "means": means}})
    with pytest.raises(ValidationError):
        ScoreConfig.model_validate({"model": {**MODEL, "horizon_days": 30}})


def test_per_feature_volumes_add_their_coefficient_times_the_log_of_one_plus_the_events() -> None:
    """A plain regression may weigh a feature's volume either way; an unused feature counts 0 events."""
    with_volumes = RiskModel.model_validate(
        {**MODEL, "feature_volumes": {"post": -0.4, "like": 0.25, "share": -1.0}}
    )
    signals = {"recency_days": (2.0, 90.0), "nps": (-20.0, 40.0), "payment_failures": (0.0, 100.0)}
    expected = -3.7 - 0.4 * math.log(1 + 9) + 0.25 * math.log(1 + 120)  # share unused: ln 1 = 0
    volumes = {"post": 9, "like": 120, "comment": 5}  # comment is not in the model
    assert churn_log_odds(signals, with_volumes, volumes) == pytest.approx(expected)
    assert churn_risk(signals, with_volumes, volumes) == round(1 / (1 + math.exp(-expected)), 4)
    assert churn_log_odds(signals, with_volumes) == pytest.approx(-3.7)  # no use at all


def test_a_model_of_the_score_reads_the_published_score_and_needs_it() -> None:
    """`--tune` writes the score calibrated (a `score` coefficient, nothing else) on a thin history."""
    calibrated = RiskModel.model_validate(
        {"version": "score", "intercept": 1.5, "coefficients": {}, "means": {}, "score": -6.0}
    )
    signals = {"recency_days": (2.0, 90.0)}  # ignored: the model has no signal coefficients
    assert churn_log_odds(signals, calibrated, score=72.5) == pytest.approx(1.5 - 6.0 * 0.725)
    assert churn_risk(signals, calibrated, score=72.5) == round(1 / (1 + math.exp(-(1.5 - 4.35))), 4)
    assert churn_risk({}, calibrated, score=20.0) > churn_risk({}, calibrated, score=80.0)  # type: ignore[operator]
    with pytest.raises(ValueError, match="reads the health score"):
        churn_log_odds(signals, calibrated)
    # a model without a score coefficient never needs it
    assert churn_log_odds(
        signals | {"nps": (-20.0, 40.0), "payment_failures": (0.0, 100.0)}, model()
    ) == pytest.approx(-3.7)
