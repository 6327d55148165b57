"""Health score: neutral missing data, renormalised weights, bands, overrides, configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamer.core.config import Bands, ComponentWeights, ScoreConfig, Segment
from streamer.core.facts import Facts
from streamer.core.reasons import MESSAGES, explain
from streamer.core.revenue import Revenue
from streamer.core.score import Inputs, evaluate
from streamer.core.sentiment import Sentiment
from streamer.core.support import Support
from streamer.core.usage import Usage
from streamer.settings import ConfigError, load_score_config

from .events import at, canceled, ms, nps, opened, resolved, started, usage
from .harness import Feed


def empty_inputs() -> Inputs:
    return Inputs(Revenue(), Usage(), Support(), Sentiment(), first_seen=0, usage_since=None)


def test_no_data_at_all_scores_the_configured_neutral_value() -> None:
    evaluation = evaluate(empty_inputs(), ms(at(1)), ScoreConfig())
    assert evaluation.score == 50
    assert evaluation.band == "yellow"
    assert evaluation.components == dict.fromkeys(("adoption", "support", "sentiment", "financial"))
    assert set(evaluation.weights.values()) == {0.0}


def test_single_component_carries_the_whole_weight() -> None:
    feed = Feed()
    feed(nps("acme", at(1), 10))
    evaluation = feed.evaluate("acme", at(2))
    assert evaluation.components["sentiment"] == 100
    assert evaluation.weights == {"adoption": 0.0, "support": 0.0, "sentiment": 1.0, "financial": 0.0}
    assert (evaluation.score, evaluation.band) == (100, "green")


def test_missing_components_are_neutral_and_weights_renormalise() -> None:
    feed = Feed()
    feed(
        opened("acme", at(1), "t1", "normal"),
        resolved("acme", at(1, 8), "t1", 1),
        nps("acme", at(1, 9), 0),
    )
    evaluation = feed.evaluate("acme", at(2))
    # support signals: open high/urgent 0 -> 100 (w 1.5), oldest open none -> 100 (w 1),
    # resolution 8 h -> 95 (w 1), first contact 100% -> 100 (w 0.5): 395 / 4 = 98.75
    assert evaluation.components["support"] == pytest.approx(98.75)
    assert evaluation.components["sentiment"] == 0  # NPS -100
    assert evaluation.components["adoption"] is None
    assert evaluation.components["financial"] is None
    # support and sentiment both weigh 0.20: renormalised to 0.5 each
    assert evaluation.weights == {"adoption": 0.0, "support": 0.5, "sentiment": 0.5, "financial": 0.0}
    assert evaluation.score == 49.4  # (0.2 x 98.75 + 0.2 x 0) / 0.4 = 49.375
    assert evaluation.band == "yellow"
    snap = feed.snapshot("acme")
    assert snap["missing"] == ["adoption", "financial"]
    assert snap["components"]["adoption"] == {"score": None, "weight": 0.0, "missing": True}
    assert snap["components"]["support"] == {"score": 98.8, "weight": 0.5, "missing": False}


def test_account_without_survey_is_not_a_detractor() -> None:
    quiet, unhappy = Feed(), Feed()
    for feed in (quiet, unhappy):
        feed(opened("acme", at(1), "t1", "normal"), resolved("acme", at(1, 8), "t1", 1))
    unhappy(nps("acme", at(1, 9), 0))
    assert quiet.evaluate("acme", at(2)).score == 98.8  # support only: 98.75
    assert quiet.evaluate("acme", at(2)).components["sentiment"] is None
    assert unhappy.evaluate("acme", at(2)).score == 49.4


@pytest.mark.parametrize(
    ("score", "band"),
    [(100, "green"), (70, "green"), (69.9, "yellow"), (40, "yellow"), (39.9, "red"), (0, "red")],
)
def test_bands_at_thresholds_70_and_40(score: float, band: str) -> None:
    assert Bands().rule.band(score) == band
    evaluation = evaluate(empty_inputs(), ms(at(1)), ScoreConfig(empty_score=score))
    assert (evaluation.score, evaluation.band) == (score, band)


def test_configured_band_thresholds() -> None:
    bands = Bands(green=80, yellow=50)
    assert [bands.rule.band(x) for x in (80, 79.9, 50, 49.9)] == ["green", "yellow", "yellow", "red"]


@pytest.mark.parametrize(
    ("score", "usage", "band"),
    [
        (90, None, "green"),  # no peer standing: the score alone
        (90, 80, "green"),  # use in the top fifth of its peers: safe for now
        (90, 79.9, "yellow"),  # can leave soon, and its use is not clearly among the best
        (90, 50, "yellow"),
        (90, 25, "yellow"),
        (90, 24.9, "yellow"),  # bottom quarter of use among peers
        (90, 9.9, "red"),  # bottom tenth
        (50, 80, "yellow"),  # usage never lifts a band
        (30, 95, "red"),
    ],
)
def test_usage_among_peers_caps_the_band(score: float, usage: float | None, band: str) -> None:
    assert Bands().rule.band(score, usage) == band


@pytest.mark.parametrize(
    ("score", "usage", "band"),
    [
        (30, 95, "yellow"),  # a low score: at worst yellow
        (30, 5, "yellow"),  # low use does not make it red either
        (90, 5, "green"),  # nor lowers its band: the score carries the use
        (69.9, None, "yellow"),
    ],
)
def test_a_committed_account_is_never_red(score: float, usage: float | None, band: str) -> None:
    """Red means likely to churn soon: an account whose term runs beyond the renewal window
    cannot leave before it (none of the committed samples churned within 60 days)."""
    assert Bands().rule.band(score, usage, committed=True) == band


@pytest.mark.parametrize(
    ("share", "usage", "band"),
    [
        (0, 80, "green"),  # no peer committed: the top fifth of use
        (0, 79.9, "yellow"),
        (10, 90, "green"),  # a tenth committed: they come first, the top 10% of use after them
        (10, 89.9, "yellow"),
        (20, 99.9, "yellow"),  # a fifth committed or more: nobody who can leave soon is green
        (20, 100, "yellow"),  # even above every peer (the percentile's top): the budget is used up
        (40, 100, "yellow"),
        (19.9, 100, "green"),  # a tenth of a percent of the budget left: the very top
    ],
)
def test_green_is_the_committed_first_then_the_top_of_use(share: float, usage: float, band: str) -> None:
    assert Bands().rule.band(90, usage, committed_share=share) == band
    assert Bands().rule.band(90, usage, committed=True, committed_share=share) == "green"


def test_the_top_of_use_is_held_in_yellow_when_the_budget_is_used_up() -> None:
    """Percentile 100 (above every peer of the last reference) is yellow once the committed
    accounts took the whole green budget, and that yellow is the budget's (`held_back`)."""
    assert Bands().rule.held_back(90, 100, committed_share=25)
    assert not Bands().rule.held_back(90, 100, committed_share=10)  # green: top tenth, budget left


