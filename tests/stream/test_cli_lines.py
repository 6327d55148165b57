"""What the worker says at start-up about the score configuration it runs."""

from __future__ import annotations

from pathlib import Path

from streamer.core.config import RiskModel, ScoreConfig
from streamer.stream.cli import score_config_line


def test_the_worker_names_its_score_config_and_whether_it_publishes_churn_risk() -> None:
    assert score_config_line(None, ScoreConfig()) == (
        "score config: the built-in defaults, no [model] (churn_risk_60d null)"
    )
    model = RiskModel(version="tune 2024-03-01..2024-05-01 n=519", intercept=0.5, coefficients={}, means={})
    assert score_config_line(Path("tuned.toml"), ScoreConfig(model=model)) == (
        "score config: tuned.toml, [model] 'tune 2024-03-01..2024-05-01 n=519' (churn_risk_60d published)"
    )
