"""The re-routed copies a partition has handled, so that a copy sent twice is handled once.

A message written keyless, or keyed to another partition than its account's, is re-routed: the
owner of the partition it was written to (its *source*) sends a keyed copy to the account's
partition, naming where the message was (`streamer/stream/origin.py`). A source killed after
sending the copy and before its checkpoint reads the message again on restart and sends a second
copy. Without this listing a good event's second copy is a duplicate by its event id, and a bad
one's is rejected again and dead-lettered a second time.

The receiving partition keeps, per input topic and source partition, a digest of the bytes of
each copy it handled by the message's offset in the source (the *origin*), in its partition
record: written with the offsets of the copies it lists, so a worker that recovers the record
has handled exactly those. A copy whose origin and bytes match one listed is skipped.

Bounded by what the sources have not checkpointed: each copy also carries its source's *floor*,
an offset below which the source's durable partition record lists every message as handled, so
no restart of the source sends a copy of those again. A floor is applied (the origins below it
dropped) once every message before its copy in this partition was handled (`settle`): a copy
sent again before it and held back by the event-time merge is still matched. At most `MAX_KEPT`
origins are listed in all (the lowest of the source listing most go first): 37-70 KB from one
source (9-17 bytes an origin), more with the names of many.

A header anyone can write decides nothing alone: a copy is skipped only when its bytes equal
those of a copy already handled with the same origin, so a forged origin cannot make a worker
skip a different message. A forged floor or a flood of forged origins can only make the
partition forget what it lists: a copy sent again is then handled again, as before this record
existed (a good event is a duplicate, a bad one dead-lettered twice).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import blake2b

MAX_KEPT = 4096  # origins listed in all (8 bytes of digest and 1-9 of offset each in a record)
MAX_WAITING = 8  # floors waiting per source (`HandledCopies.waiting`)

Source = tuple[str, int]  # (input topic, partition the message was written to)


def copy_digest(key: bytes, value: bytes) -> int:
    """A 64-bit digest of a copy's key and value (the key's length first: no two splits of the
    same bytes collide)."""
    digest = blake2b(len(key).to_bytes(4, "big") + key + value, digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(slots=True)
class Handled:
    """The copies handled from one source: the floor applied, and per origin offset the digest of
    the copy handled (`origins` ascending, `digests` beside it)."""

    floor: int = 0
    origins: list[int] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)


@dataclass(slots=True)
class HandledCopies:
    """Per source (input topic, partition written to), the copies this partition has handled."""

    sources: dict[Source, Handled] = field(default_factory=dict)
    # per source, floors not applied yet, rising, each with the offset (in this partition) of the
    # first copy that carried it: applied once every message before that copy is handled (at
    # most `MAX_WAITING`: the newest replaces the last). Not stored: a recovered record applies
    # the floors its next copies carry.
    waiting: dict[Source, list[tuple[int, int]]] = field(default_factory=dict)
    listed: int = 0  # origins listed over all sources

    def seen_before(self, source: Source, origin: int, floor: int, digest: int, at: int) -> bool:
        """Whether a copy of the message at `origin` in `source` with these bytes was handled
        already (then skip this one); if not, this one is listed as handled now. `at`: this
        copy's offset in this partition; `floor`: the source's, as the copy carries it."""
        handled = self.sources.get(source)
        if handled is None:
            handled = self.sources[source] = Handled()
        if floor > handled.floor:
            waiting = self.waiting.setdefault(source, [])
            if not waiting or floor > waiting[-1][0]:
                if len(waiting) == MAX_WAITING:
                    waiting.pop()
                waiting.append((floor, at))
        origins, digests = handled.origins, handled.digests
        index = bisect_left(origins, origin)
        if index < len(origins) and origins[index] == origin:
            if digests[index] == digest:
                return True
            digests[index] = digest  # another message claims this origin: the newest is listed
            return False
        origins.insert(index, origin)
        digests.insert(index, digest)
        self.listed += 1
        if self.listed > MAX_KEPT:
            fullest_source, fullest = max(self.sources.items(), key=lambda item: len(item[1].origins))
            del fullest.origins[0], fullest.digests[0]
            self.listed -= 1
            if not fullest.origins:  # a source is listed only while it has copies listed
                del self.sources[fullest_source]
                self.waiting.pop(fullest_source, None)
        return False

    def settle(self, handled_below: Callable[[str], int]) -> None:
        """Apply each waiting floor whose copy is below `handled_below(topic)` (every message of
        the topic before that offset was handled in this partition): drop the origins below it."""
        for source, waiting in list(self.waiting.items()):
            mark = handled_below(source[0])
            ready = [index for index, (_, at) in enumerate(waiting) if at < mark]
            if not ready:
                continue
            floor = waiting[ready[-1]][0]  # the highest that may apply
            del waiting[: ready[-1] + 1]
            if not waiting:
                del self.waiting[source]
            handled = self.sources.get(source)
            if handled is None or floor <= handled.floor:
                continue
            handled.floor = floor
            below = bisect_left(handled.origins, floor)
            del handled.origins[:below], handled.digests[:below]
            self.listed -= below
            if not handled.origins:
                del self.sources[source]  # a source is listed only while it has copies listed

    def forget(self, topic: str) -> None:
        """Forget every copy of `topic` (it was deleted and created again: offsets start over)."""
        for source in [source for source in self.sources if source[0] == topic]:
            self.listed -= len(self.sources.pop(source).origins)
            self.waiting.pop(source, None)