@pytest.mark.parametrize(
    ("score", "usage", "band"), [(90, 50, "green"), (90, 24.9, "yellow"), (30, 95, "red")]
)
def test_green_share_0_lets_the_score_alone_make_green(score: float, usage: float, band: str) -> None:
    assert Bands(green_share=0).rule.band(score, usage) == band


def test_a_committed_account_with_middling_use_stays_green() -> None:
    """Green asks for the top of its peers' use only of an account that can leave soon."""
    assert Bands().rule.band(90, 50, committed=True) == "green"
    assert Bands().rule.band(90, 50) == "yellow"


def test_an_account_that_scheduled_its_cancellation_within_the_renewal_window_is_red() -> None:
    """It has said it is leaving: red whatever its score (on `streamer simulate`, 92% of them
    churned); further out, or with `bands.red_when_leaving` off, its band is its score's."""
    happy = ScoreConfig(weights=SENTIMENT_ONLY)
    for effective, config, band in [
        (at(60), happy, "red"),  # 59 days ahead: within the 90-day renewal window
        (at(95), happy, "green"),
        (at(60), happy.model_copy(update={"bands": Bands(red_when_leaving=False)}), "green"),
    ]:
        feed = Feed(config)
        feed(started("acme", at(0), "100"), nps("acme", at(0, 1), 10))
        feed(canceled("acme", at(1), effective_at=effective))
        evaluation = feed.evaluate("acme", at(1, 1))
        assert (evaluation.score, evaluation.band) == (100, band), (effective, band)
    feed = Feed(happy)
    feed(started("acme", at(0), "100"), nps("acme", at(0, 1), 10), canceled("acme", at(1)))  # at once
    assert feed.evaluate("acme", at(1, 1)).band != "red"  # churned: MRR 0, nothing left to leave


