"""The scorer's test world, shared by the scorer, identity, poison and dead-letter tests: a
`Scorer` over journaled dict tables, a list sink and a fake consumer view, the topics and accounts
it is set up with, and makers of input events (no broker)."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime
from typing import Any

import orjson

from streamer.contract.events import EVENT_FAMILY
from streamer.core.config import ScoreConfig
from streamer.partitioning import partition_of
from streamer.settings import Settings
from streamer.stream.scorer import Scorer
from tests.fixtures import FakeEvent, FakeOffsets, FakeSink, JournaledChangelogs, JournaledTable, Message

SETTINGS = Settings(partitions=4)
TOPICS = SETTINGS.input_topics
SUBS, USAGE, TICKETS, SURVEYS = (
    TOPICS[family] for family in ("subscriptions", "usage", "tickets", "surveys")
)
ACCOUNT = "acme"
PARTITION = partition_of(ACCOUNT, SETTINGS.partitions)
OTHER = "globex"
OTHER_PARTITION = partition_of(OTHER, SETTINGS.partitions)
assert OTHER_PARTITION != PARTITION
T1, T2 = "2024-01-01T10:00:00Z", "2024-01-01T12:00:00Z"
GENERATION = 7


class World:
    """A scorer with its tables, sink and consumer view, and a maker of input events."""

    def __init__(
        self, restarted_from: World | None = None, *, overlap: bool = False, settling: bool = True
    ) -> None:
        """A fresh world, or a restarted worker over the tables of `restarted_from`. `overlap`:
        its checkpoints overlap the batches after them, and unless `settling` is False each call
        returns once its checkpoint is complete (`SettlingScorer`)."""
        self.journal: list[str] = []  # flushes, table writes and acks in order
        if restarted_from is None:
            self.accounts: dict[str, bytes] = JournaledTable(self.journal)
            self.clocks: dict[str, bytes] = JournaledTable(self.journal)
        else:
            self.accounts, self.clocks = restarted_from.accounts, restarted_from.clocks
        self.sink = FakeSink(self.journal)
        self.offsets = FakeOffsets({(topic, PARTITION) for topic in TOPICS.values()}, GENERATION)
        self.acks: list[tuple[str, int]] = []  # (topic, offset) in acknowledgement order
        self.scorer = (SettlingScorer if overlap and settling else Scorer)(
            SETTINGS,
            ScoreConfig(),
            self.accounts,
            self.clocks,
            self.sink,
            self.offsets,
            changelogs=JournaledChangelogs(self.journal),
            overlap=overlap,
        )
        self._ids = 0

    def event(
        self,
        topic: str,
        offset: int,
        value: bytes,
        *,
        account: str = ACCOUNT,
        generation: int | None = GENERATION,
        follows: int | None = None,
    ) -> FakeEvent:
        message = Message(
            topic=topic,
            partition=partition_of(account, SETTINGS.partitions),
            offset=offset,
            key=account.encode(),
            value=value,
            timestamp=time.time(),
            generation_id=generation,
            follows=follows,
        )
        return FakeEvent(message, self.acks, self.journal)

    def usage(
        self,
        offset: int,
        when: str = T2,
        *,
        account: str = ACCOUNT,
        generation: int | None = GENERATION,
        follows: int | None = None,
    ) -> FakeEvent:
        value = self.value(usage_record(account, when))
        return self.event(USAGE, offset, value, account=account, generation=generation, follows=follows)

    def started(self, offset: int, when: str = T1, *, generation: int | None = GENERATION) -> FakeEvent:
        return self.event(SUBS, offset, self.value(started_record(ACCOUNT, when)), generation=generation)

    def value(self, record: dict[str, Any]) -> bytes:
        self._ids += 1
        return orjson.dumps({"event_id": f"e{self._ids}", **record})

    def applied(self) -> bool:
        """Whether anything reached the engine's outputs and the tables."""
        return bool(self.sink.snapshots or self.accounts or self.clocks)


class SettlingScorer(Scorer):
    """A scorer whose checkpoints overlap the batches after them, observed between calls: each
    call returns once its checkpoint is complete, so a test sees what a waiting scorer leaves.
    The interleavings themselves have their own tests."""

    async def process(self, events: Any) -> None:
        await super().process(events)
        await self.settled()

    async def release_idle(self) -> None:
        await super().release_idle()
        await self.settled()


def usage_record(account: str, when: str) -> dict[str, Any]:
    return {
        "event_type": "usage.recorded",
        "account_id": account,
        "occurred_at": when,
        "user_id": "u1",
        "feature": "reports",
    }


def started_record(account: str, when: str) -> dict[str, Any]:
    return {
        "event_type": "subscription.started",
        "account_id": account,
        "occurred_at": when,
        "subscription_id": "s1",
        "plan": "pro",
        "amount": "100.00",
        "currency": "USD",
        "interval": "month",
    }


def input_messages(lines: list[bytes]) -> tuple[list[Message], dict[tuple[str, int], int]]:
    """Contract event lines as the input messages the workers would read (file order, keyed and
    partitioned by account, published at their event time), and each topic partition's end offset."""
    ends: dict[tuple[str, int], int] = defaultdict(int)
    made = []
    for line in lines:
        value = orjson.loads(line)
        topic = TOPICS[EVENT_FAMILY[value["event_type"]]]
        partition = partition_of(value["account_id"], SETTINGS.partitions)
        published = datetime.fromisoformat(value["occurred_at"]).timestamp()
        made.append(
            Message(
                topic,
                partition,
                ends[(topic, partition)],
                value["account_id"].encode(),
                line,
                published,
                GENERATION,
            )
        )
        ends[(topic, partition)] += 1
    return made, ends
