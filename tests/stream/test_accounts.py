"""`TableAccounts`: decoded accounts over the table, applied offsets shared but never changed in place."""

from __future__ import annotations

import logging

import pytest

from streamer.core.account import Account
from streamer.state.codec import StateDecodeError, decode_account_record, encode_account
from streamer.state.partition import AppliedOffsets
from streamer.stream import accounts as accounts_module
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


def test_accounts_not_in_the_table_are_remembered_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """One lookup per new account, not one per message; but events refused for accounts that
    never come (each with a new id) grew the set for as long as the partition stayed."""
    monkeypatch.setattr(accounts_module, "MAX_ABSENT", 3)

    class CountingTable(dict[str, bytes]):
        lookups = 0

        def get(self, key: str, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
            self.lookups += 1
            return super().get(key, default)

    table = CountingTable()
    accounts = TableAccounts(table, lambda key: True)
    for _ in range(2):
        assert "new" not in accounts
    assert table.lookups == 1  # remembered as absent
    for number in range(10):
        assert f"stray-{number}" not in accounts
    assert len(accounts._absent) <= 3
