"""The portfolio simulator: determinism, the event contract, ground truth and signal."""

from __future__ import annotations

import gzip
import math
import re
import statistics
from collections import Counter, defaultdict
from datetime import date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from streamer.sim import (
    DIRTY_KINDS,
    SimulationConfig,
    build_portfolio,
    generate_events,
    generate_truth,
    truth_path_for,
    write_simulation,
)
from streamer.sim.cli import simulate
from streamer.sim.profile import CSMS

Event = dict[str, Any]

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
DECIMAL = re.compile(r"^\d+(\.\d+)?$")
SCORE_RANGES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
SUBSCRIPTION_STATE = ("subscription.started", "subscription.changed")
KNOWN_TYPES = {
    *SUBSCRIPTION_STATE,
    "subscription.renewed",
    "subscription.canceled",
    "subscription.payment_failed",
    "usage.recorded",
    "ticket.opened",
    "ticket.resolved",
    "ticket.reopened",
    "account.updated",
    "survey.answered",
}

YEAR = SimulationConfig(accounts=150, months=12, seed=11, usage_density=0.3)
"""A year of a mid-sized portfolio, light on usage so the suite stays fast."""


def epoch(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp())


def contract_problems(event: Event) -> list[str]:
    """Every way `event` breaks the event contract (empty when it is valid)."""
    problems: list[str] = []

    def text(field: str, max_len: int = 128) -> None:
        value = event.get(field)
        if not isinstance(value, str) or not 1 <= len(value) <= max_len:
            problems.append(f"{field}={value!r}")

    def integer(field: str, low: int, high: float = math.inf, required: bool = True) -> None:
        if field not in event and not required:
            return
        value = event.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{field}={value!r}")

    def timestamp(field: str, required: bool = True) -> None:
        if field not in event and not required:
            return
        value = event.get(field)
        if not isinstance(value, str) or not RFC3339.match(value):
            problems.append(f"{field}={value!r}")

    text("event_id")
    text("account_id")
    timestamp("occurred_at")
    kind = event.get("event_type")
    if kind not in KNOWN_TYPES:
        return [*problems, f"event_type={kind!r}"]
    if kind.startswith("subscription."):
        text("subscription_id")
    if kind in SUBSCRIPTION_STATE:
        text("plan")
        amount = event.get("amount")
        if not isinstance(amount, str) or not DECIMAL.match(amount):
            problems.append(f"amount={amount!r}")
        if event.get("currency") not in ("USD", "EUR", "GBP"):
            problems.append(f"currency={event.get('currency')!r}")
        if event.get("interval") not in ("week", "month", "year"):
            problems.append(f"interval={event.get('interval')!r}")
        integer("interval_count", 1, required=False)
        integer("seats", 0, required=False)
        timestamp("term_end", required=event.get("interval") == "year")
    elif kind == "subscription.renewed":
        timestamp("term_end")
    elif kind == "subscription.canceled":
        timestamp("effective_at", required=False)
    elif kind == "subscription.payment_failed":
        integer("attempt", 1)
    elif kind == "usage.recorded":
        text("user_id")
        text("feature")
        integer("count", 1)
    elif kind == "account.updated":
        text("name", 256)
        text("owner", 256)
        text("segment")
        text("tier")
        attributes = event.get("attributes")
        if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
            problems.append(f"attributes={attributes!r}")
    elif kind.startswith("ticket."):
        text("ticket_id")
        if kind == "ticket.opened" and event.get("priority") not in (
            "low",
            "normal",
            "high",
            "urgent",
        ):
            problems.append(f"priority={event.get('priority')!r}")
        if kind == "ticket.resolved":
            integer("contacts", 1)
    else:
        survey = event.get("survey")
        if survey not in SCORE_RANGES:
            return [*problems, f"survey={survey!r}"]
        integer("score", *SCORE_RANGES[str(survey)])
        text("respondent_id")
        comment = event.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 4000):
            problems.append(f"comment={comment!r}")
    return problems


@pytest.fixture(scope="module")
def year() -> tuple[list[Event], dict[str, Any]]:
    portfolio = build_portfolio(YEAR)
    return list(generate_events(YEAR, portfolio)), generate_truth(YEAR, portfolio)


