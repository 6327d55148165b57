"""The golden files of the state codec: how they are made and how a decoded state is compared.

`cd tests && python -m state.golden_state` writes `golden/v<VERSION>/` from `fixed_history()`; files
of earlier versions stay as they are, so every reader must keep reading them. Run it when a new
format version is introduced, or when a change of the core's rules changes the history's state
while the writer stays as it was: `test_the_current_versions_golden_records_decode_and_encode_
to_the_same_bytes` must pass before it is run (never to "fix" a failing golden test otherwise).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson

from streamer.core.account import Account
from streamer.core.engine import PartitionEngine
from streamer.core.keys import KEY_BYTES
from streamer.core.revenue import CHANGED
from streamer.core.sentiment import Sentiment
from streamer.core.support import (
    DAY_FIELDS,
    OPEN,
    OPEN_FLAG,
    PRIORITIES,
    PRIORITY_BITS,
    RESOLVED,
    RESOLVED_FLAG,
    Support,
)
from streamer.core.usage import Usage, user_key
from streamer.state.codec import COVERED, VERSION, encode_account, encode_partition
from streamer.state.copies import copy_digest
from streamer.state.partition import AppliedOffsets, PartitionRecord

from .histories import CONFIG, fixed_history

GOLDEN = Path(__file__).parent / "golden"
SPLIT = 120  # events folded into the golden state; the rest continue it in the test


# A usage as the golden files show it, whatever its in-memory layout (format 6 keeps users as
# keys and the day buckets as sorted arrays; the files of versions 1-5 show them as maps).
USAGE_PICTURE = (
    "users",
    "daily_users",
    "last_day_users",
    "daily_activity",
    "features",
    "feature_days",
    "first_use",
    "first_key_use",
    "last_use",
    "horizon_day",
    "_memo_end",  # the golden files' names of `_sums_end` and `_sums` (renamed since)
    "_memo",
)
RENAMED = {"_memo_end": "_sums_end", "_memo": "_sums"}


# Support likewise (since its flat records: tickets and days were objects in a dict before).
SUPPORT_PICTURE = ("tickets", "open_ids", "days", "ever", "horizon_day", "version")
DAY_STATS = ("opened", "resolved", "resolution_ms", "first_contact", "reopened")


# Sentiment likewise (since its answers are flat: a dict and lists of tuples before).
SENTIMENT_PICTURE = ("nps", "csat", "ces", "comments", "version")


def pictured_fields(value: Any) -> tuple[str, ...]:
    if isinstance(value, Usage):
        return USAGE_PICTURE
    if isinstance(value, Support):
        return SUPPORT_PICTURE
    if isinstance(value, Sentiment):
        return SENTIMENT_PICTURE
    return COVERED[type(value)][0]


def support_picture(support: Support, name: str) -> Any:
    """tickets: {id: {priority, opened_at, status, status_at, resolutions}} in the account's
    order; open_ids: a set; days: {day: {opened, ..., reopened}} in the account's order."""
    if name == "tickets":
        return {
            ticket_id: {
                "priority": PRIORITIES[support.flags(i) & PRIORITY_BITS],
                "opened_at": support.opened_at(i),
                "status": RESOLVED if support.flags(i) & RESOLVED_FLAG else OPEN,
                "status_at": list(support.status_at(i)),
                "resolutions": [list(pair) for pair in support.ticket_resolutions(i)],
            }
            for i, ticket_id in enumerate(support.tickets)
        }
    if name == "open_ids":
        return {tid for i, tid in enumerate(support.tickets) if support.flags(i) & OPEN_FLAG}
    if name == "days":
        days = support.days
        return {
            days[i]: dict(zip(DAY_STATS, days[i + 1 : i + DAY_FIELDS], strict=True))
            for i in range(0, len(days), DAY_FIELDS)
        }
    return getattr(support, name)


def sentiment_picture(sentiment: Sentiment, name: str) -> Any:
    """nps: {respondent: [at, event id, score]} in the account's order; csat and ces: lists of
    [at, event id, score] in their order."""
    if name == "nps":
        answers = sentiment.answers("nps")
        return {r: list(a) for r, a in zip(sentiment.respondents, answers, strict=True)}
    if name in ("csat", "ces"):
        return [list(answer) for answer in sentiment.answers(name)]
    return getattr(sentiment, name)