def test_usage_band_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="red_usage_below"):
        Bands(red_usage_below=30, yellow_usage_below=20)


def paying_unhappy(plan: str, config: ScoreConfig) -> Feed:
    """Financial component 100 (paying, no failures, nothing scheduled), sentiment 0 (NPS -100)."""
    feed = Feed(config)
    feed(started("acme", at(0), "100", plan=plan), nps("acme", at(0, 1), 0))
    return feed


SENTIMENT_ONLY = ComponentWeights(adoption=0, support=0, sentiment=1, financial=0)
FINANCIAL_ONLY = ComponentWeights(adoption=0, support=0, sentiment=0, financial=1)


def test_default_weights_for_a_paying_unhappy_account() -> None:
    evaluation = paying_unhappy("starter", ScoreConfig()).evaluate("acme", at(1))
    assert evaluation.stage == "onboarding"
    assert evaluation.components["financial"] == 100
    assert evaluation.score == 63.6  # (0.35 x 100 + 0.20 x 0) / 0.55
    assert evaluation.band == "yellow"


def test_plan_weight_override_applies_to_that_plan_only() -> None:
    config = ScoreConfig(plans={"enterprise": Segment(weights=SENTIMENT_ONLY)})
    assert paying_unhappy("enterprise", config).evaluate("acme", at(1)).score == 0
    assert paying_unhappy("enterprise", config).evaluate("acme", at(1)).band == "red"
    assert paying_unhappy("starter", config).evaluate("acme", at(1)).score == 63.6


def test_stage_weight_override() -> None:
    config = ScoreConfig(segments={"onboarding": Segment(weights=FINANCIAL_ONLY)})
    evaluation = paying_unhappy("starter", config).evaluate("acme", at(1))
    assert (evaluation.score, evaluation.band) == (100, "green")
    assert evaluation.weights["sentiment"] == 0


def test_plan_override_takes_precedence_over_stage_override() -> None:
    config = ScoreConfig(
        segments={"onboarding": Segment(weights=FINANCIAL_ONLY)},
        plans={"enterprise": Segment(weights=SENTIMENT_ONLY)},
    )
    assert paying_unhappy("enterprise", config).evaluate("acme", at(1)).score == 0


def test_stage_band_override() -> None:
    config = ScoreConfig(segments={"onboarding": Segment(bands=Bands(green=50, yellow=20))})
    evaluation = paying_unhappy("starter", config).evaluate("acme", at(1))
    assert (evaluation.score, evaluation.band) == (63.6, "green")


def test_a_plan_band_override_keeps_the_base_thresholds_it_does_not_set(tmp_path: Path) -> None:
    config = load_score_config(
        write(
            tmp_path, "[bands]\ngreen_share = 0\nred_usage_below = 5\n[plans.enterprise.bands]\ngreen = 75\n"
        )
    )
    enterprise = config.bands_for("adopted", "enterprise")
    assert (enterprise.green, enterprise.green_share, enterprise.red_usage_below) == (75, 0, 5)
    assert config.bands_for("adopted", "starter") == config.bands


def test_stage_and_plan_overrides_combine_key_by_key_the_plan_winning(tmp_path: Path) -> None:
    config = load_score_config(
        write(
            tmp_path,
            "[weights]\nsupport = 0.1\n"
            "[segments.renewal.weights]\nfinancial = 0.9\nadoption = 0.2\n"
            "[plans.enterprise.weights]\nadoption = 0.5\n",
        )
    )
    assert config.weights_for("renewal", "enterprise") == {
        "adoption": 0.5,
        "support": 0.1,
        "sentiment": 0.2,
        "financial": 0.9,
    }
    assert config.weights_for("adopted", "enterprise")["financial"] == 0.35


def test_a_partial_band_override_is_ordered_against_the_base_not_the_defaults(tmp_path: Path) -> None:
    config = load_score_config(write(tmp_path, "[bands]\ngreen = 80\n[plans.x.bands]\nyellow = 75\n"))
    assert (config.bands_for("renewal", "x").green, config.bands_for("renewal", "x").yellow) == (80, 75)