def paying_spans(events: list[Event]) -> dict[str, list[tuple[int, int]]]:
    """Per account, the merged [start, end) spans during which a subscription was live."""
    starts: dict[str, int] = {}
    ends: dict[str, int] = {}
    owner: dict[str, str] = {}
    for event in events:
        kind = event["event_type"]
        if kind == "subscription.started":
            assert event["subscription_id"] not in starts, "subscription started twice"
            starts[event["subscription_id"]] = epoch(event["occurred_at"])
            owner[event["subscription_id"]] = event["account_id"]
        elif kind == "subscription.canceled":
            assert event["subscription_id"] not in ends, "subscription canceled twice"
            ends[event["subscription_id"]] = epoch(event.get("effective_at") or event["occurred_at"])
    intervals: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for sub_id, start in starts.items():
        intervals[owner[sub_id]].append((start, ends.get(sub_id, 2**62)))
    spans: dict[str, list[tuple[int, int]]] = {}
    for account, items in intervals.items():
        merged: list[tuple[int, int]] = []
        for start, end in sorted(items):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        spans[account] = merged
    return spans


def test_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    config = SimulationConfig(accounts=12, months=2, seed=3)
    first = write_simulation(config, tmp_path / "a.jsonl.gz")
    second = write_simulation(config, tmp_path / "b.jsonl.gz")
    other = write_simulation(SimulationConfig(accounts=12, months=2, seed=4), tmp_path / "c.jsonl.gz")
    assert first.events_path.read_bytes() == second.events_path.read_bytes()
    assert first.truth_path.read_bytes() == second.truth_path.read_bytes()
    assert first.events_path.read_bytes() != other.events_path.read_bytes()
    assert first.truth_path == tmp_path / "a.truth.json"


def test_gzip_and_plain_output_hold_the_same_lines(tmp_path: Path) -> None:
    config = SimulationConfig(accounts=8, months=1, seed=2)
    write_simulation(config, tmp_path / "e.jsonl.gz")
    write_simulation(config, tmp_path / "e.jsonl")
    assert gzip.decompress((tmp_path / "e.jsonl.gz").read_bytes()) == (tmp_path / "e.jsonl").read_bytes()


def test_every_event_follows_the_contract(year: tuple[list[Event], dict[str, Any]]) -> None:
    events, _ = year
    bad = [(event, problems) for event in events if (problems := contract_problems(event))]
    assert not bad[:5]
    assert len({event["event_id"] for event in events}) == len(events)


def test_events_come_in_nondecreasing_event_time(
    year: tuple[list[Event], dict[str, Any]],
) -> None:
    times = [epoch(event["occurred_at"]) for event in year[0]]
    assert all(a <= b for a, b in pairwise(times))
    assert times[-1] < YEAR.end_ts


def test_the_portfolio_covers_the_product(year: tuple[list[Event], dict[str, Any]]) -> None:
    events, truth = year
    state = [e for e in events if e["event_type"] in SUBSCRIPTION_STATE]
    assert {e["interval"] for e in state} == {"week", "month", "year"}
    assert any(e["interval_count"] == 3 for e in state)
    assert {e["currency"] for e in state} == {"USD", "EUR", "GBP"}
    assert {e["plan"] for e in state} >= {"starter", "team", "business", "enterprise"}
    assert any(e["plan"].startswith("addon-") for e in state)
    failed = [e["attempt"] for e in events if e["event_type"] == "subscription.payment_failed"]
    assert set(failed) == {1, 2, 3}
    canceled = [e for e in events if e["event_type"] == "subscription.canceled"]
    assert any(epoch(e["effective_at"]) > epoch(e["occurred_at"]) for e in canceled)
    assert any(e.get("effective_at", e["occurred_at"]) == e["occurred_at"] for e in canceled)
    renewed = [e for e in events if e["event_type"] == "subscription.renewed"]
    assert renewed and all(epoch(e["term_end"]) > epoch(e["occurred_at"]) for e in renewed)
    types = Counter(e["event_type"] for e in events)
    assert types["ticket.reopened"] > 0 and types["subscription.changed"] > 0
    answers = [e for e in events if e["event_type"] == "survey.answered"]
    assert {e["survey"] for e in answers} == {"nps", "csat", "ces"}
    assert {e.get("context") for e in answers} >= {"support", "onboarding", "product"}
    assert any("comment" in e for e in answers)
    features = {e["feature"] for e in events if e["event_type"] == "usage.recorded"}
    assert len(features) == 12
    assert 0 < truth["summary"]["joined_during_simulation"] < YEAR.accounts
    assert truth["summary"]["reactivated_accounts"] > 0