def usage_picture(usage: Usage, name: str) -> Any:
    """users: {"key:<16 hex digits>": {last_day, mask}} in the account's order; the day
    buckets: {day: count}, days ascending."""
    if name == "users":
        keys = usage.user_keys
        return {
            f"key:{keys[i * KEY_BYTES : (i + 1) * KEY_BYTES].hex()}": {
                "last_day": usage.user_last[i],
                "mask": usage.user_masks[i],
            }
            for i in range(usage.user_count())
        }
    if name == "daily_users":
        return {day: n for day, n in zip(usage.bucket_days, usage.bucket_users, strict=True) if n}
    if name == "daily_activity":
        return dict(zip(usage.bucket_days, usage.bucket_activity, strict=True))
    if name == "last_day_users":
        return dict(zip(usage.last_days, usage.last_day_users, strict=True))
    if name == "feature_days":
        return {feature: usage.feature_counts(feature) for feature in usage.feature_names}
    return getattr(usage, RENAMED.get(name, name))


def golden_usage(expected: dict[str, Any]) -> dict[str, Any]:
    """A golden usage as `usage_picture` shows it: the users of versions 1-5 (by id) by their
    key, the day buckets by day."""
    found = dict(expected)
    found["users"] = [
        [uid if uid.startswith("key:") else f"key:{user_key(uid).hex()}", activity]
        for uid, activity in expected["users"]
    ]
    for name in ("daily_users", "last_day_users", "daily_activity"):
        found[name] = sorted(expected[name])
    return found


def picture(obj: Any, name: str) -> Any:
    """A field of a state as the golden files show it, whatever its in-memory layout: a usage
    as `usage_picture`, a support and a sentiment as
    `support_picture` and `sentiment_picture`, a feature's days as a map, the dedupe
    ids as a map of 64-bit keys (the 8 key bytes read little-endian) to event times."""
    if isinstance(obj, Usage):
        return usage_picture(obj, name)
    if isinstance(obj, Support):
        return support_picture(obj, name)
    if isinstance(obj, Sentiment):
        return sentiment_picture(obj, name)
    value = getattr(obj, name)
    if isinstance(obj, Account) and name == "seen":
        keys = [
            int.from_bytes(value.keys[i : i + KEY_BYTES], "little")
            for i in range(0, len(value.keys), KEY_BYTES)
        ]
        return dict(zip(keys, value.at_list(), strict=True))
    return value


def dump(value: Any) -> Any:
    """A JSON-able picture of a state: dataclasses by their encoded fields, maps as [key, value]
    pairs (keys may be integers), tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: dump(picture(value, name)) for name in pictured_fields(value)}
    if isinstance(value, dict):
        return [[dump(k), dump(v)] for k, v in value.items()]
    if isinstance(value, set):
        return sorted(dump(v) for v in value)
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    return value


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where `actual` (a live state) differs from a golden `dump`; fields added to a dataclass
    after the golden file was written are not compared (their decoder fills the default)."""
    if dataclasses.is_dataclass(actual) and not isinstance(actual, type):
        if not isinstance(expected, dict):
            return [f"{path}: expected {expected!r:.80}, got a {type(actual).__name__}"]
        if isinstance(actual, Usage):
            expected = golden_usage(expected)
        found = []
        for name, value in expected.items():
            found += differences(value, picture(actual, name), f"{path}.{name}")
        return found
    if isinstance(expected, dict) and isinstance(actual, dict):  # a layout's picture (see `picture`)
        return [] if expected == actual else [f"{path}: expected {expected!r:.80}, got {actual!r:.80}"]
    if isinstance(actual, set):
        actual = dump(actual)
    if isinstance(actual, dict):
        actual = [[key, value] for key, value in actual.items()]
    if isinstance(actual, list | tuple) and isinstance(expected, list) and len(actual) == len(expected):
        found = []
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            found += differences(want, got, f"{path}[{index}]")
        return found
    if isinstance(actual, list | tuple):
        return [f"{path}: expected {len(expected)} items, got {len(actual)}"]
    return [] if expected == actual else [f"{path}: expected {expected!r:.80}, got {actual!r:.80}"]


