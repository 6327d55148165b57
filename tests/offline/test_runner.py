"""The offline runner and `streamer offline`: outputs, duplicates, dead letters, --sort, gz, determinism."""

from __future__ import annotations

import base64
import gzip
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer.cli import main
from streamer.contract.outputs import Alert, DeadLetter, HealthSnapshot
from streamer.core.config import ScoreConfig
from streamer.offline.runner import UNREADABLE, OfflineRun, merge_order_key, partition_of

OUTPUTS = ("accounts.jsonl", "health.jsonl", "alerts.jsonl", "deadletter.jsonl", "portfolio.json")


def line(event_type: str, account: str, when: str, event_id: str, **fields: Any) -> bytes:
    return orjson.dumps(
        {"event_id": event_id, "event_type": event_type, "account_id": account, "occurred_at": when, **fields}
    )


def start(account: str, when: str, event_id: str, amount: str, **fields: Any) -> bytes:
    state = {"subscription_id": "s1", "plan": "pro", "amount": amount, "currency": "USD", "interval": "month"}
    return line("subscription.started", account, when, event_id, **{**state, **fields})


def use(account: str, when: str, event_id: str, user: str = "u1") -> bytes:
    return line("usage.recorded", account, when, event_id, user_id=user, feature="reports")


STARTED = start("acme", "2024-01-05T09:00:00Z", "a1", "100", seats=5)
VALID = [
    STARTED,
    start("globex", "2024-01-06T09:00:00Z", "g1", "1200", currency="EUR", interval="year"),
    use("acme", "2024-01-06T10:00:00Z", "a2"),
    use("acme", "2024-01-07T10:00:00Z", "a3", "u2"),
    line("survey.answered", "acme", "2024-01-08T10:00:00Z", "a4", survey="nps", score=3, respondent_id="r1"),
    line(
        "subscription.payment_failed", "acme", "2024-01-20T10:00:00Z", "a5", subscription_id="s1", attempt=1
    ),
    line(
        "subscription.canceled",
        "globex",
        "2024-01-25T10:00:00Z",
        "g2",
        subscription_id="s1",
        effective_at="2024-02-15T00:00:00Z",
    ),
    line(
        "subscription.changed",
        "acme",
        "2024-02-02T10:00:00Z",
        "a6",
        subscription_id="s1",
        plan="basic",
        amount="60",
        currency="USD",
        interval="month",
    ),
    line("ticket.opened", "initech", "2024-02-03T10:00:00Z", "i1", ticket_id="t1", priority="urgent"),
    use("acme", "2024-03-02T10:00:00Z", "a7"),
    use("globex", "2024-03-02T12:00:00Z", "g3"),  # both partitions of 2 reach March
]
BAD_JSON = b'{"event_id": "x1", "event_type": '
NOT_OBJECT = b"[1, 2, 3]"
NOT_UTF8 = b"\xff\xfe not text"
JPY = start("umbrella", "2024-03-02T11:00:00Z", "u1", "5000", currency="JPY")
TOO_LATE = use("acme", "2024-02-01T00:00:00Z", "late-1")  # a month behind stream time
# file order: valid events with two duplicates, a blank line and five bad messages in between
LINES = [
    *VALID[:3],
    STARTED,  # duplicate (line 4)
    BAD_JSON,  # line 5
    *VALID[3:7],
    b"",  # blank: skipped
    NOT_OBJECT,  # line 11
    *VALID[7:],
    VALID[-1],  # duplicate (line 16)
    NOT_UTF8,  # line 17
    JPY,  # line 18
    TOO_LATE,  # line 19
]


def write_events(path: Path, lines: list[bytes]) -> Path:
    data = b"".join(item + b"\n" for item in lines)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


