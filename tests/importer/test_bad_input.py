"""`streamer import` on hostile rows: every event written passes the consumers' checks, and
whatever cannot be imported is a bad row named by file and physical line, found promptly."""

from __future__ import annotations

import csv
import errno
import gzip
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer.cli import main
from streamer.importer.tables import BadRow, read_rows

from .portfolio import EVENTS, SUBSCRIPTIONS, write_export
from .test_import import import_export, read_events

# a row of the 'gap' account that, skipped, leaves the clean import's events unchanged
GOOD = ("gap", "basic", "2024-01-01", "2024-02-01", "20", "2", "1")


def bad_subscription(**changes: str) -> tuple[str, ...]:
    columns = ["account_id", "product", "start_date", "end_date", "mrr", "quantity", "bill_period_months"]
    return tuple(changes.get(column, value) for column, value in zip(columns, GOOD, strict=True))


def run_import(folder: Path, mapping: Path, out: Path, *options: str) -> Result:
    args = ["import", str(folder), "--mapping", str(mapping), "--out", str(out), *options]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def assert_only_clean_events(tmp_path: Path, out: Path, left_out: tuple[str, ...] = ()) -> None:
    """The events of the clean export, less those of the accounts `left_out`."""
    clean, _ = import_export(tmp_path / "clean")
    assert read_events(out) == [e for e in read_events(clean) if e["account_id"] not in left_out]


def assert_imports_as_the_clean_export(tmp_path: Path, mapping: Path) -> None:
    """The export changed in `tmp_path / "export"` imports without a bad row, to the clean one's events."""
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out)
    assert result.exit_code == 0, result.output
    assert_only_clean_events(tmp_path, out)


# The bad row has the dates and product of a good row of the 'gap' account (GOOD): skipped, it
# leaves the account out all the same, as whatever it held cannot be told from the other rows.
REFUSED_ROWS = [
    ({"start_date": "0001-01-01"}, "occurred_at 0001-01-01T00:00:00Z is before 2000-01-01T00:00:00Z"),
    ({"start_date": "1969-12-31"}, "(input.earliest)"),
    ({"end_date": "9999-12-31"}, "field 'term_end' 9999-12-31T00:00:00Z is more than 100 years"),
    ({"start_date": "9999-01-01", "end_date": ""}, "event time must not be in the future"),
    ({"mrr": "0.0000001"}, "field 'amount' of subscription.started: expected a plain decimal"),
    ({"mrr": "99999999999999"}, "at most 12 digits"),
    ({"quantity": "99999999999"}, "field 'seats' of subscription.started: Input should be less than"),
    ({"bill_period_months": "99999999999"}, "field 'interval_count' of subscription.started"),
    ({"bill_period_months": "121"}, "above input.max_interval_count (120)"),
    ({"product": "plan\x1b[31ma"}, "field 'plan' of subscription.started: must not contain control"),
]


@pytest.mark.parametrize(("changes", "reason"), REFUSED_ROWS, ids=[str(c) for c, _ in REFUSED_ROWS])
def test_a_row_whose_event_the_contract_or_the_input_bounds_refuse_is_a_bad_row(
    tmp_path: Path, changes: dict[str, str], reason: str
) -> None:
    rows = [*SUBSCRIPTIONS, bad_subscription(**changes)]
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    out = tmp_path / "o.jsonl"
    stopped = run_import(tmp_path / "export", mapping, out)
    assert stopped.exit_code == 1, stopped.output
    assert f"subs.csv.gz:{len(rows) + 1}: " in stopped.output and reason in stopped.output
    assert not out.exists()
    skipped = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped bad rows: 1" in skipped.output and reason in skipped.output
    assert "accounts left out: 1," in skipped.output
    assert_only_clean_events(tmp_path, out, ("gap",))


@pytest.mark.parametrize(
    ("events", "lookup_names", "reason"),
    [
        ([("gap", "2024-02-20 12:00:00", "0", "u\x00")], {}, "field 'user_id' of usage.recorded"),
        ([("gap", "2024-02-20 12:00:00", "3", "3")], {"3": "lo\u202egin"}, "field 'feature'"),
        ([("gap", "1999-12-31 23:59:59", "0", "3")], {}, "(input.earliest)"),
        ([("gap", "0001-01-01T00:30:00+01:00", "0", "3")], {}, "event_time '0001-01-01T00:30:00+01:00'"),
        ([("gap", "9999-12-31T23:30:00-01:00", "0", "3")], {}, "event_time '9999-12-31T23:30:00-01:00'"),
    ],
)
def test_a_product_event_the_contract_or_the_bounds_refuse_is_a_bad_row_not_a_crash(
    tmp_path: Path, events: list[tuple[str, ...]], lookup_names: dict[str, str], reason: str
) -> None:
    mapping = write_export(tmp_path / "export", events=[*EVENTS, *events])
    if lookup_names:
        types = tmp_path / "export" / "event_types.csv"
        types.write_text(types.read_text() + "".join(f"{k},{v}\n" for k, v in lookup_names.items()))
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "skipped bad rows: 1" in result.output
    assert f"events.csv:{len(EVENTS) + 2}: " in result.output and reason in result.output
    assert_only_clean_events(tmp_path, out)


