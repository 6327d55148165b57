"""What a worker stores per partition besides its accounts: the clock, the applied offsets and
the re-routed copies handled (`streamer/state/copies.py`).

All are written in the same batch as the accounts they describe (after them, see
`streamer/stream/scorer.py`), so a worker that recovers the record knows which input messages
the recovered accounts already contain: a message re-read after a restart or a rebalance whose
offset is recorded here is skipped, however old its event time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamer.core.engine import Clock
from streamer.state.copies import HandledCopies

MAX_ABOVE = 4096  # handled offsets above the contiguous mark kept per topic (see `AppliedOffsets`)


@dataclass(slots=True)
class AppliedOffsets:
    """Per input topic of one partition, which offsets the stored state already contains.

    `next[topic]`: every message below this offset was handled (applied, dead-lettered or
    re-routed, its outputs acknowledged by Kafka). `above[topic]`: offsets at or past it handled
    as well, sorted: the watermark merge applies messages in event-time order, so a message can
    be applied while an older-offset one of the same topic is still held. Forgetting some of
    those (past `MAX_ABOVE`) is safe: such a message is applied again and its event id dedupes it.
    """

    next: dict[str, int] = field(default_factory=dict)
    above: dict[str, list[int]] = field(default_factory=dict)

    def contains(self, topic: str, offset: int) -> bool:
        """Whether the message at `offset` of `topic` is already in the stored state."""
        if offset < self.next.get(topic, 0):
            return True
        above = self.above.get(topic)
        if not above:
            return False
        index = bisect_left(above, offset)
        return index < len(above) and above[index] == offset

    def contiguous_to(self, topic: str) -> int:
        """Every offset of `topic` below this one is in the stored state (0: none known)."""
        return self.next.get(topic, 0)

    def applied_to(self, topic: str) -> int:
        """The offset after the highest one of `topic` the stored state contains (0: none)."""
        return max([self.next.get(topic, 0), *(offset + 1 for offset in self.above.get(topic, ()))])

    def forget(self, topic: str) -> bool:
        """Forget every offset of `topic` (it was deleted and created again: its offsets start
        over); whether any was listed."""
        listed = topic in self.next or topic in self.above
        self.next.pop(topic, None)
        self.above.pop(topic, None)
        return listed

    def copy(self) -> AppliedOffsets:
        """An independent copy (its lists too)."""
        return AppliedOffsets(dict(self.next), {topic: list(above) for topic, above in self.above.items()})

    def advance(self, topic: str, mark: int, handled: Iterable[int]) -> None:
        """Everything below `mark` is handled now, plus the offsets in `handled`."""
        mark = max(mark, self.next.get(topic, 0))
        above = sorted({*self.above.get(topic, ()), *handled})
        above = above[bisect_left(above, mark) :]
        absorbed = 0
        while absorbed < len(above) and above[absorbed] == mark:  # contiguous with the mark
            mark += 1
            absorbed += 1
        above = above[absorbed:]
        self.next[topic] = mark
        if above:
            self.above[topic] = above[:MAX_ABOVE]
        else:
            self.above.pop(topic, None)


@dataclass(slots=True)
class PartitionRecord:
    """The `clocks` table value of one partition."""

    clock: Clock = field(default_factory=Clock)
    offsets: AppliedOffsets = field(default_factory=AppliedOffsets)
    copies: HandledCopies = field(default_factory=HandledCopies)