def test_lifecycle_stages() -> None:
    feed = Feed()
    feed(started("acme", at(0), "100", term_end="2024-12-31T00:00:00Z"), usage("acme", at(1)))
    assert feed.evaluate("acme", at(89)).stage == "onboarding"
    assert feed.evaluate("acme", at(91)).stage == "adopted"
    assert feed.evaluate("acme", "2024-10-05T00:00:00Z").stage == "renewal"  # within 90 days of term_end
    feed(usage("acme", at(100)), canceled("acme", at(101)))
    assert feed.evaluate("acme", at(102)).stage == "churned"


def test_days_to_renewal_scores_how_soon_the_contract_can_end() -> None:
    feed = Feed()
    feed(
        started("monthly", at(0), "100", term_end=at(31)),
        started("annual", at(0), "100", sub="s2", term_end=at(365)),
    )
    # curve (0, 0), (31, 0), (90, 100): 21 days -> 0; 60 days -> 49.2; 335 days -> flat at 100
    soon = feed.evaluate("monthly", at(10))
    assert soon.signals["days_to_renewal"] == (21.0, 0.0)
    assert feed.evaluate("monthly", at(30)).signals["days_to_renewal"] == (1.0, 0.0)  # no saw-tooth
    assert feed.evaluate("annual", at(305)).signals["days_to_renewal"][1] == pytest.approx(100 * 29 / 59)
    committed = feed.evaluate("annual", at(30))
    assert committed.signals["days_to_renewal"] == (335.0, 100.0)  # outside the renewal window too
    assert committed.components["financial"] is not None and soon.components["financial"] is not None
    assert committed.components["financial"] > soon.components["financial"]
    assert committed.score > soon.score
    reasons = {r["signal"]: r["message"] for r in explain(soon)}
    assert reasons["days_to_renewal"] == "renewal in 21 days (on 2024-02-01)"
    # At the term end, before the renewal arrives, the account is at its renewal: 0 days, not
    # missing (a missing signal scored the instant higher and the renewal then read as a drop).
    due = feed.evaluate("monthly", at(31))
    assert due.signals["days_to_renewal"] == (0.0, 0.0)
    assert due.score <= soon.score
    # ... and its reason says the term ended, not "renewal in 0 days" without a date, for as long
    # as the renewal does not come (for ever, on an export whose renewals were never recorded).
    for late in (31, 75):
        reasons = {r["signal"]: r["message"] for r in explain(feed.evaluate("monthly", at(late)))}
        assert reasons["days_to_renewal"] == "term ended on 2024-02-01, not renewed yet"
    # Without a known term end the signal is missing (neutral), not a guess.
    feed(started("open", at(0), "100", sub="s3"))
    assert "days_to_renewal" not in feed.evaluate("open", at(10)).signals


def test_reasons_explain_the_weakest_signals_in_plain_words() -> None:
    feed = Feed()
    feed(nps("acme", at(1, 9), 2, "r1"), nps("acme", at(1, 10), 3, "r2"))
    reasons = feed.snapshot("acme")["reasons"]
    assert reasons[0]["signal"] == "nps"
    assert reasons[0]["message"] == "NPS -100 from 2 respondents"


def test_score_is_pure() -> None:
    feed = paying_unhappy("starter", ScoreConfig())
    assert feed.evaluate("acme", at(1)) == feed.evaluate("acme", at(1))


# -- the configuration file ----------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "score.toml"
    path.write_text(text)
    return path


def test_empty_config_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_score_config(write(tmp_path, "")) == ScoreConfig()
    assert load_score_config(None) == ScoreConfig()


def test_config_file_overrides(tmp_path: Path) -> None:
    config = load_score_config(
        write(
            tmp_path,
            "[bands]\ngreen = 80\nyellow = 50\n"
            "[plans.enterprise.weights]\nadoption = 0\nsupport = 0\nsentiment = 1\nfinancial = 0\n"
            "[currency.rates]\nCHF = '1.12'\n",
        )
    )
    assert config.bands == Bands(green=80, yellow=50)
    assert config.weights_for("adopted", "enterprise")["sentiment"] == 1
    assert str(config.currency.rate("CHF")) == "1.12"
    assert config.currency.rate("EUR") is None  # the rates table is replaced, not merged