def test_an_event_whose_lookup_row_was_refused_says_so_rather_than_that_the_code_is_missing(
    tmp_path: Path,
) -> None:
    """An event code whose name the lookup table gives empty was reported as "not in" the table,
    whose line with it had just been refused: the two errors now point at each other."""
    mapping = write_export(tmp_path / "export", events=[*EVENTS, ("gap", "2024-02-20 12:00:00", "4", "3")])
    types = tmp_path / "export" / "event_types.csv"
    types.write_text(types.read_text() + "4,\n")
    lookup_line = len(types.read_text().splitlines())
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl", "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "skipped bad rows: 2" in result.output, result.output
    assert f"event_types.csv:{lookup_line}: " in result.output and "is empty" in result.output
    assert f"events.csv:{len(EVENTS) + 2}: " in result.output
    assert (
        f"'4' has no usable name: its row in event_types.csv (line {lookup_line}) was refused"
        in result.output
    )
    assert "is not in event_types.csv" not in result.output
    assert_only_clean_events(tmp_path, tmp_path / "o.jsonl")


def test_an_event_whose_lookup_row_the_csv_reader_refused_says_so(tmp_path: Path) -> None:
    """A lookup row the CSV reader refused (an extra field) made each event of its code say the
    code "is not in" the table; a refused row of the accounts table was already named."""
    mapping = write_export(tmp_path / "export", events=[*EVENTS, ("gap", "2024-02-20 12:00:00", "3", "3")])
    types = tmp_path / "export" / "event_types.csv"
    types.write_text(types.read_text() + "3,export,extra\n")
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl", "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "  event_types.csv:5: 3 fields, expected 2 as in the header\n" in result.output
    said = "event_type_id '3' has no usable name: its row in event_types.csv (line 5) was refused"
    assert f"  events.csv:{len(EVENTS) + 2}: {said}\n" in result.output
    assert "is not in event_types.csv" not in result.output
    assert_only_clean_events(tmp_path, tmp_path / "o.jsonl")


@pytest.mark.parametrize(
    ("mrr", "amount"), [("100.00000000", "300"), ("33.33330000", "99.9999"), ("29.00", "87.00")]
)
def test_an_exact_mrr_with_trailing_zeros_past_six_places_is_written_without_them(
    tmp_path: Path, mrr: str, amount: str
) -> None:
    """A NUMERIC(18,8) export writes 100.00000000: it was refused as not a plain decimal of at
    most 6 places, though it is exactly 100."""
    rows = [*SUBSCRIPTIONS]
    rows[0] = ("plan-change", "basic", "2024-01-01", "2024-02-01", mrr, "5", "3")
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out)
    assert result.exit_code == 0, result.output
    started = next(e for e in read_events(out) if e["account_id"] == "plan-change" and "amount" in e)
    assert started["amount"] == amount


def test_an_mrr_with_more_than_six_places_that_are_not_zeros_is_still_refused(tmp_path: Path) -> None:
    rows = [*SUBSCRIPTIONS]
    rows[0] = ("plan-change", "basic", "2024-01-01", "2024-02-01", "100.00000010", "5", "1")
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert result.exit_code == 1 and "subs.csv.gz:2: " in result.output, result.output
    assert "(got '100.0000001')" in result.output


def test_amounts_in_exponent_notation_are_written_as_plain_decimals(tmp_path: Path) -> None:
    rows = [*SUBSCRIPTIONS]
    rows[0] = ("plan-change", "basic", "2024-01-01", "2024-02-01", "1E+2", "5", "3")
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out)
    assert result.exit_code == 0, result.output
    events = read_events(out)
    started = next(e for e in events if e["account_id"] == "plan-change" and "amount" in e)
    assert started["amount"] == "300"


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({"bill_period_months": "1e9999999"}, "bill_period_months '1e9999999'"),
        ({"quantity": "1e99999999"}, "quantity '1e99999999'"),
        ({"quantity": "1e999999"}, "quantity '1e999999'"),
        ({"quantity": "9" * 5000}, "quantity '99999"),
        ({"mrr": "1e999999999"}, "mrr '1e999999999'"),
        ({"mrr": "1" * 5000}, "mrr '11111"),
    ],
)
def test_huge_numbers_are_bad_rows_found_at_once(tmp_path: Path, changes: dict[str, str], shown: str) -> None:
    rows = [*SUBSCRIPTIONS, bad_subscription(**changes)]
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "skipped bad rows: 1" in result.output
    assert f"subs.csv.gz:{len(rows) + 1}: {shown}" in result.output
    assert_only_clean_events(tmp_path, out, ("gap",))