def offline(events: Path, out: Path, *args: str) -> Result:
    result = CliRunner().invoke(
        main, ["offline", str(events), "--out", str(out), "--partitions", "2", "--quiet", *args]
    )
    assert result.exit_code == 0, result.output
    return result


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(row) for row in path.read_bytes().splitlines()]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEALTHSTREAM_SCORE_CONFIG", "HEALTHSTREAM_TOPIC_PREFIX", "HEALTHSTREAM_PARTITIONS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    return write_events(tmp_path / "events.jsonl", LINES)


@pytest.fixture
def out(events_file: Path, tmp_path: Path) -> Path:
    target = tmp_path / "out"
    offline(events_file, target)
    return target


def test_all_outputs_are_written(out: Path) -> None:
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert [a["account_id"] for a in jsonl(out / "accounts.jsonl")] == ["acme", "globex", "initech"]
    assert set(orjson.loads((out / "portfolio.json").read_bytes())) == {"currency", "current", "months"}


def test_summary_counts_accepted_duplicates_and_rejected(events_file: Path, tmp_path: Path) -> None:
    result = offline(events_file, tmp_path / "out")
    assert f"{len(LINES)} lines in " in result.output
    assert f"{len(VALID)} accepted, 2 duplicates, 5 rejected" in result.output
    assert "3 accounts (" in result.output


def test_dead_letters_carry_original_topic_offset_and_error(out: Path, events_file: Path) -> None:
    dead = jsonl(out / "deadletter.jsonl")
    for record in dead:
        DeadLetter.model_validate(record)
    by_offset = {record["offset"]: record for record in dead}
    assert sorted(by_offset) == [5, 11, 17, 18, 19]
    bad_json = by_offset[5]
    assert bad_json["original"] == BAD_JSON.decode()
    assert bad_json["encoding"] == "text"
    assert bad_json["topic"] == str(events_file)  # undecodable: no topic family known
    assert bad_json["error"].startswith("not valid JSON")
    assert by_offset[11]["error"] == "the message must be a JSON object (got list)"
    assert by_offset[17]["encoding"] == "base64"
    assert base64.b64decode(by_offset[17]["original"]).rstrip(b"\n") == NOT_UTF8
    jpy = by_offset[18]
    assert jpy["original"] == JPY.decode()
    assert (jpy["topic"], jpy["partition"]) == ("cs.subscriptions", partition_of("umbrella", 2))
    assert "no exchange rate configured for currency 'JPY'" in jpy["error"]
    late = by_offset[19]
    assert (late["topic"], late["partition"]) == ("cs.usage", partition_of("acme", 2))
    assert "too late to fold in" in late["error"]


def test_every_snapshot_and_alert_validates(out: Path) -> None:
    health = jsonl(out / "health.jsonl")
    assert health
    for record in [*health, *jsonl(out / "accounts.jsonl")]:
        HealthSnapshot.model_validate(record)
    alerts = jsonl(out / "alerts.jsonl")
    assert {"nps_detractor", "payment_failed", "scheduled_cancellation", "mrr_contraction"} <= {
        a["rule"] for a in alerts
    }
    for record in alerts:
        Alert.model_validate(record)


def test_final_accounts_and_portfolio(out: Path) -> None:
    accounts = {a["account_id"]: a for a in jsonl(out / "accounts.jsonl")}
    assert accounts["acme"]["mrr"] == "60.00"
    assert accounts["acme"]["plan"] == "basic"
    assert accounts["globex"]["mrr"] == "0.00"
    assert accounts["globex"]["lifecycle_stage"] == "churned"
    assert accounts["initech"]["metrics"]["open_tickets_by_priority"]["urgent"] == 1
    portfolio = orjson.loads((out / "portfolio.json").read_bytes())
    assert [m["month"] for m in portfolio["months"]] == ["2024-01", "2024-02", "2024-03"]
    february = portfolio["months"][1]
    # acme 100 -> 60, globex 108 (1200 EUR a year) -> 0 on Feb 15
    assert (february["start_mrr"], february["end_mrr"]) == ("208.00", "60.00")
    assert february["movements"]["contraction"] == "40.00"
    assert february["movements"]["churn"] == "108.00"
    assert portfolio["current"]["mrr"] == "60.00"


