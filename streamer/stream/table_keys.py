"""How the tables' keys are read back from their changelogs: as the JSON text they are written
in; a key that is not JSON (a tombstone typed by hand as `acct-1` rather than `"acct-1"`, the
bytes of another program) is read as an `UnreadableKey` instead of failing.

faust drops a changelog record whose key its codec cannot decode ("Error in recovery") without
counting its offset: when that record was the last of its partition, recovery waited for it for
ever, and the worker never became ready, at every start. The README tells an operator to delete
a foreign key with a tombstone, which is how such a key gets there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from faust.serializers import codecs

log = logging.getLogger(__name__)

CODEC = "healthstream-table-key"
_WARNED_AT_MOST = 100  # distinct unreadable keys warned about in one process


@dataclass(frozen=True, slots=True)
class UnreadableKey:
    """A changelog key that is not JSON text: no account and no partition record is keyed so."""

    raw: bytes

    def __repr__(self) -> str:
        return f"UnreadableKey({self.raw[:100]!r})"


class TableKeys(codecs.json):
    """faust's JSON codec (the same bytes written, so compaction still pairs every key with its
    tombstone), reading a key that is not JSON as an `UnreadableKey`, with one warning."""

    def __init__(self) -> None:
        super().__init__()
        self._warned: set[bytes] = set()

    def _loads(self, s: bytes) -> Any:
        try:
            return super()._loads(s)
        except ValueError:  # not UTF-8, or not JSON
            raw = bytes(s)
            if raw not in self._warned and len(self._warned) < _WARNED_AT_MOST:
                self._warned.add(raw)
                log.warning(
                    "a table changelog record has a key that is not JSON; it names no account and "
                    'is left alone (an account\'s key is its id as a JSON string, e.g. "acct-1" '
                    "with the quotes: a tombstone must be keyed the same way)",
                    extra={"key": repr(raw[:200])},
                )
            return UnreadableKey(raw)


codecs.register(CODEC, TableKeys())