def test_a_gzip_file_cut_inside_its_header_is_a_one_line_file_error(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    subs = tmp_path / "export" / "subs.csv.gz"
    subs.write_bytes(subs.read_bytes()[:15])
    result = CliRunner().invoke(
        main, ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert "subs.csv.gz: cannot read it as CSV: the gzip stream ends early (truncated file?)" in result.output
    assert "Aborted" not in result.output


def test_a_plain_file_named_gz_says_so_as_streamer_offline_does(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    subs = tmp_path / "export" / "subs.csv.gz"
    subs.write_bytes(gzip.decompress(subs.read_bytes()))
    result = CliRunner().invoke(
        main, ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert "subs.csv.gz: cannot read it as CSV: not a gzip file (name it .csv, or gzip it)" in result.output


# -- where a problem is -------------------------------------------------------------------------


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    events.write_bytes(b"\xef\xbb\xbf" + events.read_bytes())
    assert_imports_as_the_clean_export(tmp_path, mapping)


def test_bad_rows_are_named_by_their_physical_line_after_quoted_newlines(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    accounts = tmp_path / "export" / "accounts.csv"
    # a country over three lines pushes every later row down a line each
    text = accounts.read_text().replace("never-used,,,\n", 'never-used,,,"a\nb\nc"\n')
    accounts.write_text(text + '"",x,,\n')
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl", "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "accounts.csv:11: id is empty" in result.output


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("line", [3, 701])  # in the header's read-ahead, and deep in the file
def test_an_encoding_error_names_its_line(tmp_path: Path, line: int, end: bytes) -> None:
    """Lines ended by CR alone (old Mac exports) were all line 1 to the error."""
    many = [("gap", f"2024-02-20 12:{minute % 60:02d}:00", "0", "3") for minute in range(1000)]
    mapping = write_export(tmp_path / "export", events=[*EVENTS, *many])
    events = tmp_path / "export" / "events.csv"
    lines = events.read_bytes().splitlines()
    lines[line - 1] = lines[line - 1].replace(b"gap", b"g\xffp").replace(b"plan", b"pl\xffn")
    column = lines[line - 1].index(b"\xff") + 1
    events.write_bytes(end.join(lines) + end)
    result = CliRunner().invoke(
        main, ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert f"events.csv:{line}: cannot read further: not UTF-8" in result.output
    assert f"byte b'\\xff' at column {column})" in result.output


def test_a_field_over_the_csv_size_limit_is_a_bad_row(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    accounts = tmp_path / "export" / "accounts.csv"
    accounts.write_text(accounts.read_text() + f"someone,{'x' * 200_000}\n")
    out = tmp_path / "o.jsonl"
    stopped = run_import(tmp_path / "export", mapping, out)
    assert stopped.exit_code == 1, stopped.output
    assert "accounts.csv:9: a field is longer than" in stopped.output
    skipped = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped bad rows: 1" in skipped.output
    assert_only_clean_events(tmp_path, out)


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ((4, "n/a"), "mrr 'n/a'"),
        # a row over the line limit named no account: kept, with that churn
        ((5, "1" + " " * (2 << 20)), "a line of more than 1,048,576 characters"),
    ],
    ids=["a-bad-value", "over-the-line-limit"],
)
def test_a_skipped_row_inside_a_run_of_renewals_leaves_its_account_out_instead_of_a_churn(
    tmp_path: Path, bad: tuple[int, str], said: str
) -> None:
    renewal = ("renewals", "basic", "2024-02-15", "2024-03-15", "10", "1", "1")
    column, value = bad
    rows = [(*row[:column], value, *row[column + 1 :]) if row == renewal else row for row in SUBSCRIPTIONS]
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert said in result.output
    assert "accounts left out: 1, whose skipped subscription rows would read as a gap" in result.output
    assert "and their 2 product-event rows: renewals" in result.output
    # without it: canceled at 02-15 and started again at 03-15, a churn the tables do not hold
    assert_only_clean_events(tmp_path, out, ("renewals",))


@pytest.mark.parametrize(
    "skipped",
    [
        # the dates reversed: it read as covered by the next row, and the gap before it as a churn
        ("gap", "basic", "2024-02-10", "2024-02-01", "20", "2", "1"),
        # a bad mrr on a row that overlaps a kept row: with a good one it is a conflict, left out
        ("renewals", "basic", "2024-01-20", "2024-03-01", "1O", "1", "1"),
        ("renewals", "basic", "2024-01-15", "2024-02-15", "5O", "1", "1"),
        ("renewals", "basic", "2024-05-20", "2024-07-01", "n/a", "1", "1"),  # past the last term
    ],
    ids=["reversed-dates", "bad-mrr-over-two-terms", "bad-mrr-on-a-kept-term", "bad-mrr-past-the-end"],
)
def test_any_skipped_subscription_row_leaves_its_account_out(
    tmp_path: Path, skipped: tuple[str, ...]
) -> None:
    """A skipped row "covered" by its account's kept rows of the product left the account in:
    with reversed dates that kept a churn the row may fill, and with a bad mrr an MRR without
    the row's, which a good mrr (a conflict: two rows of one product at once) leaves out."""
    mapping = write_export(tmp_path / "export", subscriptions=[*SUBSCRIPTIONS, skipped])
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "skipped bad rows: 1" in result.output
    assert "accounts left out: 1, whose skipped subscription rows" in result.output
    assert_only_clean_events(tmp_path, out, (skipped[0],))


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({"mrr": "1_000"}, "mrr '1_000' is not a number (write digits 0-9"),
        ({"mrr": "\u0661\u0660"}, "mrr '\u0661\u0660' is not a number"),  # Arabic-Indic 10
        ({"quantity": "\uff15"}, "quantity '\uff15' is not a number"),  # a full-width 5
    ],
)
def test_numbers_python_reads_and_a_table_does_not_mean_are_bad_rows(
    tmp_path: Path, changes: dict[str, str], shown: str
) -> None:
    """Decimal("1_000") is 1000 and Arabic-Indic "10" is 10: a spreadsheet's "1_000" is a typo."""
    rows = [*SUBSCRIPTIONS, bad_subscription(**changes)]
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert result.exit_code == 0 and "skipped bad rows: 1" in result.output, result.output
    assert f"subs.csv.gz:{len(rows) + 1}: {shown}" in result.output


def test_a_column_named_twice_and_an_event_type_named_twice_are_refused(tmp_path: Path) -> None:
    """Both were read silently: the first of two `mrr` columns, the last of two names."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    header, rest = events.read_text().split("\n", 1)
    events.write_text(header + ",user_id\n" + rest.replace("\n", ",x\n"))
    twice = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert twice.exit_code != 0 and "events.csv: the header names 'user_id' more than once" in twice.output
    mapping = write_export(tmp_path / "again")
    lookup = tmp_path / "again" / "event_types.csv"
    first_id = lookup.read_text().splitlines()[1].split(",")[0]
    lookup.write_text(lookup.read_text() + f"{first_id},renamed\n")
    renamed = run_import(tmp_path / "again", mapping, tmp_path / "o2.jsonl")
    assert renamed.exit_code != 0 and "is named again ('renamed'; before:" in renamed.output, renamed.output


def test_an_import_that_writes_no_event_fails(tmp_path: Path) -> None:
    """--data-end 0001-01-01 wrote an empty file and exited 0."""
    mapping = write_export(tmp_path / "export")
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl", "--data-end", "0001-01-01")
    assert result.exit_code == 1, result.output
    assert (
        "no event written to" in result.output and "every row is after the end of the data" in result.output
    )
    # the summary said "wrote 0 events to o.jsonl" though no file was written
    assert "wrote 0 events" not in result.output and "o.jsonl was not written" in result.output
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    "refused",
    [
        ("renewals", "basic", "2024-02-15", "2024-03-15", "1", "0", "1", "1"),  # "1,0": an unquoted comma
        ("renewals", "basic", "2024-02-15", "2024-03-15"),  # cut short
    ],
    ids=["too-many", "too-few"],
)
def test_a_subscription_row_with_too_many_fields_leaves_its_account_out(
    tmp_path: Path, refused: tuple[str, ...]
) -> None:
    """The CSV reader's refusals skipped the row without leaving its account out: a churn at
    02-15 and a new subscription at 03-15 that the tables do not hold."""
    renewal = ("renewals", "basic", "2024-02-15", "2024-03-15", "10", "1", "1")
    rows = [refused if row == renewal else row for row in SUBSCRIPTIONS]
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert f"subs.csv.gz:9: {len(refused)} fields, expected 7 as in the header" in result.output
    assert "accounts left out: 1, whose skipped subscription rows would read as a gap" in result.output
    assert_only_clean_events(tmp_path, out, ("renewals",))


def many_events(count: int) -> list[tuple[str, ...]]:
    return [("gap", f"2024-02-2{n % 7} {n % 24:02d}:{n % 60:02d}:00", str(n % 3), "3") for n in range(count)]


@pytest.mark.parametrize(
    ("row", "opened"),
    [
        ('gap,2024-02-20 12:00:00,0,"3\n', 0),  # the quote opens on the row's line
        ('gap,"2024-02-20\n12:00:00",0,"3\n', 1),  # on the next line, after a quoted newline
    ],
    ids=["on-its-line", "after-a-quoted-newline"],
)
@pytest.mark.parametrize("skip", [(), ("--skip-bad-rows",)], ids=["stop", "skip"])
def test_a_quoted_field_never_closed_stops_the_import_naming_the_line_it_opens(
    tmp_path: Path, row: str, opened: int, skip: tuple[str, ...]
) -> None:
    """It swallowed the rest of the file as one bad row (1,500 of 3,000 rows lost, exit 0)."""
    mapping = write_export(tmp_path / "export", events=many_events(3000))
    events = tmp_path / "export" / "events.csv"
    lines = events.read_text().splitlines(keepends=True)
    events.write_text("".join([*lines[:1500], row, *lines[1500:]]))
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out, *skip)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"Error: events.csv:{1501 + opened}: a quoted field opens on this line and is never closed, so the "
        "rest of the file would be its text: close it or remove the stray '\"'"
    ]
    assert not out.exists()


def test_quoted_fields_with_commas_newlines_and_quotes_are_read_as_before(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    accounts = tmp_path / "export" / "accounts.csv"
    accounts.write_text(accounts.read_text().replace("gap,\n", 'gap,"a ""b"",\nc"\n'))
    types = tmp_path / "export" / "event_types.csv"
    types.write_text(types.read_text().replace("1,report", '"1","re,port"'))
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out)
    assert result.exit_code == 0, result.output
    features = {e["feature"] for e in read_events(out) if e["event_type"] == "usage.recorded"}
    assert features == {"login", "re,port", "export"}
    renamed = [e | {"feature": "report"} if e.get("feature") == "re,port" else e for e in read_events(out)]
    clean, _ = import_export(tmp_path / "clean")
    assert [{k: v for k, v in e.items() if k != "event_id"} for e in renamed] == [
        {k: v for k, v in e.items() if k != "event_id"} for e in read_events(clean)
    ]


def test_a_stray_quote_closed_by_a_later_one_is_a_bad_row_naming_the_lines_it_took(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export", events=many_events(30))
    events = tmp_path / "export" / "events.csv"
    lines = events.read_text().splitlines(keepends=True)
    lines[10] = lines[10].replace(",3\n", ',"3\n')
    lines[20] = lines[20].replace(",3\n", ',"3"\n')
    events.write_text("".join(lines))
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl", "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "skipped bad rows: 1" in result.output  # lines 11 to 21, as one row
    assert "events.csv:11: not valid CSV: " in result.output
    assert "(the row runs inside a quoted field to line 21)" in result.output


def test_a_quoted_field_never_closed_in_a_long_table_stops_the_import_at_the_readers_limit(
    tmp_path: Path,
) -> None:
    """Past 131,072 characters the reader's field limit came first: a bad row that took the
    next 4,855 lines of a ChurnSim event table with it, and the import went on (exit 0)."""
    mapping = write_export(tmp_path / "export", events=many_events(6000))
    events = tmp_path / "export" / "events.csv"
    lines = events.read_text().splitlines(keepends=True)
    lines[9] = lines[9].replace(",3\n", ',"3\n')
    events.write_text("".join(lines))
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl", "--skip-bad-rows")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(
        "Error: events.csv:10: a quoted field opens on this line and is not closed within the CSV "
        "reader's 131,072 characters (line "
    ), result.output


def test_skipping_every_subscription_row_says_why_in_its_error(tmp_path: Path) -> None:
    """It said only 'no subscription rows to import', hiding the reason the rows were skipped."""
    mapping = write_export(tmp_path / "export", subscriptions=[bad_subscription(mrr="1,100.00")])
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl", "--skip-bad-rows")
    assert result.exit_code != 0
    assert "subs.csv.gz: no subscription rows to import (1 bad rows skipped, the first: " in result.output
    assert "subs.csv.gz:2: " in result.output and "'1,100.00'" in result.output, result.output


def test_a_table_missing_beside_its_gzipped_copy_says_so(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    mapping.write_text(mapping.read_text().replace('file = "subs.csv.gz"', 'file = "subs.csv"'))
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert result.exit_code != 0
    assert "subs.csv: no such file (but subs.csv.gz is there: name it in the mapping" in result.output


def test_a_missing_column_is_named_by_the_mapping_key_that_names_it(tmp_path: Path) -> None:
    """`product = "plan"` was reported as `subscriptions.addons_column`, whose default is also
    "plan" and which names a column of the add-ons file."""
    mapping = write_export(tmp_path / "export")
    mapping.write_text(mapping.read_text().replace('product = "product"', 'product = "plan"'))
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert result.exit_code != 0
    assert "'plan' (subscriptions.product)" in result.output, result.output


def test_a_stray_quote_swallowing_subscription_rows_leaves_out_every_account_on_its_lines(
    tmp_path: Path,
) -> None:
    """`"basic` on one line closed by `"1` two lines down made one bad row of three: the row of
    'canceled' in between vanished with no account left out (no subscription at all for it,
    a churn that the tables do not hold for 'gap'), and the lines' span was not named."""
    mapping = write_export(tmp_path / "export")
    subs = tmp_path / "export" / "subs.csv.gz"
    lines = gzip.decompress(subs.read_bytes()).decode().splitlines(keepends=True)
    assert lines[13].startswith("gap,basic,2024-02-10") and lines[15].startswith("end-of-data,")
    lines[13] = lines[13].replace(",basic,", ',"basic,')  # line 14: a row of 'gap' opens a quote
    lines[15] = lines[15].replace(",1,1\n", ',1,"1\n')  # line 16 closes it, with text after it
    subs.write_bytes(gzip.compress("".join(lines).encode()))
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    assert "subs.csv.gz:14: not valid CSV: " in result.output
    assert "(the row runs inside a quoted field to line 16): lines 14-16 read as one row" in result.output
    assert "accounts left out: 3, whose skipped subscription rows would read as a gap" in result.output
    assert ": canceled, end-of-data, gap\n" in result.output
    assert_only_clean_events(tmp_path, out, ("canceled", "end-of-data", "gap"))


def test_a_table_that_cannot_be_opened_or_is_a_folder_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreadable table stopped the import with a PermissionError traceback, and a folder in
    its place was "no such file"."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    opened = Path.open

    def refused(path: Path, *args: object, **kwargs: object) -> object:
        if path == events:
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, *args, **kwargs)  # type: ignore[call-overload]

    with monkeypatch.context() as patch:  # chmod 000 does not stop root, who runs the tests here
        patch.setattr(Path, "open", refused)
        denied = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert denied.exit_code == 2, denied.output
    assert denied.output == f"Error: {events}: cannot be read: Permission denied\n"
    events.unlink()
    events.mkdir()
    folder = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert folder.exit_code == 2, folder.output
    assert folder.output == f"Error: {events}: is a folder, not a file\n"


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda data: data[:-8] + bytes([data[-8] ^ 1]) + data[-7:], "its CRC check failed"),
        (lambda data: data + b"garbage", "data after the end of its gzip stream (trailing garbage)"),
    ],
    ids=["crc", "trailing"],
)
def test_a_damaged_gzip_table_says_what_is_damaged(
    tmp_path: Path, damage: Callable[[bytes], bytes], said: str
) -> None:
    """Both were "not a gzip file (name it .csv, or gzip it)", of a file that is one."""
    mapping = write_export(tmp_path / "export")
    subs = tmp_path / "export" / "subs.csv.gz"
    subs.write_bytes(damage(subs.read_bytes()))
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: subs.csv.gz:")
    assert f"cannot read further: the gzip file is damaged: {said}" in result.output
    assert "not a gzip file" not in result.output


