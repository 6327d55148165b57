"""Accounts of one partition, read from and written back to the faust table in batches.

Reads decode once and stay cached; writes are remembered and staged once per checkpoint (every
batch, or every half second in the worker: `Scorer.checkpoint_every_s`), so a checkpoint costs one
table write (one changelog record) per account touched since the last one. Values are
`streamer/state/codec.py` records (no pickle); a record that cannot be decoded raises
`StateDecodeError`, which stops the worker (see `streamer/stream/app.py`).

Each record also lists the input offsets the account's state contains (`AppliedOffsets`):
written in the same record as the state, it is exactly as durable, so a message re-read after
a restart is recognised as applied even when the partition record of its batch was lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from streamer.core.account import Account
from streamer.state.codec import StateDecodeError, decode_account_record, encode_account
from streamer.state.partition import AppliedOffsets

log = logging.getLogger(__name__)

# Accounts encoded (`TableAccounts.stage`), and records written (`StagedAccounts.write`), between
# two turns of the event loop: about 35 ms of encoding. A midnight changes every active account
# of the partition, and 100,000 of them at once held the loop for seconds (Redis timed out).
TURN_EVERY = 1000


def loads(account_id: str, raw: bytes) -> tuple[Account, AppliedOffsets]:
    """Decode a stored account, naming the key when the record is unreadable."""
    try:
        account, offsets = decode_account_record(raw)
    except StateDecodeError as exc:
        raise StateDecodeError(f"accounts table key {account_id!r}: {exc}") from exc
    if account.account_id != account_id:  # written by hand, or copied: it was taken silently
        raise StateDecodeError(
            f"accounts table key {account_id!r} holds the record of account {account.account_id[:200]!r}: "
            "a record copied or written under another key; write it back under its own key, or "
            "delete this key with a tombstone (the account then starts again from its next event)"
        )
    return account, offsets


MAX_ABSENT = 100_000  # account ids remembered as not in the table (about 10 MB), then forgotten


class TableAccounts(MutableMapping[str, Account]):
    """A write-back view of the accounts table restricted to the keys of one partition."""

    def __init__(self, table: Any, owns: Callable[[str], bool]) -> None:
        self._table = table
        self._owns = owns
        self._cache: dict[str, Account] = {}
        self._offsets: dict[str, AppliedOffsets] = {}
        # Decoded offsets shared by every account whose record lists the same ones (accounts
        # written back in the same batch do): one object each, never changed in place (`stage`
        # gives an account a new one).
        self._shared: dict[tuple[object, ...], AppliedOffsets] = {}
        self._dirty: set[str] = set()
        # Accounts the table was asked for and does not have. Only this store writes the
        # partition's accounts while it owns them (a rebalance builds a new store), so an absent
        # account stays absent until it is set here: one table lookup per new account, not one
        # per message of it until its first checkpoint. A cache, so bounded (`MAX_ABSENT`):
        # events refused for accounts that never come (too late, over a cap, each with a new
        # account id) grew it for as long as the partition stayed here.
        self._absent: set[str] = set()
        self._foreign_keys: set[str] = set()  # keys that are not account ids, each warned of once

    def __getitem__(self, account_id: str) -> Account:
        account = self._cache.get(account_id)
        if account is None:
            if account_id in self._absent:
                raise KeyError(account_id)
            raw = self._table.get(account_id)
            if raw is None:
                if len(self._absent) >= MAX_ABSENT:
                    self._absent.clear()
                self._absent.add(account_id)
                raise KeyError(account_id)
            account, offsets = loads(account_id, raw)
            key = (
                *sorted(offsets.next.items()),
                *((topic, *above) for topic, above in sorted(offsets.above.items())),
            )
            self._offsets[account_id] = self._shared.setdefault(key, offsets)
            self._cache[account_id] = account
        return account

    def contains(self, account_id: str, topic: str, offset: int) -> bool:
        """Whether the stored state of the account already contains that input message."""
        if account_id not in self._cache:
            try:
                self[account_id]  # loads the record
            except KeyError:
                return False
        offsets = self._offsets.get(account_id)
        return offsets is not None and offsets.contains(topic, offset)

    def forget_offsets(self, topic: str) -> int:
        """Forget which messages of input topic `topic` the partition's accounts contain (the
        topic was created again: its offsets start over); return how many accounts listed any.
        Each is written back at the next checkpoint (`stage`)."""
        forgotten = 0
        for account_id in list(self):
            self[account_id]  # loads the record and its offsets
            before = self._offsets.get(account_id)
            if before is None:
                continue
            after = before.copy()  # `before` may be shared with other accounts
            if after.forget(topic):
                self._offsets[account_id] = after
                self._dirty.add(account_id)
                forgotten += 1
        return forgotten

    def write_again(self, account_ids: Iterable[str]) -> int:
        """Stage these accounts at the next checkpoint as they are stored here (a checkpoint given
        up after its table writes left them in the local store and not in the changelog);
        return how many there are."""
        again = 0
        for account_id in account_ids:
            try:
                self[account_id]  # loads the record and its offsets
            except KeyError:
                continue
            self._dirty.add(account_id)
            again += 1
        return again

    def __setitem__(self, account_id: str, account: Account) -> None:
        self._cache[account_id] = account
        self._absent.discard(account_id)
        self._dirty.add(account_id)

    def __delitem__(self, account_id: str) -> None:
        raise NotImplementedError("accounts are never deleted")

    def __iter__(self) -> Iterator[str]:
        seen = set(self._cache)
        yield from self._cache
        for key in list(self._table.keys()):
            if not isinstance(key, str):
                self._foreign(key)
            elif key not in seen and self._owns(key):
                yield key

    def _foreign(self, key: object) -> None:
        """A changelog record keyed by something no worker writes (a JSON number, say: written
        by hand or by another program) names no account: it is left alone, with one warning.
        It stopped the worker with an AttributeError, at every start."""
        shown = repr(key)
        if shown not in self._foreign_keys:
            self._foreign_keys.add(shown)
            log.warning(
                "a record of the accounts table has a key that is not an account id; left alone "
                "(delete it with a tombstone for that key on the accounts changelog)",
                extra={"key": shown[:200], "key_type": type(key).__name__},
            )

    def __len__(self) -> int:
        return sum(1 for _ in self)

    async def stage(
        self,
        marks: Mapping[str, int] | None = None,
        handled: Mapping[str, Mapping[str, Iterable[int]]] | None = None,
    ) -> StagedAccounts:
        """Encode the accounts changed since the last call, as they are now, for writing later.

        `marks`: per input topic, the offset below which every message of the partition was
        handled; `handled`: per account, the offsets at or above it applied to it since.

        The records are written by `StagedAccounts.write`, once the outputs of the batches they
        contain are in Kafka (`Checkpoint`); meanwhile this store keeps answering from its
        cache, which holds every account it staged. The event loop turns every `TURN_EVERY`
        accounts: after a midnight every active account of the partition is staged. Nothing
        changes them meanwhile: only the scorer does, and it is waiting for this.
        """
        records: list[tuple[str, bytes]] = []
        for staged, account_id in enumerate(sorted(self._dirty), start=1):
            if not staged % TURN_EVERY:
                await asyncio.sleep(0)
            before = self._offsets.get(account_id)  # may be shared with other accounts: copied
            offsets = before.copy() if before else AppliedOffsets()
            self._offsets[account_id] = offsets
            applied = (handled or {}).get(account_id, {})
            for topic, mark in (marks or {}).items():
                offsets.advance(topic, mark, applied.get(topic, ()))
            records.append((account_id, encode_account(self._cache[account_id], offsets)))
        self._dirty.clear()
        return StagedAccounts(self._table, records)


class StagedAccounts:
    """Account records encoded at a checkpoint, written to the table when their turn comes."""

    def __init__(self, table: MutableMapping[str, bytes], records: list[tuple[str, bytes]]) -> None:
        self._table, self.records = table, records

    async def write(self) -> int:
        """Write the records (each sends its changelog record); return how many. The event loop
        turns every `TURN_EVERY` records."""
        table = self._table
        for written, (account_id, raw) in enumerate(self.records, start=1):
            table[account_id] = raw
            if not written % TURN_EVERY:
                await asyncio.sleep(0)
        return len(self.records)