def test_same_input_twice_gives_byte_identical_outputs(events_file: Path, tmp_path: Path) -> None:
    offline(events_file, tmp_path / "first")
    offline(events_file, tmp_path / "second")
    for name in ("accounts.jsonl", "health.jsonl", "alerts.jsonl", "portfolio.json"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name


def test_gzip_input_gives_the_same_results(events_file: Path, out: Path, tmp_path: Path) -> None:
    packed = write_events(tmp_path / "events.jsonl.gz", LINES)
    offline(packed, tmp_path / "from-gz")
    for name in ("accounts.jsonl", "health.jsonl", "alerts.jsonl", "portfolio.json"):
        assert (tmp_path / "from-gz" / name).read_bytes() == (out / name).read_bytes(), name


def test_sort_orders_events_by_occurred_at(tmp_path: Path) -> None:
    # newest first: in file order every event after the first is more than 7 days late
    backwards = write_events(tmp_path / "backwards.jsonl", VALID[::-1])
    result = offline(backwards, tmp_path / "as-is")
    assert f"{len(VALID) - 2} rejected" in result.output
    result = offline(backwards, tmp_path / "sorted", "--sort")
    assert f"{len(VALID)} accepted, 0 duplicates, 0 rejected" in result.output
    assert (tmp_path / "sorted" / "deadletter.jsonl").read_bytes() == b""
    in_order = write_events(tmp_path / "in-order.jsonl", VALID)
    offline(in_order, tmp_path / "in-order")
    for name in ("accounts.jsonl", "alerts.jsonl", "portfolio.json"):
        assert (tmp_path / "sorted" / name).read_bytes() == (tmp_path / "in-order" / name).read_bytes(), name


def test_sort_puts_unreadable_lines_first(tmp_path: Path) -> None:
    """First in the order; its dead letter still names its line in the file (it named its place
    after sorting, 1)."""
    assert merge_order_key((len(VALID), BAD_JSON))[0] == UNREADABLE
    events = write_events(tmp_path / "events.jsonl", [*VALID, BAD_JSON])
    offline(events, tmp_path / "out", "--sort")
    [dead] = jsonl(tmp_path / "out" / "deadletter.jsonl")
    assert (dead["offset"], dead["original"]) == (len(VALID) + 1, BAD_JSON.decode())


def test_sort_gives_a_valid_line_the_quick_reading_cannot_parse_its_own_time(tmp_path: Path) -> None:
    """A lowercase `z` offset and an ignored field holding 1e400 are valid events that neither
    `datetime.fromisoformat` nor orjson reads: sorted first, the latest event would make every
    other one too late."""
    latest = use("acme", "2024-02-01T10:00:00z", "late-z")  # the file's latest event
    padded = orjson.loads(use("acme", "2024-01-31T10:00:00Z", "padded"))
    padded_line = orjson.dumps(padded)[:-1] + b',"pad":1e400}'
    events = write_events(tmp_path / "events.jsonl", [*VALID, padded_line, latest])
    result = offline(events, tmp_path / "sorted", "--sort")
    assert f"{len(VALID) + 2} accepted, 0 duplicates, 0 rejected" in result.output, result.output
    assert (tmp_path / "sorted" / "deadletter.jsonl").read_bytes() == b""


def test_bad_score_config_is_refused(events_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "score.toml"
    config.write_text("[bands]\ngreen = 30\nyellow = 50\n")
    result = CliRunner().invoke(
        main, ["offline", str(events_file), "--out", str(tmp_path / "o"), "--config", str(config), "--quiet"]
    )
    assert result.exit_code != 0
    assert "is invalid" in result.output
    assert "must not exceed bands.green" in result.output
    assert not (tmp_path / "o").exists()


def test_score_config_file_is_used(events_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "score.toml"
    config.write_text("[currency]\nreporting = 'EUR'\n[currency.rates]\nUSD = '0.5'\n")
    offline(events_file, tmp_path / "eur", "--config", str(config))
    accounts = {a["account_id"]: a for a in jsonl(tmp_path / "eur" / "accounts.jsonl")}
    assert (accounts["acme"]["currency"], accounts["acme"]["mrr"]) == ("EUR", "30.00")


def test_runner_api_with_callbacks() -> None:
    snapshots: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    run = OfflineRun(ScoreConfig(), partitions=3)
    summary = run.feed(
        iter(LINES), on_snapshot=snapshots.append, on_alert=alerts.append, on_dead_letter=dead.append
    )
    counts = (summary.lines, summary.accepted, summary.duplicates, summary.rejected)
    assert counts == (len(LINES), len(VALID), 2, 5)
    assert summary.snapshots == len(snapshots) > 0
    assert sum(summary.alerts.values()) == len(alerts)
    assert len(dead) == 5
    assert [a["account_id"] for a in run.accounts()] == ["acme", "globex", "initech"]


def test_base64_original_is_the_message_without_line_ending(out: Path) -> None:
    [record] = [r for r in jsonl(out / "deadletter.jsonl") if r["encoding"] == "base64"]
    assert base64.b64decode(record["original"]) == NOT_UTF8


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_summary_adds_up_with_blank_lines(tmp_path: Path, jobs: str) -> None:
    """Every line is accepted, a duplicate, rejected or a skipped blank one (empty or spaces)."""
    good = {
        "event_type": "usage.recorded",
        "occurred_at": "2024-02-01T10:00:00Z",
        "user_id": "u1",
        "feature": "reports",
    }
    lines = [
        orjson.dumps({**good, "event_id": "e1", "account_id": "a1"}),
        b"",
        orjson.dumps({**good, "event_id": "e2", "account_id": "a2"}),
        b"   ",
        orjson.dumps({**good, "event_id": "e1", "account_id": "a1"}),  # a duplicate
        b"not json",
        b"\x0c\x0b",  # form feed and vertical tab: Python's whitespace, not JSON's
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(
        main, ["offline", str(events), "--out", str(tmp_path / "out"), "--jobs", jobs, "--quiet"]
    )
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("7 lines in "), first
    assert first.endswith(": 2 accepted, 1 duplicates, 2 rejected, 2 blank skipped"), first


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_event_at_the_end_of_time_is_dead_lettered_whatever_now_says(tmp_path: Path, jobs: str) -> None:
    """With `--now` in December 9999 an event of that month passed the bounds, and closing its
    month (January 10000) ended the run in a traceback."""
    last = use("acme", "9999-12-31T12:00:00Z", "end")
    events = write_events(tmp_path / "events.jsonl", [*VALID, last])
    result = offline(events, tmp_path / "out", "--now", "9999-12-31", "--jobs", jobs)
    assert f"{len(VALID)} accepted, 0 duplicates, 1 rejected" in result.output, result.output
    [dead] = jsonl(tmp_path / "out" / "deadletter.jsonl")
    assert dead["error"] == (
        "occurred_at 9999-12-31T12:00:00Z is not before 9000-01-01T00:00:00Z, the latest event time accepted"
    )


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/Adak"])
def test_a_time_without_an_offset_sorts_as_unreadable_in_any_time_zone(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract refuses a time without an offset; `--sort` read it in the machine's time zone
    and placed it by that, so the valid events around it, and the outputs, depended on `TZ`."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        line = b'{"event_type":"usage.recorded","occurred_at":"2024-01-24T20:00:00","account_id":"a"}'
        assert merge_order_key((7, line)) == (UNREADABLE, 0, 7)
        aware = line.replace(b'20:00:00"', b'20:00:00.001+14:00"')
        assert merge_order_key((8, aware)) == (1_706_076_000_001, 1, 8)  # 06:00:00.001Z
    finally:
        monkeypatch.undo()
        time.tzset()