def test_a_reporting_currency_other_than_the_dollar_without_rates_of_its_own_is_refused(
    tmp_path: Path,
) -> None:
    """The built-in rates are dollars per unit: with `reporting = "EUR"` alone they were read as
    euro rates (a pound billed as 1.27 euros) and every dollar event was dead-lettered."""
    path = write(tmp_path, '[currency]\nreporting = "EUR"\n')
    with pytest.raises(ConfigError) as info:
        load_score_config(path)
    [problem] = str(info.value).splitlines()[1:]
    assert "currency.reporting is 'EUR' but no currency.rates are given" in problem
    assert "built-in ones (EUR = 1.08, GBP = 1.27) are USD per unit" in problem
    assert "add [currency.rates] with the units of EUR per one unit of each other currency" in problem


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[currency]\nreporting = "EUR"\nrates = { EUR = "1.08", USD = "0.93" }\n', "gives EUR = 1.08"),
        ('[currency.rates]\nUSD = "0.9"\n', "gives USD = 0.9"),
    ],
)
def test_a_rate_for_the_reporting_currency_other_than_one_is_refused_naming_it(
    tmp_path: Path, text: str, said: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_score_config(write(tmp_path, text))
    [problem] = str(info.value).splitlines()[1:]
    assert f"currency.rates {said}" in problem and "is the reporting currency" in problem, problem


@pytest.mark.parametrize(
    "text",
    [
        "[currency]\nreporting = 'USD'\n",  # the built-in rates' own base
        "[currency]\nrates = { EUR = '1.08', GBP = '1.27' }\n",
        "[currency]\nreporting = 'EUR'\nrates = { USD = '0.93', GBP = '1.17' }\n",
        "[currency]\nreporting = 'EUR'\nrates = { EUR = '1.0', USD = '0.93' }\n",  # its own at 1
        "[currency]\nreporting = 'EUR'\nrates = {}\n",  # euro events only
    ],
)
def test_rates_per_unit_of_the_reporting_currency_are_accepted(tmp_path: Path, text: str) -> None:
    config = load_score_config(write(tmp_path, text))
    assert config.currency.rate(config.currency.reporting) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[bands]\ngreen = 30\nyellow = 50\n", ["bands", "must not exceed bands.green"]),
        ("[weights]\nadoption = -1\n", ["weights.adoption", "greater than or equal to 0"]),
        (
            "[weights]\nadoption = 0\nsupport = 0\nsentiment = 0\nfinancial = 0\n",
            ["weights", "at least one component weight must be above 0"],
        ),
        ("[curves]\nnps = [[0, 10], [0, 20]]\n", ["curves.nps", "strictly increase"]),
        ("[curves]\nnps = [[0, 10], [10, 120]]\n", ["curves.nps", "within 0..100"]),
        ("[curves]\nnps = [[0, 10]]\n", ["curves.nps", "at least two"]),
        ("colour = 'blue'\n", ["colour", "Extra inputs are not permitted"]),
        ("[currency.rates]\nEUR = 0\n", ["currency.rates", "rate for EUR must be above 0"]),
        ("[currency]\nreporting = 'dollars'\n", ["currency.reporting", "pattern"]),
        ("[segments.trial]\n", ["segments.trial"]),
        (
            "[bands]\ngreen = 70\n[plans.x.bands]\nyellow = 75\n",
            ["plans.x.bands laid over [bands]", "bands.yellow (75.0) must not exceed bands.green (70.0)"],
        ),
        (
            "[weights]\nsupport = 0\nsentiment = 0\n[segments.renewal.weights]\nadoption = 0\n"
            "financial = 0\n",
            ["segments.renewal.weights laid over [weights]", "at least one component weight must be above 0"],
        ),
        ("[time]\nallowed_lateness_days = -1\n", ["time.allowed_lateness_days"]),
        ("[limits]\nmax_users = 0\n", ["limits.max_users"]),
        ("empty_score = 101\n", ["empty_score", "less than or equal to 100"]),
        # Values that pass a lower bound and still break the arithmetic (each once crashed a worker)
        ("[weights]\nadoption = inf\n", ["weights.adoption", "finite number"]),
        ("[weights]\nadoption = 1e308\nsupport = 1e308\n", ["weights.adoption", "less than or equal to"]),
        (
            "[time]\nallowed_lateness_days = 1e300\n",
            ["time.allowed_lateness_days", "less than or equal to 3660"],
        ),
        (
            "[portfolio]\ncs_cost_per_month = '1e30'\n",
            ["portfolio.cs_cost_per_month", "less than or equal to"],
        ),
        ("[curves]\nnps = [[0, 10], [inf, 20]]\n", ["curves.nps", "finite number"]),
        ("[lifecycle]\nonboarding_days = 10000000000000000000\n", ["lifecycle.onboarding_days"]),
        ("[currency.rates]\nEUR = '1e400'\n", ["currency.rates", "rate for EUR must be at most"]),
        ("[model]\nversion = 'x'\nintercept = 1e308\ncoefficients = {}\nmeans = {}\n", ["model.intercept"]),
        # A value of another type is refused, not coerced: `true` is not a weight of 1, nor "70" a 70
        ("[weights]\nadoption = true\n", ["weights.adoption", "valid number", "got True"]),
        ("[bands]\ngreen = '70'\n", ["bands.green", "valid number", "got '70'"]),
        ("[curves]\nnps = [[0, '10'], [10, 20]]\n", ["curves.nps", "valid number"]),
        ("[peers]\nmin_peers = 20.5\n", ["peers.min_peers", "valid integer"]),
        ("[alerts.silence]\nenabled = 'no'\n", ["alerts.silence.enabled", "valid boolean"]),
        # A tick interval near 0 divided by zero, or spun the tick loop for hours
        (
            "[time]\nrescore_interval_hours = 5e-324\n",
            ["time.rescore_interval_hours", "greater than or equal to 1"],
        ),
        (
            "[time]\nrescore_interval_hours = 0.001\n",
            ["time.rescore_interval_hours", "greater than or equal to 1"],
        ),
        # A misspelt signal in a model read as always missing: the same risk for every account
        (
            "[model]\nversion = 'x'\nintercept = 0\ncoefficients = { nsp = 1 }\nmeans = { nsp = 50 }\n",
            ["model", "model.coefficients names 'nsp', which is not a signal (did you mean 'nps'?)"],
        ),
        (
            "[model]\nversion = 'x'\nintercept = 0\ncoefficients = {}\nmeans = {}\nmissing = { foo = 3 }\n",
            ["model.missing names 'foo', which is not a signal; signals are stickiness,"],
        ),
    ],
)
def test_bad_config_is_refused_with_the_offending_key(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_score_config(path)
    message = str(info.value)
    assert f"score config file {path} is invalid" in message
    for part in expected:
        assert part in message


def test_a_bad_table_is_not_printed_whole_in_its_error(tmp_path: Path) -> None:
    """A rule over the whole [model] printed the table after its message: over a kilobyte."""
    means = ", ".join(f"{name} = 50" for name in ("nps", "csat_pct", "ces", "recency_days", "stickiness"))
    model = f"version = 'x'\nintercept = 0\ncoefficients = {{ nsp = 1 }}\nmeans = {{ nsp = 50, {means} }}"
    text = f"[model]\n{model}\n"
    with pytest.raises(ConfigError) as info:
        load_score_config(write(tmp_path, text))
    line = next(line for line in str(info.value).splitlines() if "nsp" in line)
    assert "did you mean 'nps'?" in line and line.endswith("...)") and len(line) < 300, line


def test_config_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_score_config(write(tmp_path, "weights = [\n"))


def test_config_nested_too_deeply_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid TOML: arrays or tables nested too deeply"):
        load_score_config(write(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n"))


def test_config_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "score.toml"
    path.write_bytes(b"# poids\xa0par d\xe9faut\n")
    with pytest.raises(ConfigError) as info:
        load_score_config(path)
    assert str(info.value) == f"score config file {path} is not UTF-8 (byte 7 cannot be decoded)"


def test_config_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "score.toml"
    path.write_bytes("\ufeff[weights]\nadoption = 0.5\n".encode())
    assert load_score_config(path).weights.adoption == 0.5


def test_config_larger_than_any_config_is_refused_in_one_line(tmp_path: Path) -> None:
    from streamer.settings import MAX_TOML_BYTES

    path = tmp_path / "score.toml"
    path.write_bytes(b"#" * (MAX_TOML_BYTES + 1))
    with pytest.raises(ConfigError, match=f"score config file {path} is larger than 16 MiB"):
        load_score_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[features]\ncatalogue = ["login", "report", "login"]\n',
            "features.catalogue: names 'login'",
        ),
        (
            '[features]\nkey_features = ["a", "a"]\n',
            "features.key_features: names 'a' more than once",
        ),
    ],
)
def test_a_feature_listed_twice_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_score_config(write(tmp_path, text))


