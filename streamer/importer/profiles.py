"""Who each account is, from the accounts table: one `account.updated` per account, dated at its
first event (a subscription event or a product event), so that every snapshot and alert of it
carries its name, owner and segment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamer.importer.subscriptions import Imported, event_id, rfc3339_ms

ATTRIBUTE = "attributes."


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """An accounts-table row's profile: `account.updated`'s fields, those left empty left out."""

    account: str
    fields: dict[str, Any]
    source: tuple[str, int]  # the table's file and line


def profile_fields(columns: Sequence[str], values: Sequence[str]) -> dict[str, Any]:
    """The profile of one row: `columns` are profile fields (`name`, `attributes.country`, as
    `AccountColumns.profile_columns` gives them), `values` the row's values in that order."""
    fields: dict[str, Any] = {}
    attributes: dict[str, str] = {}
    for column, value in zip(columns, values, strict=True):
        if not value:
            continue
        if column.startswith(ATTRIBUTE):
            attributes[column.removeprefix(ATTRIBUTE)] = value
        else:
            fields[column] = value
    if attributes:
        fields["attributes"] = dict(sorted(attributes.items()))
    return fields


def profile_event(row: ProfileRow, at: int) -> Imported:
    """The row's `account.updated` at `at` (epoch ms); its id is a hash of what it says."""
    shown = sorted((key, str(value)) for key, value in row.fields.items())
    event = {
        "event_id": event_id(row.account, "account.updated", at, *shown),
        "event_type": "account.updated",
        "account_id": row.account,
        "occurred_at": rfc3339_ms(at),
        **row.fields,
    }
    return Imported(at, event, row.source)


def profile_events(
    profiles: Mapping[str, ProfileRow], changes: Iterable[Imported], first_use: Mapping[str, int]
) -> list[Imported]:
    """One `account.updated` per account of `profiles` with an event written, at its first one:
    its first subscription event in `changes` or its first product-event row (`first_use`,
    epoch ms), whichever is earlier. An account with no event gets none: nothing would show it."""
    first = dict(first_use)
    for item in changes:
        account = item.event["account_id"]
        if account in profiles and (account not in first or item.at < first[account]):
            first[account] = item.at
    return [
        profile_event(profiles[account], first[account]) for account in sorted(profiles) if account in first
    ]
