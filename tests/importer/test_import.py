"""`streamer import`: tables -> contract events, exact MRR and churn through the core, errors."""

from __future__ import annotations

import gzip
import random
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer import runfiles
from streamer.backtest.labels import churn_instants
from streamer.cli import main
from streamer.contract.decode import decode_event
from streamer.core.config import ScoreConfig
from streamer.importer import run as run_module
from streamer.importer import usage as usage_module
from streamer.importer.mapping import load_mapping
from streamer.importer.run import Importer
from streamer.importer.usage import UsageAggregator, UsageGrain
from streamer.offline.runner import OfflineRun

from .portfolio import EVENTS, SUBSCRIPTIONS, write_export


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def import_export(tmp_path: Path, *options: str, name: str = "events.jsonl.gz") -> tuple[Path, Result]:
    mapping = write_export(tmp_path / "export")
    out = tmp_path / name
    result = invoke(
        "import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out), *options
    )
    return out, result


def read_events(path: Path) -> list[dict[str, Any]]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [orjson.loads(line) for line in data.splitlines()]


def brief(event: dict[str, Any]) -> tuple[str, ...]:
    """(type, time, subscription id, what else matters) of a subscription event."""
    kind = event["event_type"].removeprefix("subscription.")
    when = event["occurred_at"][:10]
    extra = {
        "started": lambda: (
            f"{event['plan']} {event['amount']}/{event['interval_count']}m seats={event.get('seats')}"
        ),
        "changed": lambda: (
            f"{event['plan']} {event['amount']}/{event['interval_count']}m seats={event.get('seats')}"
        ),
        "renewed": lambda: f"to {event['term_end'][:10]}",
        "canceled": lambda: f"at {event['effective_at'][:10]}",
    }[kind]()
    return kind, when, event["subscription_id"], extra


def test_subscription_rows_become_started_changed_renewed_and_canceled_events(tmp_path: Path) -> None:
    out, result = import_export(tmp_path)
    assert result.exit_code == 0, result.output
    events = read_events(out)
    by_account: dict[str, list[tuple[str, ...]]] = {}
    for event in events:
        if event["event_type"].startswith("subscription."):
            by_account.setdefault(event["account_id"], []).append(brief(event))
    assert by_account["plan-change"] == [
        ("started", "2024-01-01", "plan-change:plan:1", "basic 100/1m seats=5"),
        ("changed", "2024-02-01", "plan-change:plan:1", "pro 250.50/1m seats=10"),
        ("renewed", "2024-03-01", "plan-change:plan:1", "to 2024-04-01"),
        ("canceled", "2024-04-01", "plan-change:plan:1", "at 2024-04-01"),
    ]
    assert sorted(by_account["addons"]) == [
        ("canceled", "2024-04-10", "addons:archive:1", "at 2024-04-10"),
        ("started", "2024-01-10", "addons:archive:1", "archive 10/1m seats=None"),
        ("started", "2024-01-10", "addons:extra:1", "extra 299.94/6m seats=None"),  # 49.99 x 6 months
        ("started", "2024-01-10", "addons:plan:1", "team 1999.98/6m seats=20"),  # 333.33 x 6
    ]
    assert [kind for kind, *_ in by_account["renewals"]] == ["started", *["renewed"] * 4]
    assert by_account["gap"] == [
        ("started", "2024-01-01", "gap:plan:1", "basic 20/1m seats=2"),
        ("canceled", "2024-02-01", "gap:plan:1", "at 2024-02-01"),
        ("started", "2024-02-10", "gap:plan:2", "basic 20/1m seats=2"),
        ("canceled", "2024-03-10", "gap:plan:2", "at 2024-03-10"),
    ]
    assert by_account["canceled"] == [
        ("started", "2024-01-01", "canceled:plan:1", "pro 1199.88/12m seats=3"),
        ("canceled", "2024-03-01", "canceled:plan:1", "at 2024-03-01"),
    ]
    # ends at (or after) the end of the data: no cancellation
    assert by_account["end-of-data"] == [
        ("started", "2024-05-01", "end-of-data:plan:1", "basic 15/1m seats=1")
    ]
    assert by_account["never-used"] == [
        ("started", "2024-01-01", "never-used:plan:1", "basic 30/1m seats=None")
    ]
    # a cancellation is known when it takes effect, not before (no look-ahead for a backtest)
    assert all(
        e["occurred_at"] == e["effective_at"] for e in events if e["event_type"] == "subscription.canceled"
    )


def test_every_event_follows_the_contract_and_the_file_is_sorted_by_event_time(tmp_path: Path) -> None:
    out, _ = import_export(tmp_path)
    lines = gzip.decompress(out.read_bytes()).splitlines()
    for number, line in enumerate(lines):
        decoded = decode_event(line)
        assert not isinstance(decoded, str) and hasattr(decoded, "event_type"), (number, decoded)
    times = [orjson.loads(line)["occurred_at"] for line in lines]
    assert times == sorted(times)
    assert len({orjson.loads(line)["event_id"] for line in lines}) == len(lines)


