"""The re-routed copies a partition has handled, so that a copy sent twice is handled once.

A message written keyless, or keyed to another partition than its account's, is re-routed: the
owner of the partition it was written to (its *source*) sends a keyed copy to the account's
partition, naming where the message was (`streamer/stream/origin.py`). A source killed after
sending the copy and before its checkpoint reads the message again on restart and sends a second
copy. A good event's second copy is a duplicate by its event id; a bad one's was rejected again
and dead-lettered a second time.

The receiving partition keeps, per input topic and source partition, a digest of the bytes of
each copy it handled by the message's offset in the source (the *origin*), in its partition
record: written with the offsets of the copies it lists, so a worker that recovers the record
has handled exactly those. A copy whose origin and bytes match one listed is skipped.

Bounded by what the source has not checkpointed: each copy also carries the source's *floor*, an
offset below which its durable partition record lists every message as handled, so no restart
sends a copy of those again; origins below the highest floor seen are dropped, and at most
`MAX_KEPT` in all are kept (the lowest origin of the source listing most goes first), which
bounds the record at about 70 KB.

A header anyone can write decides nothing alone: a copy is skipped only when its bytes equal
those of a copy already handled with the same origin, so a forged origin cannot make a worker
skip a different message. A forged floor or a flood of forged origins can only make the
partition forget what it listed: a copy sent again is then handled again, as before this record
existed (a good event is a duplicate, a bad one dead-lettered twice).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from hashlib import blake2b

MAX_KEPT = 4096  # origins listed in all (about 17 bytes each in a record at most)

Source = tuple[str, int]  # (input topic, partition the message was written to)


def copy_digest(key: bytes, value: bytes) -> int:
    """A 64-bit digest of a copy's key and value (the key's length first: no two splits of the
    same bytes collide)."""
    digest = blake2b(len(key).to_bytes(4, "big") + key + value, digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(slots=True)
class Handled:
    """The copies handled from one source: its highest floor seen, and per origin offset at or
    above it the digest of the copy handled (`origins` ascending, `digests` beside it)."""

    floor: int = 0
    origins: list[int] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)


@dataclass(slots=True)
class HandledCopies:
    """Per source (input topic, partition written to), the copies this partition has handled."""

    sources: dict[Source, Handled] = field(default_factory=dict)

    def seen_before(self, source: Source, origin: int, floor: int, digest: int) -> bool:
        """Whether a copy of the message at `origin` in `source` with these bytes was handled
        already (then skip this one); if not, this one is listed as handled now.

        `floor`: every message of the source below it is listed in the source's durable record,
        so no copy of one is sent again; a copy from below the highest floor seen is handled as
        any message is and not listed."""
        handled = self.sources.get(source)
        if handled is None:
            handled = self.sources[source] = Handled()
        origins, digests = handled.origins, handled.digests
        if floor > handled.floor:
            handled.floor = floor
            below = bisect_left(origins, floor)
            del origins[:below], digests[:below]
        if origin < handled.floor:
            if not origins:  # a source is listed only while it has copies listed
                del self.sources[source]
            return False
        index = bisect_left(origins, origin)
        if index < len(origins) and origins[index] == origin:
            if digests[index] == digest:
                return True
            digests[index] = digest  # another message claims this origin: the newest is listed
            return False
        origins.insert(index, origin)
        digests.insert(index, digest)
        if sum(len(h.origins) for h in self.sources.values()) > MAX_KEPT:
            fullest_source, fullest = max(self.sources.items(), key=lambda item: len(item[1].origins))
            del fullest.origins[0], fullest.digests[0]
            if not fullest.origins:
                del self.sources[fullest_source]
        return False
