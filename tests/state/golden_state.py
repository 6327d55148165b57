"""The golden files of the state codec: how they are made and how a decoded state is compared.

`cd tests && python -m state.golden_state` writes `golden/v<VERSION>/` from `fixed_history()`; files
of earlier versions stay as they are, so every reader must keep reading them. Run it only when
a new format version is introduced (never to "fix" a failing golden test).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson

from streamer.core.account import KEY_BYTES, Account
from streamer.core.engine import PartitionEngine
from streamer.core.support import Support
from streamer.core.usage import Usage, user_last_day, user_mask
from streamer.state.codec import COVERED, VERSION, encode_account, encode_partition
from streamer.state.partition import AppliedOffsets, PartitionRecord

from .histories import CONFIG, fixed_history

GOLDEN = Path(__file__).parent / "golden"
SPLIT = 120  # events folded into the golden state; the rest continue it in the test


def picture(obj: Any, name: str) -> Any:
    """A field of a state as the golden files show it, whatever its in-memory layout: a usage
    user as {last_day, mask} (packed in one int), a feature's days as a map, the open tickets
    as a set (the keys of a dict), the dedupe ids as a map of 64-bit keys (the 8 key bytes read
    little-endian) to event times."""
    value = getattr(obj, name)
    if isinstance(obj, Account) and name == "seen":
        keys = [
            int.from_bytes(value.keys[i : i + KEY_BYTES], "little")
            for i in range(0, len(value.keys), KEY_BYTES)
        ]
        return dict(zip(keys, value.at_list(), strict=True))
    if isinstance(obj, Usage) and name == "users":
        return {uid: {"last_day": user_last_day(p), "mask": user_mask(p)} for uid, p in value.items()}
    if isinstance(obj, Usage) and name == "feature_days":
        return {feature: obj.feature_counts(feature) for feature in value}
    if isinstance(obj, Support) and name == "open_ids":
        return set(value)
    return value


def dump(value: Any) -> Any:
    """A JSON-able picture of a state: dataclasses by their encoded fields, maps as [key, value]
    pairs (keys may be integers), tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        encoded = COVERED[type(value)][0]
        return {name: dump(picture(value, name)) for name in encoded}
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


def account_offsets() -> AppliedOffsets:
    """The input offsets stored with each golden account."""
    offsets = AppliedOffsets()
    offsets.advance("cs.tickets", 3, [])
    offsets.advance("cs.usage", 40, [44])
    return offsets


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
