"""A small warehouse-style export written into a folder: one account per case the importer handles."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

DATA_END = "2024-06-01"

ACCOUNTS = ["plan-change", "addons", "renewals", "gap", "canceled", "end-of-data", "never-used"]
# id, name, segment, country: who each account is (an empty value is none; "never-used" has no profile)
ACCOUNT_ROWS: list[tuple[str, ...]] = [
    ("plan-change", "Plan-Change Inc", "smb", ""),
    ("addons", "Addons Inc", "enterprise", ""),
    ("renewals", "Renewals Inc", "smb", ""),
    ("gap", "Gap Inc", "smb", "US"),
    ("canceled", "Canceled Inc", "smb", ""),
    ("end-of-data", "End-Of-Data Inc", "smb", ""),
    ("never-used", "", "", ""),
]

# account_id, product, start_date, end_date, mrr, quantity, bill_period_months
SUBSCRIPTIONS: list[tuple[str, ...]] = [
    # basic -> pro on 02-01 (a change), pro renewed on 03-01, then nothing: canceled at 04-01
    ("plan-change", "basic", "2024-01-01", "2024-02-01", "100", "5", "1"),
    ("plan-change", "pro", "2024-02-01", "2024-03-01", "250.50", "10", "1"),
    ("plan-change", "pro", "2024-03-01", "2024-04-01", "250.50", "10", "1"),
    # a half-yearly plan and an add-on (quantity 5000 is not seats), running past the end of the data
    ("addons", "team", "2024-01-10", "2024-07-10", "333.33", "20", "6"),
    ("addons", "extra", "2024-01-10", "2024-07-10", "49.99", "5000", "6"),
    # a yearly add-on dropped at its term end while the plan goes on: a contraction, not a churn
    ("addons", "archive", "2024-01-10", "2024-04-10", "10", "5000", "1"),
    # monthly renewals, the last term ends after the end of the data: still paying
    ("renewals", "basic", "2024-01-15", "2024-02-15", "10", "1", "1"),
    ("renewals", "basic", "2024-02-15", "2024-03-15", "10", "1", "1"),
    ("renewals", "basic", "2024-03-15", "2024-04-15", "10", "1", "1"),
    ("renewals", "basic", "2024-04-15", "2024-05-15", "10", "1", "1"),
    ("renewals", "basic", "2024-05-15", "2024-06-15", "10", "1", "1"),
    # a gap: canceled at 02-01, a new subscription from 02-10, canceled at 03-10
    ("gap", "basic", "2024-01-01", "2024-02-01", "20", "2", "1"),
    ("gap", "basic", "2024-02-10", "2024-03-10", "20", "2", "1"),
    # one yearly-billed term that ends before the end of the data
    ("canceled", "pro", "2024-01-01", "2024-03-01", "99.99", "3", "12"),
    # ends exactly at the end of the data: the data stops, the subscription does not
    ("end-of-data", "basic", "2024-05-01", "2024-06-01", "15", "1", "1"),
    ("never-used", "basic", "2024-01-01", "2024-06-01", "30", "", "1"),
]
ADDONS = ["extra", "archive"]

EVENT_TYPES = [("0", "login"), ("1", "report"), ("2", "export")]

# account_id, event_time, event_type_id, user_id
EVENTS: list[tuple[str, ...]] = [
    ("plan-change", "2024-01-02 09:00:30", "0", "7"),
    ("plan-change", "2024-01-02 09:10:00", "0", "7"),  # same hour, user and feature: one event, count 2
    ("plan-change", "2024-01-02 09:59:59", "1", "7"),
    ("plan-change", "2024-01-02 10:00:00", "0", "7"),  # 10:00:00 closes the 09-10 bucket
    ("plan-change", "2024-01-02 10:00:01", "0", "7"),  # the next one
    ("addons", "2024-01-11 00:00:00", "2", "1"),  # midnight belongs to the day before
    ("addons", "2024-01-11 00:30:00", "2", "1"),
    ("renewals", "2024-05-31 23:00:00", "1", "0"),
    ("renewals", "2024-06-01 00:00:01", "1", "0"),  # after the end of the data: left out
    ("gap", "2024-02-20 12:00:00", "0", "3"),
    ("canceled", "2024-02-01 08:00:00", "0", "1"),
    ("end-of-data", "2024-05-20 08:00:00", "0", "1"),
]

MAPPING = f"""
currency = "USD"
data_end = "{DATA_END}"

[subscriptions]
file = "subs.csv.gz"
account = "account_id"
product = "product"
start = "start_date"
end = "end_date"
mrr = "mrr"
quantity = "quantity"
bill_period_months = "bill_period_months"
addons_file = "addons.csv"

[events]
file = "events.csv"
account = "account_id"
time = "event_time"
event = "event_type_id"
user = "user_id"
lookup_file = "event_types.csv"

[accounts]
file = "accounts.csv"
name = "name"
segment = "segment"

[accounts.attributes]
country = "country"
"""


def _csv(header: list[str], rows: list[tuple[str, ...]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


def write_export(
    folder: Path,
    subscriptions: list[tuple[str, ...]] = SUBSCRIPTIONS,
    events: list[tuple[str, ...]] = EVENTS,
) -> Path:
    """The tables and `mapping.toml` in `folder`; returns the mapping's path."""
    folder.mkdir(parents=True, exist_ok=True)
    header = ["account_id", "product", "start_date", "end_date", "mrr", "quantity", "bill_period_months"]
    (folder / "subs.csv.gz").write_bytes(gzip.compress(_csv(header, subscriptions), mtime=0))
    (folder / "addons.csv").write_bytes(_csv(["plan", "mrr"], [(name, "1") for name in ADDONS]))
    (folder / "events.csv").write_bytes(
        _csv(["account_id", "event_time", "event_type_id", "user_id"], events)
    )
    (folder / "event_types.csv").write_bytes(_csv(["event_type_id", "event_type_name"], EVENT_TYPES))
    (folder / "accounts.csv").write_bytes(_csv(["id", "name", "segment", "country"], ACCOUNT_ROWS))
    mapping = folder / "mapping.toml"
    mapping.write_text(MAPPING)
    return mapping
