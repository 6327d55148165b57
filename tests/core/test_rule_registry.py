"""The alert rule registry and the [alerts] settings name the same rules."""

from __future__ import annotations

import pytest

from streamer.core.alerts import EVENT_RULES, RULES, STATE_RULES
from streamer.core.config import Rule, Rules


def test_every_registered_rule_has_settings_and_every_setting_a_rule() -> None:
    settings = {name for name, value in Rules() if isinstance(value, Rule)}
    assert set(RULES) == settings
    assert len(RULES) == len(set(RULES))  # no rule registered twice
    assert not set(STATE_RULES) & set(EVENT_RULES)


def test_settings_of_a_rule_by_name_and_an_unknown_name_refused() -> None:
    rules = Rules.model_validate({"silence": {"enabled": False, "cooldown_days": 2}})
    assert rules.rule("silence") == Rule(enabled=False, cooldown_days=2)
    with pytest.raises(KeyError, match="'silence_days' is not an alert rule"):
        rules.rule("silence_days")
    with pytest.raises(KeyError, match="'nope' is not an alert rule"):
        rules.rule("nope")