def test_usage_is_aggregated_per_hour_with_counts_and_the_time_of_the_latest_row(tmp_path: Path) -> None:
    out, result = import_export(tmp_path)
    usage = [
        (e["account_id"], e["occurred_at"], e["feature"], e["user_id"], e["count"])
        for e in read_events(out)
        if e["event_type"] == "usage.recorded"
    ]
    assert sorted(usage) == sorted(
        [
            ("plan-change", "2024-01-02T10:00:00Z", "login", "7", 3),  # 09:00:30, 09:10, 10:00:00
            ("plan-change", "2024-01-02T09:59:59Z", "report", "7", 1),
            ("plan-change", "2024-01-02T10:00:01Z", "login", "7", 1),
            ("addons", "2024-01-11T00:00:00Z", "export", "1", 1),  # midnight: the day before's last bucket
            ("addons", "2024-01-11T00:30:00Z", "export", "1", 1),
            ("renewals", "2024-05-31T23:00:00Z", "report", "0", 1),  # 06-01 00:00:01 is after the data end
            ("gap", "2024-02-20T12:00:00Z", "login", "3", 1),
            ("canceled", "2024-02-01T08:00:00Z", "login", "1", 1),
            ("end-of-data", "2024-05-20T08:00:00Z", "login", "1", 1),
        ]
    )
    assert "usage: 11 rows -> 9 usage.recorded events" in result.output
    assert "left out after the end of the data: 1 rows (events.csv 1)" in result.output


@pytest.mark.parametrize(("grain", "expected"), [("day", 8), ("none", len(EVENTS) - 1)])
def test_usage_grain_day_and_none(tmp_path: Path, grain: str, expected: int) -> None:
    out, result = import_export(tmp_path, "--usage-grain", grain)
    usage = [e for e in read_events(out) if e["event_type"] == "usage.recorded"]
    assert len(usage) == expected, result.output
    assert sum(e["count"] for e in usage) == len(EVENTS) - 1


def test_importing_again_gives_the_same_bytes(tmp_path: Path) -> None:
    first, _ = import_export(tmp_path, name="a.jsonl.gz")
    second, _ = import_export(tmp_path, name="b.jsonl.gz")
    assert first.read_bytes() == second.read_bytes()


def replay_timelines(path: Path) -> dict[str, list[tuple[int, int]]]:
    run = OfflineRun(ScoreConfig(), 4)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    summary = run.feed(
        iter(lines),
        on_snapshot=lambda _: None,
        on_alert=lambda _: None,
        on_dead_letter=lambda _: None,
        source=str(path),
    )
    assert summary.rejected == 0
    return {aid: list(a.revenue.timeline) for engine in run.engines for aid, a in engine.accounts.items()}


def day_ms(text: str) -> int:
    from datetime import UTC, datetime

    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_the_core_gets_each_rows_mrr_exactly_and_churn_where_the_rows_stop(tmp_path: Path) -> None:
    out, _ = import_export(tmp_path)
    timelines = replay_timelines(out)
    micros = 1_000_000
    assert timelines["addons"] == [
        (day_ms("2024-01-10"), int(Decimal("393.32") * micros)),  # 333.33 + 49.99 + 10: exact
        (day_ms("2024-04-10"), int(Decimal("383.32") * micros)),  # the add-on dropped
    ]
    assert timelines["plan-change"] == [
        (day_ms("2024-01-01"), 100 * micros),
        (day_ms("2024-02-01"), int(Decimal("250.50") * micros)),
        (day_ms("2024-04-01"), 0),
    ]
    assert timelines["canceled"] == [
        (day_ms("2024-01-01"), int(Decimal("99.99") * micros)),
        (day_ms("2024-03-01"), 0),
    ]
    churns = {aid: churn_instants(timeline) for aid, timeline in timelines.items()}
    assert churns == {
        "plan-change": [day_ms("2024-04-01")],
        "addons": [],
        "renewals": [],
        "gap": [day_ms("2024-02-01"), day_ms("2024-03-10")],
        "canceled": [day_ms("2024-03-01")],
        "end-of-data": [],
        "never-used": [],
    }


def test_streamer_offline_on_the_output_gives_each_accounts_mrr(tmp_path: Path) -> None:
    out, _ = import_export(tmp_path)
    result = invoke("offline", str(out), "--out", str(tmp_path / "scored"), "--sort", "--quiet")
    assert result.exit_code == 0, result.output
    accounts = {
        a["account_id"]: a
        for a in map(orjson.loads, (tmp_path / "scored" / "accounts.jsonl").read_bytes().splitlines())
    }
    assert {aid: a["mrr"] for aid, a in accounts.items()} == {
        "plan-change": "0.00",
        "addons": "383.32",
        "renewals": "10.00",
        "gap": "0.00",
        "canceled": "0.00",
        "end-of-data": "15.00",
        "never-used": "30.00",
    }
    churned = {aid for aid, a in accounts.items() if a["lifecycle_stage"] == "churned"}
    assert churned == {"plan-change", "gap", "canceled"}
    assert not (tmp_path / "scored" / "deadletter.jsonl").read_bytes()