def test_a_key_feature_outside_the_catalogue_is_refused_with_the_closest_name(tmp_path: Path) -> None:
    """A misspelt key feature was never used by anyone: the key-feature signal read nothing."""
    text = '[features]\ncatalogue = ["login", "api", "report"]\nkey_features = ["apl"]\n'
    said = "features.key_features: 'apl' is not in the catalogue (did you mean 'api'?)"
    with pytest.raises(ConfigError, match=re.escape(said)):
        load_score_config(write(tmp_path, text))
    assert load_score_config(write(tmp_path, '[features]\nkey_features = ["anything"]\n'))  # no catalogue


def test_signal_weights_all_zero_are_refused(tmp_path: Path) -> None:
    from streamer.core.config import SignalWeights

    zero = "\n".join(f"{name} = 0" for name in SignalWeights.model_fields)
    with pytest.raises(ConfigError, match="at least one signal weight must be above 0"):
        load_score_config(write(tmp_path, f"[signal_weights]\n{zero}\n"))


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_score_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("standing", "band"),
    [
        ({"events_28d": 85, "feature_mix_28d": 95}, "green"),  # the top fifth in all three
        ({"events_28d": 79.9, "feature_mix_28d": 95}, "yellow"),  # many features, few events
        ({"events_28d": 95, "feature_mix_28d": 79.9}, "yellow"),  # many events, a narrow mix
        ({"feature_mix_28d": 95}, "green"),  # a signal without a standing does not count
        ({"events_28d": 50, "feature_mix_28d": 9.9}, "red"),  # the bottom tenth of the mix alone
        ({"active_days_28d": 5, "feature_mix_28d": 95}, "green"),  # not in green_also nor red_also
    ],
)
def test_the_amount_and_the_mix_count_on_their_own(standing: dict[str, float], band: str) -> None:
    """Green for an account that can leave soon needs the top of its peers' use by the composite
    and by its events and its mix each; the bottom tenth of the mix alone is red."""
    assert Bands().rule.band(90, 90, standing=standing) == band
    assert Bands().rule.band(90, 90, committed=True, standing=standing) == "green"  # the score alone
    assert Bands(green_also=(), red_also=()).rule.band(90, 90, standing=standing) == "green"