def test_a_gzipped_table_named_csv_is_told_to_be_named_gz(tmp_path: Path) -> None:
    """It was "not UTF-8 (invalid start byte: byte b'\\x8b' at column 2)"."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    events.write_bytes(gzip.compress(events.read_bytes()))
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert result.exit_code == 2, result.output
    said = "events.csv: cannot read it as CSV: it looks gzipped (it starts as gzip does): name it .gz"
    assert result.output == f"Error: {said}\n"


def test_a_profile_the_consumers_would_refuse_is_a_bad_row_and_skipped_keeps_the_account(
    tmp_path: Path,
) -> None:
    mapping = write_export(tmp_path / "export")
    accounts = tmp_path / "export" / "accounts.csv"
    accounts.write_text(accounts.read_text().replace("Gap Inc", "Gap\u202eInc"))
    events = tmp_path / "export" / "events.csv"
    kept = events.read_bytes()
    events.write_text("no,such,columns\n")  # refused at once: the product events are not read
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out)
    assert result.exit_code == 1, result.output
    assert "accounts.csv:5: its account.updated event is refused: field 'name'" in result.output
    assert not out.exists()
    events.write_bytes(kept)
    result = run_import(tmp_path / "export", mapping, out, "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    events = read_events(out)
    assert not [e for e in events if e["account_id"] == "gap" and e["event_type"] == "account.updated"]
    assert [e for e in events if e["account_id"] == "gap" and e["event_type"] == "subscription.started"]
    assert "skipped bad rows: 1" in result.output


def test_an_end_of_the_data_whose_renewals_run_past_year_9999_names_the_open_ended_row(
    tmp_path: Path,
) -> None:
    """--data-end 9999-12-31 with an open-ended row renewing monthly stopped at
    "Error: year 10000 is out of range", without a file, a line or what to do."""
    last = ("renewals", "basic", "2024-05-15", "2024-06-15", "10", "1", "1")
    open_ended = ("renewals", "basic", "2024-05-15", "", "10", "1", "1")
    rows = [open_ended if row == last else row for row in SUBSCRIPTIONS]
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    out = tmp_path / "o.jsonl"
    for options in ([], ["--skip-bad-rows"]):
        result = run_import(tmp_path / "export", mapping, out, "--data-end", "9999-12-31", *options)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(
            "Error: subs.csv.gz:12: this open-ended row renews every 1 month from 2024-05-15 until the end "
            "of the data, 9999-12-31T00:00:00Z (--data-end), and its billing terms would run past year "
            "9999: give an earlier end of the data, such as the export date\n"
        ), result.output
        assert len(result.output.splitlines()) == 1 and not out.exists()


def test_spaces_around_header_names_are_trimmed_as_around_values(tmp_path: Path) -> None:
    """`account_id, event_time` or `user_id ` said "no column 'event_time'" while listing it."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    header, rest = events.read_text().split("\n", 1)
    assert header == "account_id,event_time,event_type_id,user_id"
    events.write_text("account_id, event_time ,\tevent_type_id,user_id \n" + rest)
    assert_imports_as_the_clean_export(tmp_path, mapping)