def test_the_accounts_table_gives_each_account_its_profile_at_its_first_subscription_event(
    tmp_path: Path,
) -> None:
    out, result = import_export(tmp_path)
    assert result.exit_code == 0, result.output
    events = read_events(out)
    profiles = {e["account_id"]: e for e in events if e["event_type"] == "account.updated"}
    first = {}
    for event in events:  # the file is sorted by event time
        if event["event_type"].startswith("subscription."):
            first.setdefault(event["account_id"], event["occurred_at"])
    # "never-used" has only empty profile values: no profile; an empty country is no attribute
    assert set(profiles) == set(first) - {"never-used"}
    assert {aid: e["occurred_at"] for aid, e in profiles.items()} == {aid: first[aid] for aid in profiles}
    shown = {aid: (e["name"], e["segment"], e.get("attributes")) for aid, e in profiles.items()}
    assert shown["addons"] == ("Addons Inc", "enterprise", None)
    assert shown["gap"] == ("Gap Inc", "smb", {"country": "US"})
    assert all("owner" not in e and "tier" not in e for e in profiles.values())
    assert "account.updated 6" in result.output
    # through streamer offline: every account's snapshot says who it is
    scored = invoke("offline", str(out), "--out", str(tmp_path / "scored"), "--sort", "--quiet")
    assert scored.exit_code == 0, scored.output
    snapshots = map(orjson.loads, (tmp_path / "scored" / "accounts.jsonl").read_bytes().splitlines())
    who = {s["account_id"]: s["profile"] for s in snapshots}
    assert who["gap"] == {
        "name": "Gap Inc",
        "owner": None,
        "segment": "smb",
        "tier": None,
        "attributes": {"country": "US"},
    }
    assert who["never-used"] is None