def as_read_now(expected: dict[str, Any], version: int) -> dict[str, Any]:
    """An account of an older format's expected.json as the current decoder reads it: before
    format 8 a subscription step and state had no rank (each reads as a change); before format 7
    a ticket took its opening's event id as its status, and a ticket never resolved whose status
    is dated at its opening is read with none (the status is the opening); before format 11 a
    subscription stored its latest cancellation's effective instant (derived since)."""
    if version < 11 and expected.get("revenue"):
        subscriptions = [
            [sid, {name: value for name, value in sub.items() if name != "cancel_at"}]
            for sid, sub in expected["revenue"]["subscriptions"]
        ]
        expected = {**expected, "revenue": {**expected["revenue"], "subscriptions": subscriptions}}
    if version < 8 and expected.get("revenue"):
        subscriptions = [
            [
                sid,
                {
                    **sub,
                    "points": [[*p[:2], CHANGED, *p[2:]] for p in sub["points"]],
                    "state_at": [sub["state_at"][0], CHANGED, sub["state_at"][1]],
                },
            ]
            for sid, sub in expected["revenue"]["subscriptions"]
        ]
        expected = {**expected, "revenue": {**expected["revenue"], "subscriptions": subscriptions}}
    tickets = expected.get("support", {}).get("tickets")
    if version >= 7 or not tickets:
        return expected
    read = []
    for ticket_id, ticket in tickets:
        at, _ = ticket["status_at"]
        if ticket["status"] == OPEN and not ticket["resolutions"] and at == ticket["opened_at"]:
            ticket = {**ticket, "status_at": [at, ""]}
        read.append([ticket_id, ticket])
    return {**expected, "support": {**expected["support"], "tickets": read}}


def account_offsets() -> AppliedOffsets:
    """The input offsets stored with each golden account."""
    offsets = AppliedOffsets()
    offsets.advance("cs.tickets", 3, [])
    offsets.advance("cs.usage", 40, [44])
    return offsets


def handled_copies(record: PartitionRecord) -> None:
    """The re-routed copies the golden partition record lists (format 10 on): two sources, one
    of them with a floor applied."""
    copies = record.copies
    copies.seen_before(("cs.subscriptions", 0), 3, 0, copy_digest(b"acct-1", b"[]"), at=4)
    copies.seen_before(("cs.subscriptions", 0), 9, 5, 2**64 - 1, at=7)  # sources in the order written
    copies.seen_before(("cs.usage", 2), 70, 64, copy_digest(b"acct-1", b"{}"), at=50)
    copies.seen_before(("cs.usage", 2), 75, 64, copy_digest(b"acct-2", b"{}"), at=55)
    # the subscriptions' floor applies; the usage's waits (its copies are past offset 41)
    copies.settle(record.offsets.contiguous_to)


def golden_engine() -> PartitionEngine:
    engine = PartitionEngine(CONFIG, {})
    for event in fixed_history()[:SPLIT]:
        engine.process(event)
    return engine


def write() -> Path:
    folder = GOLDEN / f"v{VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    engine = golden_engine()
    for account_id, account in sorted(engine.accounts.items()):
        (folder / f"account-{account_id}.bin").write_bytes(encode_account(account, account_offsets()))
    record = PartitionRecord(engine.clock)
    record.offsets.advance("cs.subscriptions", 12, [])  # topics in the order they are written
    record.offsets.advance("cs.usage", 41, [43, 47])
    handled_copies(record)
    (folder / "partition.bin").write_bytes(encode_partition(record))
    expected = {
        "accounts": {account_id: dump(account) for account_id, account in sorted(engine.accounts.items())},
        "account_offsets": dump(account_offsets()),
        "partition": dump(record),
    }
    (folder / "expected.json").write_bytes(orjson.dumps(expected, option=orjson.OPT_INDENT_2) + b"\n")
    return folder


if __name__ == "__main__":
    print(f"wrote {write()}")
