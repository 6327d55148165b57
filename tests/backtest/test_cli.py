"""`streamer backtest` end to end on a small simulated portfolio, and the replay's no-look-ahead rule."""

from __future__ import annotations

import gzip
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer.backtest.analysis import committed
from streamer.backtest.choice import MIN_CHURNED_ACCOUNTS
from streamer.backtest.labels import churn_instants
from streamer.backtest.report import accounts
from streamer.backtest.sampling import Replay, replay, sorted_lines
from streamer.backtest.tuning import scores_under, signal_scores_under
from streamer.cli import main
from streamer.core.config import COMPONENTS, ScoreConfig
from streamer.core.score import committed as core_committed
from streamer.core.score import evaluate
from streamer.offline import external_sort
from streamer.offline.runner import OfflineRun
from streamer.settings import load_score_config

PNG = b"\x89PNG\r\n\x1a\n"
WARMUP = ["--warmup-days", "30"]


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 accounts over 8 months, churn scaled up so a small file has churners to find."""
    path = tmp_path_factory.mktemp("backtest") / "events.jsonl.gz"
    result = invoke(
        "simulate", "--accounts", "60", "--months", "8", "--seed", "4", "--usage-density", "0.3",
        "--churn-scale", "3", "--out", str(path), "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def history(events: Path) -> Replay:
    return replay(events, ScoreConfig(), warmup_days=30)


def test_backtest_reports_auc_churn_by_band_and_alerts(events: Path, tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    result = invoke("backtest", events, *WARMUP, "--quiet", "--json", figures)
    assert result.exit_code == 0, result.output
    out = result.output
    for heading in (
        "ROC AUC of the score",
        "pooled",
        "Each component alone",
        "Churn rate by band",
        "red/green churn ratio",
        "all at-risk",
    ):
        assert heading in out
    assert "Tuning" not in out
    data: dict[str, Any] = orjson.loads(figures.read_bytes())
    auc, baseline = data["horizons"]["60"]["auc"], data["baseline"]["auc"]["60"]
    verdict = "met" if auc >= baseline else "NOT MET"
    assert (
        f"targets of the score tested: AUC 60d {auc:.3f} >= the baseline's {baseline:.3f} {verdict};" in out
    )
    assert data["lines"] > 10_000 and data["rejected"] == 0
    for days in ("30", "60"):
        horizon = data["horizons"][days]
        assert 0.5 < horizon["auc"] <= 1.0  # the simulator's churn is preceded by visible decline
        assert sum(band["samples"] for band in horizon["bands"].values()) == horizon["samples"]
        assert sum(month["samples"] for month in horizon["by_month"]) == horizon["samples"]
        assert sum(month["churned"] for month in horizon["by_month"]) == horizon["churned"] > 0
    assert len(data["horizons"]["30"]["by_month"]) == len(data["month_starts"])
    components = data["horizons"]["60"]["components"]
    assert set(components) == set(COMPONENTS)
    assert components["financial"]["coverage"] == 1.0  # every paying account has subscriptions
    bands = data["horizons"]["60"]["bands"]
    assert bands["green"]["rate"] < bands["yellow"]["rate"]
    overall = data["alerts"][0]
    assert overall["rule"] == "all at-risk" and overall["alerts"] > 0 and 0 < overall["recall"] <= 1
    assert "band_recovered" not in {row["rule"] for row in data["alerts"]}
    # each rule's precision against the base rate: the 60-day churn share of the samples
    base = data["horizons"]["60"]["churned"] / data["horizons"]["60"]["samples"]
    for row in data["alerts"]:
        if row["precision"] is not None:
            assert row["lift"] == pytest.approx(row["precision"] / base)
            assert f"{row['lift']:.1f}x" in out
    assert "x base rate" in out
    assert data["tuning"] is None


FIT = [
    "--min-churned-accounts",
    "1",
]  # this small file has fewer churned accounts than a fit needs by default


def test_tune_writes_a_config_that_the_core_and_streamer_offline_accept(events: Path, tmp_path: Path) -> None:
    tuned, plots, figures = tmp_path / "tuned.toml", tmp_path / "plots", tmp_path / "figures.json"
    result = invoke(
        "backtest",
        events,
        *WARMUP,
        *FIT,
        "--quiet",
        "--tune",
        "--write-config",
        tuned,
        "--plots",
        plots,
        "--json",
        figures,
    )
    assert result.exit_code == 0, result.output
    assert "Tuning: logistic regression" in result.output and "held out" in result.output
    assert f"wrote {tuned}" in result.output
    config = load_score_config(tuned)
    weights = config.weights.as_dict()
    assert all(weight >= 0 for weight in weights.values())
    tuning = orjson.loads(figures.read_bytes())["tuning"]
    if tuning["choice"]["keeps_default"]:  # written as configured (the core renormalises them)
        assert weights == ScoreConfig().weights.as_dict()
    else:  # a fit's component weights are its coefficient sums, normalised
        assert sum(weights.values()) == pytest.approx(1.0)
    assert tuning["tuned_weights"] == weights
    assert tuning["held_out_month_starts"][0] > tuning["train_month_starts"][-1]
    assert config.model is not None and config.model.coefficients == tuning["model"]["coefficients"]
    assert set(tuning["signal_weights"]) <= set(config.signal_table)
    assert "Calibration of churn_risk_60d" in result.output and "plain LR" in result.output
    assert set(tuning["held_out"]) == {"default", "tuned", "churn_risk", "logistic", "chosen"}
    chosen = tuning["held_out"]["chosen"]  # what --tune chose, through what it publishes
    assert chosen["winner"] in ("mix", "plain")  # the [model] behind churn_risk_60d, what it publishes
    assert chosen["auc"] == tuning["held_out"]["churn_risk"]["auc"]
    names = {
        "roc.png",
        "auc_by_month.png",
        "bands.png",
        "scores.png",
        "alerts.png",
        "weights.png",
        "calibration.png",
    }
    assert {path.name for path in plots.iterdir()} == names
    assert all((plots / name).read_bytes().startswith(PNG) for name in names)
    offline = invoke("offline", events, "--out", tmp_path / "scored", "--sort", "--config", tuned, "--quiet")
    assert offline.exit_code == 0, offline.output
    scored = [
        orjson.loads(line) for line in (tmp_path / "scored" / "accounts.jsonl").read_bytes().splitlines()
    ]
    paying = [account for account in scored if float(account["mrr"]) > 0]
    assert paying and all(0 <= account["churn_risk_60d"] <= 1 for account in paying)
    # churn is MRR reaching 0: an account paying nothing has no risk of it, whatever its score
    churned = [account for account in scored if account["lifecycle_stage"] == "churned"]
    assert churned and all(account["churn_risk_60d"] is None for account in churned)


def test_too_few_churned_accounts_write_the_default_weights_and_the_score_calibrated(
    events: Path, tmp_path: Path
) -> None:
    """A history with fewer churned accounts than --min-churned-accounts gets nothing fitted: the
    default weights, and a [model] of the score (and, as the training samples hold scheduled
    cancellations, of that signal), so churn_risk_60d ranks the workers' snapshots as the score
    does, but that an account that has scheduled its cancellation ranks above its score."""
    tuned, figures = tmp_path / "tuned.toml", tmp_path / "figures.json"
    result = invoke("backtest", events, *WARMUP, "--quiet", "--write-config", tuned, "--json", figures)
    assert result.exit_code == 0, result.output
    tuning = orjson.loads(figures.read_bytes())["tuning"]
    counted = tuning["choice"]["churned_accounts"]
    assert 2 <= counted < MIN_CHURNED_ACCOUNTS == tuning["choice"]["min_churned_accounts"]
    assert (
        f"{counted} accounts churned in the training samples, fewer than {MIN_CHURNED_ACCOUNTS}"
        in result.output
    )
    assert tuning["held_out"]["chosen"]["winner"] == "calibrated" and tuning["choice"]["keeps_default"]
    config = load_score_config(tuned)
    assert config.weights == ScoreConfig().weights and config.signal_weights == ScoreConfig().signal_weights
    model = config.model
    assert model is not None and not model.feature_volumes
    assert model.score < 0  # a higher score reads as less risk
    assert (
        list(model.coefficients) == ["scheduled_cancellation"]
        and model.coefficients["scheduled_cancellation"] < 0
    )
    offline = invoke("offline", events, "--out", tmp_path / "scored", "--sort", "--config", tuned, "--quiet")
    assert offline.exit_code == 0, offline.output
    scored = [
        orjson.loads(line) for line in (tmp_path / "scored" / "accounts.jsonl").read_bytes().splitlines()
    ]
    paying = [account for account in scored if float(account["mrr"]) > 0]
    staying = sorted(
        (a for a in paying if a["metrics"]["scheduled_cancellation_at"] is None), key=lambda a: a["score"]
    )
    risks = [account["churn_risk_60d"] for account in staying]
    assert risks == sorted(risks, reverse=True) and risks[0] > risks[-1]  # as the score ranks them
    for account in paying:  # the score's own calibration, and the cancellation's term on top
        said = model.intercept + model.score * account["score"] / 100
        said += model.coefficients["scheduled_cancellation"] * (
            account["metrics"]["scheduled_cancellation_at"] is None
        )
        assert account["churn_risk_60d"] == pytest.approx(1 / (1 + math.exp(-said)), abs=1e-4)
    assert any(a["metrics"]["scheduled_cancellation_at"] for a in paying), "the premise: someone is leaving"
    assert "the calibration also reads a scheduled cancellation (log-odds +" in result.output


def test_write_config_implies_tune_and_keeps_the_given_configs_other_settings(
    events: Path, tmp_path: Path
) -> None:
    base = tmp_path / "base.toml"
    base.write_text("[bands]\ngreen = 75\nyellow = 45\n\n[weights]\nadoption = 1\nsupport = 0\n")
    tuned = tmp_path / "tuned.toml"
    result = invoke("backtest", events, *WARMUP, *FIT, "--quiet", "--config", base, "--write-config", tuned)
    assert result.exit_code == 0, result.output
    config = load_score_config(tuned)
    assert (config.bands.green, config.bands.yellow) == (75, 45)
    assert config.model is not None  # the tuning ran: the [model] is always fitted
    given = load_score_config(base).weights.as_dict()  # adoption 1, support 0, the rest the defaults
    # the weights change unless the given ones ranked churners as well out of fold, and then it says so
    kept = "--tune keeps the default weights" in result.output
    assert (config.weights.as_dict() == given) == kept


def lines_before(events: Path, at: int) -> list[bytes]:
    """The file's lines before `at` in `--sort` order."""
    with sorted_lines(events) as (ordered, _):
        return [line for (ts, _, _), line in ordered if ts < at]


