"""What the scorer applied since its last checkpoint and has yet to make durable (`Pending`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamer.stream.ports import TopicPartition


class Pending:
    """The batches applied since the last checkpoint: their messages (to acknowledge), one applied
    message per partition (routes the table writes) and the offsets applied to each account."""

    def __init__(self) -> None:
        self.done: list[Any] = []
        self.applied: dict[int, Any] = {}
        # partition -> account -> topic -> offsets applied to the account
        self.by_account: dict[int, dict[str, dict[str, list[int]]]] = {}
        self.since = 0.0  # when the oldest of them was applied (time.monotonic)
        # partition -> the event time its span counts from (`CHECKPOINT_SPAN`)
        self.span_from: dict[int, int] = {}
        self.spanned = False  # a partition's span is used up: checkpoint before it goes on
        # input topic partition -> what its partition acts as: the topic was found created again,
        # and the partition's record must forget the old offsets durably before anything else,
        # then the group's offset go to the new start (`Scorer._start_over`)
        self.started_over: dict[TopicPartition, Any] = {}

    def add(
        self,
        done: Sequence[Any],
        applied: dict[int, Any],
        by_account: dict[int, dict[str, dict[str, list[int]]]],
        now: float,
    ) -> None:
        """Add a batch applied at `now` (time.monotonic)."""
        if not self.done:
            self.since = now
        self.done.extend(done)
        self.applied.update(applied)
        for partition, accounts in by_account.items():
            mine = self.by_account.setdefault(partition, {})
            for account_id, topics in accounts.items():
                theirs = mine.setdefault(account_id, {})
                for topic, offsets in topics.items():
                    theirs.setdefault(topic, []).extend(offsets)

    def forget(self, topic: str, partition: int) -> None:
        """Leave out the offsets of `topic`'s `partition`: the topic was deleted and created
        again, and its old offsets must neither be acknowledged nor listed as handled (they
        would claim the new topic's). What their messages changed stays applied."""
        self.done = [
            event
            for event in self.done
            if (event.message.topic, event.message.partition) != (topic, partition)
        ]
        for topics in self.by_account.get(partition, {}).values():
            topics.pop(topic, None)
        if not any(event.message.partition == partition for event in self.done):
            # Nothing of the partition left to checkpoint: a span counted from those messages
            # held the next ones back with nothing to write, and the release looped for ever.
            self.span_from.pop(partition, None)
            self.spanned = False