def test_usage_has_a_weekday_rhythm(year: tuple[list[Event], dict[str, Any]]) -> None:
    by_weekday = Counter(
        datetime.fromisoformat(e["occurred_at"]).weekday()
        for e in year[0]
        if e["event_type"] == "usage.recorded"
    )
    weekday = statistics.mean(by_weekday[d] for d in range(5))
    weekend = statistics.mean(by_weekday[d] for d in (5, 6))
    assert weekday > 4 * weekend > 0


def test_truth_churns_are_when_the_last_subscription_ends(
    year: tuple[list[Event], dict[str, Any]],
) -> None:
    events, truth = year
    spans = paying_spans(events)
    usage_times: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event["event_type"] == "usage.recorded":
            usage_times[event["account_id"]].append(epoch(event["occurred_at"]))
    churned = 0
    for account in truth["accounts"]:
        aid = account["account_id"]
        ends = [end for _, end in spans[aid] if end < YEAR.end_ts]
        assert ends == [epoch(c["at"]) for c in account["churns"]], aid
        restarts = [start for start, _ in spans[aid][1:]]
        assert restarts == [epoch(ts) for ts in account["reactivations"]], aid
        for used in usage_times[aid]:
            assert any(start <= used < end for start, end in spans[aid]), (aid, used)
        churned += bool(ends)
        if account["pending_cancellation"] is not None:
            assert spans[aid][-1][1] == epoch(account["pending_cancellation"]["effective_at"])
    assert churned == truth["summary"]["churned_accounts"] > 5


