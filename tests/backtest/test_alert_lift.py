"""Each alert rule's precision against the base churn rate, and the rules no better than it."""

from __future__ import annotations

import pytest

from streamer.backtest.metrics import ALL_RULES, RuleStats
from streamer.backtest.report import lift, no_better_than_base


def test_lift_is_precision_over_the_base_rate() -> None:
    assert lift(RuleStats("silence", 10, 3, 20, 4), 0.05) == pytest.approx(6.0)
    assert lift(RuleStats("silence", 0, 0, 20, 0), 0.05) is None  # no alert: no precision
    assert lift(RuleStats("silence", 10, 3, 20, 4), None) is None  # no samples: no base rate
    assert lift(RuleStats("silence", 10, 3, 20, 4), 0.0) is None


def test_the_rules_no_better_than_the_base_rate_are_named() -> None:
    rules = [
        RuleStats(ALL_RULES, 300, 9, 27, 14),  # the all-at-risk line is not a rule to switch off
        RuleStats("band_worsened", 136, 4, 27, 6),  # 2.9%: below a 3.4% base rate
        RuleStats("mrr_contraction", 66, 0, 27, 0),
        RuleStats("renewal_at_risk", 132, 6, 27, 8),  # 4.5%: above it
        RuleStats("silence", 0, 0, 27, 0),  # raised nothing: nothing to say
    ]
    weak = no_better_than_base(rules, 0.034)
    assert [s.rule for s in weak] == ["band_worsened", "mrr_contraction"]
