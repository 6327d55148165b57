"""`TableAccounts`: decoded accounts over the table, applied offsets shared but never changed in place."""

from __future__ import annotations

import logging

import pytest

from streamer.core.account import Account
from streamer.state.codec import StateDecodeError, decode_account_record, encode_account
from streamer.state.partition import AppliedOffsets
from streamer.stream.accounts import TableAccounts

USAGE = "cs.usage"


def record(account_id: str, mark: int) -> bytes:
    offsets = AppliedOffsets()
    offsets.advance(USAGE, mark, [mark + 5])
    return encode_account(Account(account_id=account_id, first_seen=0), offsets)


async def test_accounts_read_with_the_same_offsets_share_them_and_a_write_back_changes_only_its_own() -> None:
    table = {"a": record("a", 100), "b": record("b", 100), "c": record("c", 7)}
    accounts = TableAccounts(table, lambda key: True)
    for key in table:
        accounts[key]
    shared = accounts._offsets
    assert shared["a"] is shared["b"] and shared["a"] is not shared["c"]  # one object for a and b

    accounts["a"] = accounts["a"]  # changed in a batch that handled usage offsets up to 200
    await (await accounts.stage({USAGE: 200}, {"a": {USAGE: [203]}})).write()

    assert accounts.contains("a", USAGE, 150) and accounts.contains("a", USAGE, 203)
    assert not accounts.contains("b", USAGE, 150)  # b's offsets are still those of its record
    assert accounts.contains("b", USAGE, 105) and not accounts.contains("b", USAGE, 104 + 100)
    _, stored = decode_account_record(table["a"])
    assert stored.contains(USAGE, 203) and stored.contains(USAGE, 199)


def test_a_table_key_that_is_not_an_account_id_is_left_alone_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A changelog record keyed by a JSON number (written by hand or another program) stopped
    the worker at every start: the partition's ownership test read the key as text."""
    table: dict[object, bytes] = {"a": record("a", 1), 123: record("a", 1)}

    def owns(key: str) -> bool:
        return key.encode() != b""  # reads the key as text, as the partitioner does

    accounts = TableAccounts(table, owns)
    with caplog.at_level(logging.WARNING, logger="streamer.stream.accounts"):
        assert list(accounts) == ["a"]
        assert list(accounts) == ["a"]
    [warning] = [r for r in caplog.records if "not an account id" in r.getMessage()]
    assert warning.key == "123"  # type: ignore[attr-defined]


def test_a_record_under_another_accounts_key_stops_reading_with_both_named() -> None:
    """Copied or written by hand under the wrong key, account b's record was taken as account
    a's without a word (a's seats, MRR and history became b's)."""
    accounts = TableAccounts({"a": record("b", 1)}, lambda key: True)
    with pytest.raises(StateDecodeError, match=r"key 'a' holds the record of account 'b'"):
        accounts["a"]