def test_header_names_equal_once_trimmed_are_refused_naming_both_spellings(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    header, rest = events.read_text().split("\n", 1)
    events.write_text(header + ", user_id\n" + rest.replace("\n", ",x\n"))
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert result.exit_code == 2, result.output
    assert result.output == (
        "Error: events.csv: the header names 'user_id' more than once (written 'user_id', ' user_id': the "
        "spaces around a name are not part of it); rename or remove all but one\n"
    )


def test_rows_of_an_account_whose_table_row_was_refused_say_so_rather_than_that_it_is_missing(
    tmp_path: Path,
) -> None:
    """An accounts row with an extra field made every row of its account report "account_id
    'gap' is not in accounts.csv", though it is there, on a row that could not be read."""
    mapping = write_export(tmp_path / "export")
    accounts = tmp_path / "export" / "accounts.csv"
    assert accounts.read_text().splitlines()[4] == "gap,Gap Inc,smb,US"
    accounts.write_text(accounts.read_text().replace("gap,Gap Inc,smb,US\n", "gap,Gap Inc,smb,US,extra\n"))
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl", "--skip-bad-rows")
    assert result.exit_code == 0, result.output
    refused = "account_id 'gap' has no usable row: its row in accounts.csv (line 5) was refused"
    assert "  accounts.csv:5: 5 fields, expected 4 as in the header\n" in result.output
    for where in ("subs.csv.gz:13", "subs.csv.gz:14", "events.csv:11"):
        assert f"  {where}: {refused}\n" in result.output
    assert "is not in accounts.csv" not in result.output


def feed_fifo(path: Path, data: bytes, seconds: float = 20.0) -> threading.Thread:
    """A thread writing `data` into the FIFO `path` once a reader opens it (giving up after
    `seconds` without one, so that a test of an import that never reads it does not hang)."""

    def write() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:  # ENXIO: no reader yet
                if exc.errno != errno.ENXIO:
                    raise
                time.sleep(0.01)
                continue
            os.set_blocking(fd, True)
            with os.fdopen(fd, "wb") as pipe:
                pipe.write(data)
            return

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_table_that_is_a_fifo_is_read_as_it_comes(tmp_path: Path) -> None:
    """A FIFO where the events table should be was reported as "no such file"."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    data = events.read_bytes()
    events.unlink()
    os.mkfifo(events)
    feeder = feed_fifo(events, data)
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out)
    feeder.join(timeout=20)
    assert result.exit_code == 0, result.output
    assert_only_clean_events(tmp_path, out)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_bad_row_in_a_fifo_is_named_without_reading_the_fifo_again(tmp_path: Path) -> None:
    """The error paths read a table again to find the line of a byte that is not UTF-8: a FIFO
    opened again would wait for another writer for ever."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    data = events.read_bytes() + b"gap,2024-02-20 12:00:00,0,\xff\n"
    events.unlink()
    os.mkfifo(events)
    feeder = feed_fifo(events, data)
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    feeder.join(timeout=20)
    assert result.exit_code == 2, result.output
    assert "events.csv:" in result.output and "not UTF-8" in result.output


def test_a_line_over_the_limit_is_a_bad_row_read_in_bounded_memory(tmp_path: Path) -> None:
    """A gzip of some KB holding one line of many MB was read whole before any check (2 GB: a
    MemoryError); now it is a bad row, read to its end in pieces, and the lines after it keep
    their numbers."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    plain = events.read_bytes()
    long_line = len(plain.splitlines()) + 1
    later = long_line + 1  # a bad row after it: its line number counts the long line
    gzipped = tmp_path / "export" / "events.csv.gz"
    gzipped.write_bytes(gzip.compress(plain + b"a" * (24 << 20) + b"\nx,y\n"))
    out = tmp_path / "o.jsonl"
    column = "events.file=events.csv.gz"
    stopped = run_import(tmp_path / "export", mapping, out, "--column", column)
    assert stopped.exit_code == 1, stopped.output
    assert f"events.csv.gz:{long_line}: a line of more than 1,048,576 characters" in stopped.output
    skipped = run_import(tmp_path / "export", mapping, out, "--column", column, "--skip-bad-rows")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped bad rows: 2" in skipped.output
    assert f"events.csv.gz:{later}: 2 fields, expected 4" in skipped.output
    assert_only_clean_events(tmp_path, out)


def test_a_table_is_read_past_a_long_line_in_bounded_memory(tmp_path: Path) -> None:
    table = tmp_path / "t.csv.gz"
    table.write_bytes(gzip.compress(b"a,b\n1,2\n" + b"a" * (24 << 20) + b"\n3,4\n"))
    bad: list[BadRow] = []
    tracemalloc.start()
    try:
        rows = list(read_rows(table, ["a", "b"], on_bad=bad.append))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [row.values for row in rows] == [("1", "2"), ("3", "4")] and [row.line for row in rows] == [2, 4]
    assert [str(error) for error in bad] == [
        "t.csv.gz:3: a line of more than 1,048,576 characters (the importer's limit)"
    ]
    assert peak < 8 << 20, peak  # the line is 24 MiB


def test_a_row_over_several_lines_past_the_limit_stops_the_import_at_its_quote(tmp_path: Path) -> None:
    """Quoted fields under the reader's field limit, over thousands of lines, made one row of any size."""
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    opened = len(events.read_text().splitlines()) + 1
    field = '"' + "b" * 60_000 + "\n" + "b" * 60_000 + '"'  # under the reader's field limit
    events.write_text(events.read_text() + "gap,2024-02-20 12:00:00,0," + ",".join([field] * 10) + "\n")
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl", "--skip-bad-rows")
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"Error: events.csv:{opened}: a row runs over lines {opened}-{opened + 9} (inside quoted "
        "fields) and past 1,048,576 characters, the importer's limit: is a quote not closed? Close "
        "it or remove the stray '\"'\n"
    )