def test_a_profile_is_dated_at_the_first_product_event_when_use_comes_before_paying(tmp_path: Path) -> None:
    """A trial: "renewals" uses the product from 2024-01-10, pays from 01-15; "prospect" uses it and
    never pays. Each one's snapshots from its first use on carry its profile."""
    events = [
        *EVENTS,
        ("renewals", "2024-01-10 08:30:00", "0", "1"),
        ("prospect", "2024-02-03 12:00:00", "1", "2"),
    ]
    mapping = write_export(tmp_path / "export", events=events)
    accounts = tmp_path / "export" / "accounts.csv"
    accounts.write_text(accounts.read_text() + "prospect,Prospect Inc,smb,\n")
    out = tmp_path / "o.jsonl"
    result = invoke("import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out))
    assert result.exit_code == 0, result.output
    profiles = {e["account_id"]: e for e in read_events(out) if e["event_type"] == "account.updated"}
    assert profiles["renewals"]["occurred_at"] == "2024-01-10T08:30:00Z"
    assert profiles["prospect"]["occurred_at"] == "2024-02-03T12:00:00Z"
    first_usage = next(e for e in read_events(out) if e["account_id"] == "renewals")
    assert first_usage["event_type"] == "account.updated"  # before its usage event of that hour


def test_an_account_listed_twice_is_one_account_unless_the_two_rows_differ(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    accounts = tmp_path / "export" / "accounts.csv"
    accounts.write_text(accounts.read_text() + "gap,Gap Inc,smb,US\n")
    out = tmp_path / "o.jsonl"
    result = invoke("import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "(7 in the account table)" in result.output
    accounts.write_text(accounts.read_text() + "gap,Gap Corp,smb,US\n")
    result = CliRunner().invoke(
        main, ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "accounts.csv:10: id 'gap' is on line 5 already, with other values" in result.output


def test_the_fightchurn_preset_makes_the_channel_the_segment(tmp_path: Path) -> None:
    result = invoke("import", "--show-preset", "fightchurn")
    assert 'segment = "channel"' in result.output and 'country = "country"' in result.output


# -- errors -------------------------------------------------------------------------------------


def test_a_bad_row_stops_the_import_with_file_line_and_value(tmp_path: Path) -> None:
    rows = [
        *SUBSCRIPTIONS[:3],
        ("gap", "basic", "2024-01-01", "2022-13-01", "20", "2", "1"),
        *SUBSCRIPTIONS[3:],
    ]
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    result = CliRunner().invoke(
        main,
        ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o.jsonl")],
    )
    assert result.exit_code == 1
    assert "subs.csv.gz:5: end_date '2022-13-01' is not a date" in result.output
    assert "--skip-bad-rows" in result.output
    assert not (tmp_path / "o.jsonl").exists()


def test_skip_bad_rows_counts_them_and_imports_the_rest(tmp_path: Path) -> None:
    rows = [
        *SUBSCRIPTIONS,
        ("gap", "basic", "2024-01-01", "2022-13-01", "20", "2", "1"),
        ("nobody", "basic", "2024-01-01", "2024-02-01", "20", "2", "1"),
        ("gap", "basic", "2024-01-01", "2024-02-01", "-3", "2", "1"),
    ]
    events = [*EVENTS, ("gap", "yesterday", "0", "1"), ("gap", "2024-02-02 10:00:00", "9", "1")]
    mapping = write_export(tmp_path / "export", subscriptions=rows, events=events)
    out = tmp_path / "o.jsonl"
    result = invoke(
        "import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out), "--skip-bad-rows"
    )
    assert result.exit_code == 0, result.output
    assert "skipped bad rows: 5" in result.output
    for message in (
        "end_date '2022-13-01' is not a date",
        "account_id 'nobody' is not in accounts.csv",
        "mrr '-3' must be a number >= 0",
        "event_time 'yesterday' is not a timestamp",
        "event_type_id '9' is not in event_types.csv",
    ):
        assert message in result.output
    # the row whose end date cannot be read may have covered anything: 'gap' is left out
    assert "accounts left out: 1, whose skipped subscription rows" in result.output
    assert "and their 1 product-event rows: gap" in result.output
    clean, _ = import_export(tmp_path)
    assert read_events(out) == [e for e in read_events(clean) if e["account_id"] != "gap"]


def test_skip_bad_rows_also_skips_rows_with_another_number_of_fields_than_the_header(tmp_path: Path) -> None:
    # an unquoted comma in "1,100" would shift every value after it: mrr read as 1
    shifted = ("never-used", "basic", "2024-01-01", "2024-06-01", "1", "100", "", "1")
    rows = [*SUBSCRIPTIONS[:2], ("short", "basic"), *SUBSCRIPTIONS[2:], shifted]
    events = [*EVENTS[:1], ("gap",), *EVENTS[1:]]
    mapping = write_export(tmp_path / "export", subscriptions=rows, events=events)
    out = tmp_path / "o.jsonl"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    stopped = CliRunner().invoke(main, args)
    assert stopped.exit_code == 1
    assert "subs.csv.gz:4: 2 fields, expected 7 as in the header (--skip-bad-rows skips" in stopped.output
    result = invoke(*args, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "skipped bad rows: 3" in result.output
    assert "subs.csv.gz:4: 2 fields, expected 7 as in the header" in result.output
    assert f"subs.csv.gz:{len(rows) + 1}: 8 fields, expected 7 as in the header" in result.output
    assert "events.csv:3: 1 field, expected 4 as in the header" in result.output
    # what the shifted row held cannot be told: its account is left out ('short' is no account)
    assert "accounts left out: 1, whose skipped subscription rows" in result.output
    clean, _ = import_export(tmp_path)
    assert read_events(out) == [e for e in read_events(clean) if e["account_id"] != "never-used"]


def test_usage_errors_exit_with_code_2(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    folder, out = str(tmp_path / "export"), str(tmp_path / "o.jsonl")
    runner = CliRunner()
    neither = runner.invoke(main, ["import", folder, "--out", out])
    assert neither.exit_code == 2 and "exactly one of --preset NAME or --mapping FILE" in neither.output
    column = runner.invoke(
        main,
        ["import", folder, "--mapping", str(mapping), "--out", out, "--column", "subscriptions.mrr=amount"],
    )
    assert column.exit_code == 2
    assert "subs.csv.gz: no column 'amount' (subscriptions.mrr) (columns: account_id," in column.output
    assert "Usage:" not in column.output  # the command line is right; the table is not what it names
    semicolons = tmp_path / "export" / "events.csv"
    semicolons.write_text(semicolons.read_text().replace(",", ";"))
    separated = runner.invoke(main, ["import", folder, "--mapping", str(mapping), "--out", out])
    assert separated.exit_code == 2
    assert "the header looks separated by ';': the tables must be comma-separated CSV" in separated.output
    typo = runner.invoke(
        main, ["import", folder, "--mapping", str(mapping), "--out", out, "--column", "subscriptions.mmr=x"]
    )
    assert typo.exit_code == 2
    assert "subscriptions.mmr: Extra inputs are not permitted (did you mean 'mrr'?)" in typo.output
    date = runner.invoke(
        main, ["import", folder, "--mapping", str(mapping), "--out", out, "--data-end", "soon"]
    )
    assert date.exit_code == 2 and "'soon'" in date.output


def test_data_end_latest_start_and_latest_seen(tmp_path: Path) -> None:
    # latest-start: 2024-05-15 (the last renewal); 'renewals' ends 06-15: running, while
    # 'end-of-data' (05-01 .. 06-01) started before it and ended after: running as well
    out, result = import_export(tmp_path, "--data-end", "latest-start")
    assert "end of the data: 2024-05-15T00:00:00Z (latest-start" in result.output
    # latest-seen: the latest product event (2024-06-01 00:00:01): 'end-of-data' ends before it
    out, result = import_export(tmp_path, "--data-end", "latest-seen", name="seen.jsonl")
    assert "end of the data: 2024-06-01T00:00:01Z (latest-seen" in result.output
    canceled = [e["account_id"] for e in read_events(out) if e["event_type"] == "subscription.canceled"]
    assert "end-of-data" in canceled and "never-used" in canceled


def test_the_fightchurn_preset_reads_its_layout(tmp_path: Path) -> None:
    result = invoke("import", "--show-preset", "fightchurn")
    assert 'file = "subscription.csv.gz"' in result.output and 'data_end = "latest-start"' in result.output


def test_progress_goes_to_stderr_only_when_asked(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    command = [
        "import",
        str(tmp_path / "export"),
        "--mapping",
        str(mapping),
        "--out",
        str(tmp_path / "o.jsonl"),
    ]
    quiet = CliRunner().invoke(main, command)
    assert "reading events.csv" not in quiet.output
    shown = CliRunner().invoke(main, [*command, "--progress"])
    assert "reading events.csv: 12 rows (100%)" in shown.stderr
    assert "reading" not in shown.stdout


def test_the_summary_says_what_a_user_may_not_have_meant(tmp_path: Path) -> None:
    """A table with only its header, an add-on catalogue the mapping names that is not there,
    and an export date long after the data: each is imported as asked, and the summary says so.
    (Without the catalogue the add-ons 'extra' and 'archive' are plans starting on the day plan
    'team' does: two plans at once, bad rows that say where the catalogue was looked for.)"""
    mapping = write_export(tmp_path / "export", events=[])
    (tmp_path / "export" / "addons.csv").unlink()
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o.jsonl")]
    stopped = invoke(*args, "--data-end", "2030-01-01")
    assert stopped.exit_code == 1
    assert "listed under subscriptions.addon_products or in addons.csv, which is not in" in stopped.output
    result = invoke(*args, "--data-end", "2030-01-01", "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "skipped bad rows: 2" in result.output and "accounts left out: 1," in result.output
    assert "events.csv 0" in result.output
    assert "no addons.csv in the folder: only the mapping's addon_products are add-ons" in result.output
    assert (
        "note: the end of the data is 2,057 days after the latest subscription start or product"
        in result.output
    )
    _, plain = import_export(tmp_path / "full")  # the export date just after the last event
    assert "note: the end of the data" not in plain.output and "no addons.csv" not in plain.output


def test_a_header_with_a_terminal_escape_is_shown_escaped(tmp_path: Path) -> None:
    """The columns of a table without a needed one were printed raw: a header's escape sequence
    reached the terminal (and set its title)."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    header, rest = events.read_text().split("\n", 1)
    events.write_text(header.replace(header.split(",")[0], "acct\x1b]0;PWNED\x07", 1) + "\n" + rest)
    done = CliRunner().invoke(
        main, ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o")]
    )
    assert done.exit_code == 2 and "(columns: 'acct\\x1b]0;PWNED\\x07', " in done.output, done.output
    assert "\x1b" not in done.output and "\x07" not in done.output


def test_a_missing_column_names_only_the_first_columns_of_a_wide_header(tmp_path: Path) -> None:
    """A header of a million columns missing a mapped one was printed whole: 8.9 MB on one line."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    others = ",".join(f"c{i}" for i in range(100_000))
    events.write_text(f"account_id,event_time,evnt,user_id,{others}\n")
    done = CliRunner().invoke(
        main, ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o")]
    )
    assert done.exit_code == 2, done.output
    assert "(columns: account_id, event_time, evnt, user_id, c0, c1, " in done.output
    assert ", c15 and 99,984 more); map the right one" in done.output
    assert len(done.output) < 1000


def test_two_rows_of_one_product_at_once_are_a_bad_row_not_a_change(tmp_path: Path) -> None:
    """An account pays 10 + 20 for basic in January; the second row read as a change of the
    first, and the import wrote MRR 20, silently. Now: a bad row naming both lines; skipped,
    the account is left out (its MRR would be lower), the others are imported."""
    rows = [
        ("renewals", "basic", "2024-01-01", "", "10", "1", "1"),
        ("renewals", "basic", "2024-01-01", "", "20", "1", "1"),
        ("gap", "basic", "2024-01-05", "", "20", "2", "1"),
        ("canceled", "basic", "2024-01-01", "2024-02-01", "30", "1", "1"),
        ("canceled", "basic", "2024-01-10", "2024-03-01", "30", "1", "1"),  # starts inside the first
        ("canceled", "pro", "2024-01-20", "2024-03-01", "90", "1", "1"),  # another plan: a change
    ]
    mapping = write_export(tmp_path / "export", subscriptions=rows, events=[])
    out = tmp_path / "o.jsonl"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    refused = invoke(*args)
    assert refused.exit_code != 0
    said = "subs.csv.gz:3: product 'basic' starts on 2024-01-01, while the row at subs.csv.gz:2 of the same"
    assert f"{said} account and product runs with no end" in refused.output, refused.output
    skipped = invoke(*args, "--skip-bad-rows")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped bad rows: 2" in skipped.output and "accounts left out: 2" in skipped.output
    assert {event["account_id"] for event in read_events(out)} == {"gap"}


def many_usage_rows(count: int, seed: int = 3) -> list[tuple[str, ...]]:
    """Product-event rows of the portfolio's accounts in a random order: many share an hour,
    user and feature, and the same instant."""
    rng = random.Random(seed)
    accounts = ["plan-change", "addons", "gap", "canceled", "end-of-data", "renewals"]
    rows = []
    for _ in range(count):
        day, hour, minute, second = (
            rng.randrange(1, 28),
            rng.choice([0, 9]),
            rng.choice([0, 7, 59]),
            rng.choice([0, 1]),
        )
        at = f"2024-01-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        rows.append((rng.choice(accounts), at, rng.choice("012"), rng.choice("0127")))
    return rows


@pytest.mark.parametrize("grain", ["hour", "day", "none"])
def test_usage_spilled_to_runs_on_disk_gives_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grain: str
) -> None:
    rows = [*EVENTS, *many_usage_rows(3000)]
    mapping = write_export(tmp_path / "export", events=rows)
    files = {}
    for name, spill in (("memory", None), ("runs", 7)):
        if spill is not None:  # a run every 7 aggregates, merged 3 at a time
            monkeypatch.setattr(usage_module, "SPILL_AGGREGATES", spill)
            monkeypatch.setattr(runfiles, "MAX_FAN_IN", 3)
        out = tmp_path / name / "events.jsonl"
        result = invoke("import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out),
                        "--usage-grain", grain)  # fmt: skip
        assert result.exit_code == 0, result.output
        files[name] = out.read_bytes()
        assert [path.name for path in out.parent.iterdir()] == ["events.jsonl"], "no run left"
    assert files["runs"] == files["memory"]
    usage = [orjson.loads(line) for line in files["memory"].splitlines() if b"usage.recorded" in line]
    assert len(usage) > 100
    order = [(e["occurred_at"], e["account_id"], e["user_id"], e["feature"]) for e in usage]
    assert order == sorted(order), "usage events by (time, account, user, feature)"


def test_runs_on_disk_are_removed_when_a_bad_usage_row_stops_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_module, "SPILL_AGGREGATES", 5)
    rows = [*EVENTS, *many_usage_rows(300), ("plan-change", "not a time", "0", "7")]
    mapping = write_export(tmp_path / "export", events=rows)
    out = tmp_path / "out" / "events.jsonl"
    result = invoke("import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out))
    assert result.exit_code == 1 and "events.csv:" in result.output, result.output
    assert list(out.parent.iterdir()) == []


def test_an_aggregate_past_the_largest_count_is_split_into_events_the_consumers_admit() -> None:
    aggregator = UsageAggregator(UsageGrain.hour, "events.csv", max_count=3)
    for second in range(8):  # 8 rows in one hour: 3 + 3 + 2
        aggregator.add("acme", "u1", "report", 1_704_186_001_000 + second * 1000, 2 + second)
    aggregator.add("acme", "u1", "login", 1_704_186_001_000, 10)
    events = [item.event for item in aggregator.sorted_events()]
    reports = [event for event in events if event["feature"] == "report"]
    assert [event["count"] for event in reports] == [3, 3, 2]
    assert len({event["event_id"] for event in events}) == len(events) == 4
    whole = UsageAggregator(UsageGrain.hour, "events.csv")
    for second in range(8):
        whole.add("acme", "u1", "report", 1_704_186_001_000 + second * 1000, 2 + second)
    [unsplit] = [item.event for item in whole.sorted_events()]
    assert reports[0]["event_id"] == unsplit["event_id"], "the first part keeps the aggregate's id"
    assert {event["occurred_at"] for event in reports} == {unsplit["occurred_at"]}


def subscription_events_of(out: Path) -> dict[str, list[tuple[str, ...]]]:
    by_account: dict[str, list[tuple[str, ...]]] = {}
    for event in read_events(out):
        if event["event_type"].startswith("subscription."):
            by_account.setdefault(event["account_id"], []).append(brief(event))
    return by_account


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [  # renewed into a row with no end: the term end of 02-01 stayed, "not renewed yet" for good
                ("renewals", "basic", "2024-01-01", "2024-02-01", "10", "1", "1"),
                ("renewals", "basic", "2024-02-01", "", "10", "1", "1"),
            ],
            [("started", "2024-01-01", "basic 10/1m seats=1")],
        ),
        (
            [  # a change of plan at the term end into a row with no end: the same
                ("renewals", "basic", "2024-01-01", "2024-02-01", "10", "1", "1"),
                ("renewals", "pro", "2024-02-01", "", "30", "1", "1"),
            ],
            [
                ("started", "2024-01-01", "basic 10/1m seats=1"),
                ("changed", "2024-02-01", "pro 30/1m seats=1"),
            ],
        ),
        (
            [  # a change of plan mid-term into a row with no end: the running term ends on 02-01 too
                ("renewals", "basic", "2024-01-01", "2024-02-01", "10", "1", "1"),
                ("renewals", "pro", "2024-01-15", "", "30", "1", "1"),
            ],
            [
                ("started", "2024-01-01", "basic 10/1m seats=1"),
                ("changed", "2024-01-15", "pro 30/1m seats=1"),
            ],
        ),
    ],
    ids=["renewed", "changed-at-term-end", "changed-mid-term"],
)
def test_an_open_ended_row_continuing_a_term_renews_each_billing_period_to_the_end_of_the_data(
    tmp_path: Path, rows: list[tuple[str, ...]], expected: list[tuple[str, str, str]]
) -> None:
    """No event takes a term end back: the open-ended row wrote nothing (or a change without a
    term end) and the account read as past its renewal of 02-01 for good ("term ended on
    2024-02-01, not renewed yet", 41 where the same account as one open-ended row scored 62).
    Now the term renews at each period end until one runs past the end of the data, as the same
    history written one row per month would; the offline run gives no term-ended reason."""
    used = [("renewals", f"2024-0{m}-10 09:00:00", "0", "7") for m in (1, 2, 3, 4)]  # moves time on
    mapping = write_export(tmp_path / "export", subscriptions=rows, events=used)
    out = tmp_path / "o.jsonl"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    result = invoke(*args, "--data-end", "2024-04-15")
    assert result.exit_code == 0, result.output
    renewals = [("renewed", f"2024-0{m}-01", f"to 2024-0{m + 1}-01") for m in (2, 3, 4)]
    assert sorted(subscription_events_of(out)["renewals"]) == sorted(
        [(kind, day, "renewals:plan:1", what) for kind, day, what in expected]
        + [(kind, day, "renewals:plan:1", what) for kind, day, what in renewals]
    )
    scored = tmp_path / "scored"
    ran = invoke("offline", str(out), "--sort", "--now", "2024-04-15", "--out", str(scored))
    assert ran.exit_code == 0, ran.output
    snapshot = orjson.loads((scored / "accounts.jsonl").read_bytes().splitlines()[-1])
    assert snapshot["as_of"] >= "2024-04-10"
    reasons = " ".join(reason["message"] for reason in snapshot["reasons"])
    assert "term ended" not in reasons and "renewal in " in reasons, reasons


def test_plan_rows_at_once_are_bad_rows_and_a_change_mid_term_stays_a_change(tmp_path: Path) -> None:
    """A plan row inside another wrote a change and a cancellation at its end (MRR 0 while the
    first plan ran on); two plans from the same day wrote a change at the instant they started
    (MRR of one of them). Both are now bad rows naming both lines, as two rows of one product
    at once are; a plan that starts inside another's term and runs on is still a change."""
    rows: list[tuple[str, ...]] = [
        ("canceled", "pro", "2024-01-01", "2024-06-01", "100", "1", "1"),
        ("canceled", "ent", "2024-02-01", "2024-03-01", "300", "1", "1"),  # inside pro
        ("gap", "pro", "2024-01-01", "2024-03-01", "100", "1", "1"),
        ("gap", "ent", "2024-01-01", "2024-03-01", "300", "1", "1"),  # the same days
        ("plan-change", "basic", "2024-01-01", "2024-03-01", "100", "1", "1"),
        ("plan-change", "pro", "2024-02-01", "2024-04-01", "250", "1", "1"),  # upgrade mid-term
    ]
    mapping = write_export(tmp_path / "export", subscriptions=rows, events=[])
    out = tmp_path / "o.jsonl"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    refused = invoke(*args)
    assert refused.exit_code == 1, refused.output
    assert (
        "subs.csv.gz:3: product 'ent' starts on 2024-02-01 and ends on 2024-03-01, inside the row at "
        "subs.csv.gz:2 of the same account ('pro' until 2024-06-01)"
    ) in refused.output
    skipped = invoke(*args, "--skip-bad-rows")
    assert skipped.exit_code == 0, skipped.output
    assert (
        "subs.csv.gz:5: product 'ent' starts on 2024-01-01, as 'pro' does in the row at subs.csv.gz:4 "
        "of the same account: two plans at once"
    ) in skipped.output
    assert "skipped bad rows: 2" in skipped.output and "accounts left out: 2, " in skipped.output
    assert subscription_events_of(out) == {
        "plan-change": [
            ("started", "2024-01-01", "plan-change:plan:1", "basic 100/1m seats=1"),
            ("changed", "2024-02-01", "plan-change:plan:1", "pro 250/1m seats=1"),
            ("canceled", "2024-04-01", "plan-change:plan:1", "at 2024-04-01"),
        ]
    }


def test_an_addon_named_plan_is_a_line_of_its_own_and_other_ids_stay(tmp_path: Path) -> None:
    """An add-on product named `plan` shared the plan line's key and subscription id: one
    subscription of both, the add-on's cancellation never written, MRR 100 instead of 130."""
    rows: list[tuple[str, ...]] = [
        ("canceled", "pro", "2024-01-01", "2024-03-01", "100", "5", "1"),
        ("canceled", "plan", "2024-01-01", "2024-02-01", "30", "1", "1"),
        ("canceled", "addon=plan", "2024-01-01", "2024-02-01", "7", "1", "1"),
        ("canceled", "extra", "2024-01-01", "2024-02-01", "5", "1", "1"),
    ]
    mapping = write_export(tmp_path / "export", subscriptions=rows, events=[])
    mapping.write_text(
        mapping.read_text().replace(
            'addons_file = "addons.csv"',
            'addons_file = "addons.csv"\naddon_products = ["plan", "addon=plan"]',
        )
    )
    out = tmp_path / "o.jsonl"
    result = invoke("import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(subscription_events_of(out)["canceled"]) == [
        ("canceled", "2024-02-01", "canceled:addon=addon=plan:1", "at 2024-02-01"),
        ("canceled", "2024-02-01", "canceled:addon=plan:1", "at 2024-02-01"),
        ("canceled", "2024-02-01", "canceled:extra:1", "at 2024-02-01"),  # as before
        ("canceled", "2024-03-01", "canceled:plan:1", "at 2024-03-01"),  # as before
        ("started", "2024-01-01", "canceled:addon=addon=plan:1", "addon=plan 7/1m seats=None"),
        ("started", "2024-01-01", "canceled:addon=plan:1", "plan 30/1m seats=None"),
        ("started", "2024-01-01", "canceled:extra:1", "extra 5/1m seats=None"),
        ("started", "2024-01-01", "canceled:plan:1", "pro 100/1m seats=5"),
    ]
    micros = 1_000_000
    assert replay_timelines(_gz(out))["canceled"] == [
        (day_ms("2024-01-01"), 142 * micros),
        (day_ms("2024-02-01"), 100 * micros),
        (day_ms("2024-03-01"), 0),
    ]


def _gz(path: Path) -> Path:
    """A gzipped copy of `path` (`replay_timelines` reads .gz)."""
    zipped = path.with_name(path.name + ".gz")
    zipped.write_bytes(gzip.compress(path.read_bytes()))
    return zipped


def test_spaces_around_ids_dates_and_numbers_are_ignored(tmp_path: Path) -> None:
    """`a1 ` in one table and `a1` in another were two accounts (the first not in the account
    table: a bad row), while ` 100 ` was read as 100 and ` 2024-01-01` was not a date."""
    spaced_subscriptions = [tuple(f" {value} " if value else value for value in row) for row in SUBSCRIPTIONS]
    spaced_events = [tuple(f"  {value}\t" for value in row) for row in EVENTS]
    mapping = write_export(tmp_path / "export", subscriptions=spaced_subscriptions, events=spaced_events)
    types = tmp_path / "export" / "event_types.csv"
    header, rest = types.read_text().split("\n", 1)
    types.write_text(header + "\n" + rest.replace(",", " , "))
    out = tmp_path / "o.jsonl.gz"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    clean, _ = import_export(tmp_path / "clean")
    assert read_events(out) == read_events(clean)


def test_sorting_and_writing_the_events_reports_its_progress_as_reading_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a large import the reading reached 93% and then nothing was shown for as long again,
    while the events were sorted, checked and written."""
    mapping = write_export(tmp_path / "export")
    out = tmp_path / "o.jsonl"
    command = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    shown = CliRunner().invoke(main, [*command, "--progress"])
    assert shown.exit_code == 0, shown.output
    lines = shown.stderr.replace("\r", "\n").splitlines()
    assert lines[-2:] == [
        "sorting and writing o.jsonl: 0 events (0%)",
        "sorting and writing o.jsonl: 36 events (100%)",
    ]
    assert "sorting and writing" not in shown.stdout
    monkeypatch.setattr(run_module, "PROGRESS_EVENTS", 10)
    calls: list[tuple[str, int, float]] = []
    importer = Importer(
        tmp_path / "export", load_mapping(mapping), write_progress=lambda *call: calls.append(call)
    )
    assert importer.run(tmp_path / "again.jsonl").events == 36
    assert [made for _, made, _ in calls] == [0, 10, 20, 30, 36]
    shares = [share for _, _, share in calls]
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares)
    assert {name for name, _, _ in calls} == {"again.jsonl"}


def test_end_dates_written_inclusive_are_warned_of_in_the_summary(tmp_path: Path) -> None:
    """Rows ending on their last day paid (each end the day before the next start) read as a
    churn and a new subscription at every renewal, silently."""
    _, result = import_export(tmp_path / "clean")
    assert result.exit_code == 0 and "inclusive" not in result.output, result.output
    renewing = ("plan-change", "addons", "renewals", "end-of-data")  # gap and canceled stop for good
    inclusive = [
        (*row[:3], (date.fromisoformat(row[3]) - timedelta(days=1)).isoformat(), *row[4:])
        for row in SUBSCRIPTIONS
        if row[0] in renewing
    ]
    mapping = write_export(tmp_path / "export", subscriptions=inclusive)
    done = invoke("import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o"))
    assert done.exit_code == 0, done.output
    assert (
        "warning: 6 of the 9 cancellations are followed by a new subscription of the same account the next "
        "day: are the end dates inclusive (the last day paid)?"
    ) in done.output