def test_held_back_reads_the_amount_and_the_mix() -> None:
    """Held in yellow by the budget: healthy, top of the composite, its events not at the top."""
    standing = {"events_28d": 85, "feature_mix_28d": 95}
    assert Bands().rule.held_back(90, 95, committed_share=10, standing=standing)  # cut 90: events under
    assert not Bands().rule.held_back(90, 95, committed_share=5, standing=standing)  # cut 85: green
    assert not Bands().rule.held_back(90, 95, committed_share=10, standing={"feature_mix_28d": 5})  # red


def test_the_bands_name_peer_signals_only() -> None:
    with pytest.raises(ValueError, match="usage_90d not a peer signal"):
        Bands(green_also=("usage_90d",))


def test_reasons_count_one_respondent_and_one_ticket_in_the_singular() -> None:
    feed = Feed()
    feed(nps("acme", at(1, 9), 2, "r1"))
    reasons = {r["signal"]: r["message"] for r in feed.snapshot("acme")["reasons"]}
    assert reasons["nps"] == "NPS -100 from 1 respondent"
    one_ticket = Facts(tickets_opened_30d=1, tickets_baseline_30d=0.25)
    assert MESSAGES["ticket_volume_ratio"](4.0, one_ticket) == "1 ticket in 30 days vs 0.2 usually"