def test_a_replay_sorted_in_runs_on_disk_is_the_replay_sorted_in_memory(
    events: Path, history: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(external_sort, "RUN_BYTES", 64 * 1024)
    with sorted_lines(events) as (ordered, _):
        assert ordered.runs > 2
    again = replay(events, ScoreConfig(), warmup_days=30)
    fields = ("samples", "grid_samples", "alerts", "data_start", "activity_start", "data_end", "lines")
    for name in fields:
        assert getattr(again, name) == getattr(history, name), name


def test_samples_are_scored_from_the_events_before_the_month_start_only(
    events: Path, history: Replay
) -> None:
    at = history.month_starts[1]
    before = lines_before(events, at)
    run = OfflineRun(ScoreConfig(), 4)
    run.feed(iter(before), on_snapshot=lambda _: None, on_alert=lambda _: None, on_dead_letter=lambda _: None)
    expected = {
        account_id: evaluate(account.inputs(engine.tracked(account, at)), at, run.config)
        for engine in run.engines
        for account_id, account in engine.accounts.items()
        if account.revenue.mrr_at(at) > 0
    }
    sampled = {s.account_id: s for s in history.samples if s.at == at}
    assert set(sampled) == set(expected) and sampled
    for account_id, sample in sampled.items():
        found = expected[account_id]
        assert (sample.score, sample.band, sample.stage) == (found.score, found.band, found.stage)
        assert sample.components == tuple(found.components[name] for name in COMPONENTS)


def test_rescoring_with_the_configured_weights_gives_the_sampled_scores(history: Replay) -> None:
    assert scores_under(history.samples, ScoreConfig()).tolist() == [s.score for s in history.samples]


def test_a_sample_says_whether_its_account_was_committed_as_the_core_read_it(
    events: Path, history: Replay
) -> None:
    """--tune's held-out churn by band re-bands samples: a committed account (term beyond the
    renewal window) is never red, and green without the top of use (`Bands.band`)."""
    for at in history.month_starts[1:3]:
        before = lines_before(events, at)
        run = OfflineRun(ScoreConfig(), 4)
        run.feed(
            iter(before), on_snapshot=lambda _: None, on_alert=lambda _: None, on_dead_letter=lambda _: None
        )
        expected = {
            account_id: core_committed(
                evaluate(account.inputs(engine.tracked(account, at)), at, run.config).facts.renewal_at,
                at,
                run.config,
            )
            for engine in run.engines
            for account_id, account in engine.accounts.items()
            if account.revenue.mrr_at(at) > 0
        }
        found = {s.account_id: committed(s) for s in history.samples if s.at == at}
        assert found == expected
        assert any(found.values()) and not all(found.values())


def test_churn_from_the_subscription_events_matches_the_simulators_ground_truth(
    events: Path, history: Replay
) -> None:
    truth = orjson.loads(events.with_name("events.truth.json").read_bytes())
    expected = {
        (account["account_id"], int(datetime.fromisoformat(churn["at"]).timestamp() * 1000))
        for account in truth["accounts"]
        for churn in account["churns"]
    }
    found = {
        (account_id, at)
        for account_id, timeline in history.timelines.items()
        for at in churn_instants(timeline)
        if at <= history.data_end
    }
    assert found == expected and found


def test_a_file_too_short_for_a_month_start_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.jsonl"
    started = {
        "event_id": "e1",
        "event_type": "subscription.started",
        "account_id": "a",
        "subscription_id": "s",
        "occurred_at": "2024-01-05T00:00:00Z",
        "plan": "pro",
        "amount": "100",
        "currency": "USD",
        "interval": "month",
    }
    path.write_bytes(orjson.dumps(started) + b"\n")
    result = CliRunner().invoke(main, ["backtest", str(path), "--quiet"])
    assert result.exit_code != 0
    assert "no month start has enough history" in result.output


def test_tune_needs_enough_month_starts(events: Path, tmp_path: Path) -> None:
    tuned = tmp_path / "tuned.toml"
    result = CliRunner().invoke(
        main, ["backtest", str(events), "--quiet", "--write-config", str(tuned), "--warmup-days", "150"]
    )
    assert result.exit_code == 1
    assert "--tune needs at least 3 month starts" in result.output
    # the configured score's report is not thrown away with the fit, and nothing is written
    assert "ROC AUC of the score" in result.output
    assert "the report above is the configured score's and no configuration was written" in result.output
    assert not tuned.exists()


def test_a_bad_config_is_refused_with_its_path(events: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[bands]\ngreen = 30\nyellow = 40\n")
    result = CliRunner().invoke(main, ["backtest", str(events), "--quiet", "--config", str(bad)])
    assert result.exit_code != 0
    assert "bands.yellow (40.0) must not exceed bands.green (30.0)" in result.output


@pytest.mark.parametrize("min_churned_accounts", [1, MIN_CHURNED_ACCOUNTS], ids=["a fit", "the score"])
def test_a_written_config_gives_the_tuned_scores_and_probabilities_when_replayed(
    events: Path, history: Replay, tmp_path: Path, min_churned_accounts: int
) -> None:
    """Round trip: tune, write the config, load it, replay with it: the core's scores and
    churn_risk_60d at every sample equal what the tuning computed for them (a fitted [model], and
    the score calibrated that a history with too few churned accounts gets)."""
    import tomllib

    from streamer.backtest.analysis import Fitted, analyse, tune
    from streamer.backtest.configfile import tuned_config_text
    from streamer.core.risk import churn_risk

    def adopt(fitted: Fitted) -> ScoreConfig:
        text = tuned_config_text({}, fitted.weights, [], fitted.signal_weights, fitted.model)
        return ScoreConfig.model_validate(tomllib.loads(text))

    result = analyse(history)
    by_horizon = {d: h.labelled for d, h in result.horizons.items()}
    tuning = tune(by_horizon, ScoreConfig(), adopt, 1 / 3, min_churned_accounts=min_churned_accounts)
    assert tuning.choice.too_few_churned == (min_churned_accounts == MIN_CHURNED_ACCOUNTS)
    path = tmp_path / "tuned.toml"
    path.write_text(
        tuned_config_text(
            {}, tuning.fitted.weights, ["round trip"], tuning.fitted.signal_weights, tuning.fitted.model
        )
    )
    config = load_score_config(path)
    again = replay(events, config, warmup_days=30)
    assert [(s.account_id, s.at) for s in again.samples] == [(s.account_id, s.at) for s in history.samples]
    assert [s.score for s in again.samples] == signal_scores_under(history.samples, config).tolist()
    held = tuning.test_labelled[60].samples
    assert signal_scores_under(held, config).tolist() == tuning.test_scores["tuned"][60].tolist()
    scores = signal_scores_under(held, config).tolist()
    risk = [
        churn_risk({n: (0.0, v) for n, v in s.signals.items()}, config.model, s.volumes, score)
        for s, score in zip(held, scores, strict=True)
    ]
    assert risk == [round(float(p), 4) for p in tuning.risk.predicted[60]]


def test_outputs_in_folders_that_do_not_exist_yet_are_written_there(events: Path, tmp_path: Path) -> None:
    figures, tuned = tmp_path / "new" / "figures.json", tmp_path / "other" / "deeper" / "tuned.toml"
    result = invoke("backtest", events, *WARMUP, "--quiet", "--json", figures, "--write-config", tuned)
    assert result.exit_code == 0, result.output
    assert orjson.loads(figures.read_bytes())["horizons"]
    assert load_score_config(tuned).model is not None


def test_an_output_that_cannot_be_written_is_refused_before_the_replay(events: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["backtest", str(events), "--json", str(blocker / "figures.json")])
    assert result.exit_code == 1
    assert f"cannot create the folder {blocker}" in result.output
    assert "sorting" not in result.output  # refused before any work


@pytest.mark.parametrize("option", ["--replay-cache", "--json", "--write-config"])
def test_an_output_naming_the_events_file_is_refused_and_the_events_kept(
    events: Path, tmp_path: Path, option: str
) -> None:
    """--replay-cache EVENTS read the events as a broken cache, replayed them and saved the
    cache over them: the history was gone, exit 0."""
    copy = tmp_path / "events.jsonl.gz"
    copy.write_bytes(events.read_bytes())
    spelt = tmp_path / "." / "events.jsonl.gz"  # another spelling of the same path
    result = CliRunner().invoke(main, ["backtest", str(copy), "--quiet", option, str(spelt)])
    assert result.exit_code == 1 and "is also an input" in result.output, result.output
    assert copy.read_bytes() == events.read_bytes()


def test_a_replay_cache_naming_a_file_that_is_no_cache_is_refused_and_the_file_kept(
    events: Path, tmp_path: Path
) -> None:
    """--replay-cache OTHER-EVENTS.gz replayed and saved the cache over another portfolio's events."""
    other = tmp_path / "other.jsonl.gz"
    other.write_bytes(events.read_bytes())
    result = CliRunner().invoke(main, ["backtest", str(events), "--quiet", "--replay-cache", str(other)])
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: {other}: not a replay cache (it does not start as one): it is left " + (
        "alone; name another file with --replay-cache\n"
    )
    assert other.read_bytes() == events.read_bytes()


def test_a_damaged_replay_cache_is_replaced_with_a_warning(events: Path, tmp_path: Path) -> None:
    cache = tmp_path / "replay.gz"
    first = invoke("backtest", events, *WARMUP, "--quiet", "--replay-cache", cache)
    assert first.exit_code == 0, first.output
    good = cache.read_bytes()
    cache.write_bytes(good[: len(good) // 2])
    again = invoke("backtest", events, *WARMUP, "--quiet", "--replay-cache", cache)
    assert again.exit_code == 0, again.output
    assert f"warning: {cache}: the replay cache cannot be used (" in again.output
    assert "replayed in" in again.output
    assert gzip.decompress(cache.read_bytes()).split(b"\n", 1)[1].startswith(b'{"made_from":')  # whole


@pytest.mark.parametrize(
    ("first", "second"),
    [("--json", "--write-config"), ("--json", "--replay-cache"), ("--write-config", "--replay-cache")],
)
def test_two_outputs_naming_one_file_are_refused_before_the_replay(
    events: Path, tmp_path: Path, first: str, second: str
) -> None:
    """--json X --write-config X printed "wrote X" and then wrote the figures over the configuration;
    --json X --replay-cache X overwrote the cache silently."""
    target = tmp_path / "output"
    target.write_text("kept")
    spelt = tmp_path / "." / "output"  # another spelling of the same path
    result = CliRunner().invoke(main, ["backtest", str(events), first, str(target), second, str(spelt)])
    assert result.exit_code == 1, result.output
    assert f"Error: {first} and {second} both name {target}: " in result.output
    assert len(result.output.strip().splitlines()) == 1 and "sorting" not in result.output
    assert target.read_text() == "kept"


def test_an_output_naming_a_plot_file_or_the_plots_folder_is_refused_before_the_replay(
    events: Path, tmp_path: Path
) -> None:
    plots = tmp_path / "plots"
    scores = plots / "scores.png"
    result = CliRunner().invoke(main, ["backtest", str(events), "--plots", str(plots), "--json", str(scores)])
    assert result.exit_code == 1, result.output
    assert f"Error: --json {scores} is a plot --plots writes there; give it another path" in result.output
    assert "sorting" not in result.output
    result = CliRunner().invoke(main, ["backtest", str(events), "--plots", str(plots), "--json", str(plots)])
    assert result.exit_code == 1, result.output
    assert f"Error: --json and --plots both name {plots}: " in result.output
    assert "sorting" not in result.output and not plots.exists()


def test_an_output_the_system_will_not_let_be_written_is_refused_before_the_replay(events: Path) -> None:
    result = CliRunner().invoke(main, ["backtest", str(events), "--json", "/proc/healthstream-figures.json"])
    assert result.exit_code == 1
    assert "cannot write /proc/healthstream-figures.json" in result.output, result.output
    assert "Traceback" not in result.output and "sorting" not in result.output


@pytest.mark.parametrize("option", ["--json", "--write-config"])
def test_an_output_name_too_long_for_the_file_system_is_refused_in_one_line(
    events: Path, tmp_path: Path, option: str
) -> None:
    """Asking whether the file existed raised ENAMETOOLONG outside the check: a traceback."""
    too_long = tmp_path / ("a" * 300 + ".toml")
    result = CliRunner().invoke(main, ["backtest", str(events), "--quiet", option, str(too_long)])
    assert result.exit_code == 1
    assert f"cannot write {too_long}: File name too long" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--holdout", "0.25"], "--holdout only changes the fit"),
        (["--top-features", "4", "--min-churned-accounts", "5"], "--top-features and --min-churned-accounts"),
    ],
)
def test_fit_options_without_tune_are_refused(events: Path, options: list[str], named: str) -> None:
    result = CliRunner().invoke(main, ["backtest", str(events), "--quiet", *options])
    assert result.exit_code == 2
    assert named in result.output
    assert "add --tune" in result.output


def test_the_replay_reports_its_progress_in_lines_when_stderr_is_a_log(
    events: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streamer.progress.REPORT_EVERY", 5_000)
    result = invoke("backtest", events, *WARMUP)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "events replayed" in line]
    assert len(lines) >= 3, result.stderr
    assert lines[0].strip().startswith("5,000 events replayed, ") and "% of them, " in lines[0]


def test_a_count_of_accounts_reads_in_the_singular_for_one() -> None:
    assert (accounts(1), accounts(12), accounts(1200)) == ("1 account", "12 accounts", "1,200 accounts")


def test_the_tuned_config_is_written_before_the_plots_and_the_figures(
    events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configuration is what a --tune run cost most: a failure writing the figures (a disk
    filling up) comes after it is safe."""

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("streamer.backtest.report.to_json", disk_full)
    tuned, figures = tmp_path / "tuned.toml", tmp_path / "figures.json"
    result = CliRunner().invoke(
        main,
        ["backtest", str(events), *WARMUP, "--quiet", "--write-config", str(tuned), "--json", str(figures)],
    )
    assert isinstance(result.exception, OSError)
    assert load_score_config(tuned).model is not None
    assert not figures.exists()


def test_a_replay_read_from_its_cache_says_so_with_the_time_it_took_once(
    events: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "replay.gz"
    first = invoke("backtest", events, *WARMUP, "--quiet", "--replay-cache", cache)
    assert first.exit_code == 0, first.output
    assert "replayed in" in first.output and "read from the replay" not in first.output
    again = invoke("backtest", events, *WARMUP, "--quiet", "--replay-cache", cache)
    assert again.exit_code == 0, again.output
    assert f"read from the replay saved in {cache} (made in " in again.output


def test_a_backtest_without_tune_or_a_replay_cache_samples_no_weekly_grid(
    events: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamer.backtest import sampling

    asked: list[bool] = []
    replay = sampling.replay

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["grid"])
        return replay(*args, **kwargs)

    monkeypatch.setattr(sampling, "replay", spy)
    assert CliRunner().invoke(main, ["backtest", str(events), "--quiet"]).exit_code == 0
    assert asked == [False]