def test_churners_look_unhealthy_in_the_60_days_before_churn(
    year: tuple[list[Event], dict[str, Any]],
) -> None:
    events, truth = year
    daily_usage: dict[str, Counter[int]] = defaultdict(Counter)
    for event in events:
        if event["event_type"] == "usage.recorded":
            day = (epoch(event["occurred_at"]) - YEAR.start_ts) // 86_400
            daily_usage[event["account_id"]][day] += 1
    before_churn, usage_ratio = [], []
    for account in truth["accounts"]:
        if not account["churns"]:
            continue
        churn_day = (epoch(account["churns"][0]["at"]) - YEAR.start_ts) // 86_400
        if churn_day < 120:
            continue
        weeks = account["health"]["weekly"][(churn_day - 60) // 7 : churn_day // 7]
        before_churn.append(statistics.mean(w for w in weeks if w is not None))
        usage = daily_usage[account["account_id"]]
        earlier = sum(usage[d] for d in range(churn_day - 120, churn_day - 60))
        if earlier:
            usage_ratio.append(sum(usage[d] for d in range(churn_day - 60, churn_day)) / earlier)
    stayers = [a["health"]["mean"] for a in truth["accounts"] if not a["churns"]]
    assert len(before_churn) >= 5
    assert statistics.mean(before_churn) < statistics.mean(stayers) - 0.15
    assert statistics.median(usage_ratio) < 0.85


def test_churn_follows_engagement_too_volume_falls_and_some_healthy_looking_accounts_leave(
    year: tuple[list[Event], dict[str, Any]],
) -> None:
    """Churn is not only low health: disengaging accounts use the product less and less (fewer
    uses per active user-day, fewer valuable features) and leave while their health looks fine."""
    events, truth = year
    day_of = lambda e: (epoch(e["occurred_at"]) - YEAR.start_ts) // 86_400  # noqa: E731
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    user_days: dict[str, set[tuple[int, str]]] = defaultdict(set)
    valuable: dict[str, Counter[int]] = defaultdict(Counter)
    for event in events:
        if event["event_type"] == "usage.recorded":
            aid, day = event["account_id"], day_of(event)
            counts[aid][day] += event["count"]
            user_days[aid].add((day, event["user_id"]))
            valuable[aid][day] += event["feature"] in {
                "api",
                "automation",
                "integrations",
                "reports",
                "alerts",
            }
    stayers = [a["engagement"]["mean"] for a in truth["accounts"] if not a["churns"]]
    before, per_user_ratio, healthy_churners = [], [], 0
    for account in truth["accounts"]:
        if not account["churns"] or account["churns"][0]["kind"] != "voluntary":
            continue
        churn_day = (epoch(account["churns"][0]["at"]) - YEAR.start_ts) // 86_400
        if churn_day < 120:
            continue
        weeks = [
            w
            for w in account["engagement"]["weekly"][(churn_day - 60) // 7 : churn_day // 7]
            if w is not None
        ]
        before.append(statistics.mean(weeks))
        health = [
            w for w in account["health"]["weekly"][(churn_day - 60) // 7 : churn_day // 7] if w is not None
        ]
        healthy_churners += statistics.mean(health) >= 0.55
        aid = account["account_id"]

        def per_user(first: int, last: int, aid: str = aid) -> float | None:
            active = sum(1 for day, _ in user_days[aid] if first <= day < last)
            return sum(counts[aid][d] for d in range(first, last)) / active if active else None

        early, late = per_user(churn_day - 120, churn_day - 60), per_user(churn_day - 60, churn_day)
        if early and late:
            per_user_ratio.append(late / early)
    assert len(before) >= 5
    assert statistics.mean(before) < statistics.mean(stayers) - 0.1  # churners were disengaged
    assert statistics.median(per_user_ratio) < 0.95  # volume per active user-day fell before churn
    assert healthy_churners >= 1  # some churners' hidden health looked fine
    assert sum(valuable[a].total() for a in valuable) > 0


def test_dirty_rate_mixes_in_each_kind_of_bad_record(tmp_path: Path) -> None:
    config = SimulationConfig(accounts=10, months=2, seed=5, dirty_rate=0.05)
    report = write_simulation(config, tmp_path / "dirty.jsonl")
    lines = (tmp_path / "dirty.jsonl").read_bytes().splitlines()
    assert len(lines) == report.lines
    assert set(report.dirty) == set(DIRTY_KINDS)
    assert 0.03 < sum(report.dirty.values()) / len(lines) < 0.07
    broken, invalid = 0, 0
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            broken += 1
            continue
        invalid += bool(contract_problems(event))
    assert broken == report.dirty["invalid_json"]
    rejected = sum(report.dirty.values()) - report.dirty["duplicate_event_id"]
    assert invalid + broken == rejected - report.dirty["very_late"]


def test_clean_output_by_default(tmp_path: Path) -> None:
    report = write_simulation(SimulationConfig(accounts=5, months=1), tmp_path / "c.jsonl")
    assert not report.dirty
    for line in (tmp_path / "c.jsonl").read_bytes().splitlines():
        assert not contract_problems(orjson.loads(line))


def test_truth_file_sits_beside_the_events() -> None:
    assert truth_path_for(Path("out/x.jsonl.gz")) == Path("out/x.truth.json")
    assert truth_path_for(Path("x.jsonl")) == Path("x.truth.json")


def test_config_refuses_bad_values_with_the_value() -> None:
    with pytest.raises(ValueError, match=r"accounts must be 1\.\.1,000,000, got 0"):
        SimulationConfig(accounts=0)
    with pytest.raises(ValueError, match="dirty_rate"):
        SimulationConfig(dirty_rate=0.9)


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--seed", str(2**64), "'--seed': 18446744073709551616 is not in the range"),  # a TypeError
        ("--start", "9999-12-01", "start must be 1990-01-01 .. 9000-01-01"),  # year 10000: a traceback
        ("--start", "0001-01-01", "start must be 1990-01-01"),  # wrote "1-01-22T16:05:22Z", unreadable
        ("--accounts", "100000000000", "'--accounts': 100000000000 is not in the range"),  # built in memory
    ],
)
def test_cli_refuses_options_at_the_edges_in_one_line(
    tmp_path: Path, option: str, value: str, said: str
) -> None:
    result = CliRunner().invoke(
        simulate, [option, value, "--months", "1", "--out", str(tmp_path / "x.jsonl")]
    )
    assert result.exit_code == 2 and said in result.output, result.output
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_writes_both_files_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "cli.jsonl.gz"
    result = CliRunner().invoke(
        simulate,
        ["--accounts", "6", "--months", "1", "--seed", "9", "--out", str(out), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and (tmp_path / "cli.truth.json").exists()
    assert "usage.recorded" in result.output and "churned" in result.output
    truth = orjson.loads((tmp_path / "cli.truth.json").read_bytes())
    assert truth["simulation"]["seed"] == 9
    assert truth["simulation"]["start"] == "2024-01-01T00:00:00Z"
    assert date.fromisoformat(truth["simulation"]["end"][:10]) == date(2024, 2, 1)


def test_every_account_says_who_it_is_once_with_its_first_subscription(
    year: tuple[list[Event], dict[str, Any]],
) -> None:
    events, _ = year
    profiles = [event for event in events if event["event_type"] == "account.updated"]
    accounts = {event["account_id"] for event in events}
    assert sorted(event["account_id"] for event in profiles) == sorted(accounts)
    first = {}
    for event in events:
        first.setdefault(event["account_id"], event)
    for event in profiles:
        assert event["occurred_at"] == first[event["account_id"]]["occurred_at"]
    assert {event["owner"] for event in profiles} <= set(CSMS)
    assert {event["segment"] for event in profiles} == {"smb", "mid-market", "enterprise"}


def test_cli_refuses_an_out_it_cannot_write_before_simulating(tmp_path: Path) -> None:
    """--out /proc/x.jsonl was a traceback once the portfolio was built; --out '' another."""
    cannot = CliRunner().invoke(simulate, ["--accounts", "2", "--months", "1", "--out", "/proc/x/y.jsonl"])
    assert cannot.exit_code == 1 and "cannot create the folder /proc/x" in cannot.output, cannot.output
    empty = CliRunner().invoke(simulate, ["--accounts", "2", "--months", "1", "--out", ""])
    assert empty.exit_code == 2 and "names no file" in empty.output, empty.output
    deeper = tmp_path / "new" / "deeper" / "x.jsonl"
    made = CliRunner().invoke(simulate, ["--accounts", "2", "--months", "1", "--quiet", "--out", str(deeper)])
    assert made.exit_code == 0 and deeper.exists(), made.output


def test_cli_refuses_a_name_too_long_and_a_truth_hard_linked_to_the_events(tmp_path: Path) -> None:
    """A name too long was a traceback (asking whether it is a folder raised); a --truth hard-linked
    to --out passed the check by path, and the truth was written over the events: exit 0."""
    args = ["--accounts", "2", "--months", "1", "--quiet"]
    long_name = tmp_path / ("a" * 300 + ".jsonl")
    too_long = CliRunner().invoke(simulate, [*args, "--out", str(long_name)])
    assert too_long.exit_code == 1 and "File name too long" in too_long.output, too_long.output
    events = tmp_path / "x.jsonl"
    events.write_text("kept\n")
    (tmp_path / "hl.jsonl").hardlink_to(events)
    linked = CliRunner().invoke(
        simulate, [*args, "--out", str(events), "--truth", str(tmp_path / "hl.jsonl")]
    )
    assert linked.exit_code == 2 and "--truth must differ from --out" in linked.output, linked.output
    assert events.read_text() == "kept\n"


def test_a_run_that_fails_part_way_leaves_the_files_as_they_were(tmp_path: Path, monkeypatch: Any) -> None:
    """An interrupted run left a cut events file that looked whole beside an earlier run's truth;
    a full disk was a traceback. The files are written beside their place and renamed at the end."""
    from streamer.sim import writer

    out = tmp_path / "x.jsonl.gz"
    first = CliRunner().invoke(simulate, ["--accounts", "2", "--months", "1", "--quiet", "--out", str(out)])
    assert first.exit_code == 0, first.output
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def full_disk(*_: Any, **__: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "generate_truth", full_disk)
    failed = CliRunner().invoke(
        simulate, ["--accounts", "3", "--months", "1", "--seed", "9", "--quiet", "--out", str(out)]
    )
    assert failed.exit_code == 1 and "No space left on device" in failed.output, failed.output
    assert "Traceback" not in failed.output
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # no partial file either