def test_a_header_over_the_line_limit_is_refused_in_one_line(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    events = tmp_path / "export" / "events.csv"
    events.write_text("account_id," + ",".join(f"column{i}" for i in range(200_000)) + "\n")
    result = run_import(tmp_path / "export", mapping, tmp_path / "o.jsonl")
    assert result.exit_code == 2, result.output
    assert result.output == (
        "Error: events.csv:1: cannot read it as CSV: the header is longer than 1,048,576 characters "
        "(the importer's limit)\n"
    )


def test_a_line_of_exactly_the_limit_is_read_and_one_character_more_is_a_bad_row(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    limit = 1 << 20
    table.write_bytes(
        b"a,b\n" + b"1," + b"2" * (limit - 2) + b"\r\n" + b"3," + b"4" * (limit - 1) + b"\n5,6\n"
    )
    bad: list[BadRow] = []
    csv.field_size_limit(limit)
    try:
        rows = list(read_rows(table, ["a"], on_bad=bad.append))
    finally:
        csv.field_size_limit(131_072)
    assert [row.line for row in rows] == [2, 4]
    assert [str(error) for error in bad] == [
        "t.csv:3: a line of more than 1,048,576 characters (the importer's limit)"
    ]


def test_an_end_of_the_data_after_now_writes_renewals_up_to_now(tmp_path: Path) -> None:
    """An open-ended row renews up to the end of the data; one after the publication time made
    renewals dated in the future, each refused (a bad row, or with --skip-bad-rows an account
    kept with part of its history), after all of them were made first: `--data-end 9000-01-01`
    took 25 s and 1.2 GB for 20 accounts. A renewal after now has not happened yet."""
    last = ("renewals", "basic", "2024-05-15", "2024-06-15", "10", "1", "1")
    open_ended = ("renewals", "basic", "2024-05-15", "", "10", "1", "1")
    rows = [open_ended if row == last else row for row in SUBSCRIPTIONS]
    mapping = write_export(tmp_path / "export", subscriptions=rows)
    out = tmp_path / "o.jsonl"
    result = run_import(tmp_path / "export", mapping, out, "--data-end", "8999-12-31")
    assert result.exit_code == 0, result.output
    renewed = [
        event["occurred_at"]
        for event in map(orjson.loads, out.read_bytes().splitlines())
        if event["event_type"] == "subscription.renewed" and event["account_id"] == "renewals"
    ]
    now = datetime.now(UTC).isoformat()
    assert renewed and max(renewed) <= now and len(renewed) < 12 * (int(now[:4]) - 2023)
