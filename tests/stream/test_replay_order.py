"""`streamer replay` keeps the file's order within each partition number across the topics.

The worker's merge trusts that order (a topic at its end offset does not hold the others back),
so an older event appended after a newer one of another topic of the same partition number is
late for it and can change alerts. A broker appends the batches of one produce request
partition by partition, in no order a producer controls; the fake broker here appends each
request's partitions in reverse order of their first message, the worst case. Checked with a
steady flow, a burst and a broker restart in the middle.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from streamer.partitioning import partition_of
from streamer.settings import FAMILIES, Settings
from streamer.stream import replay

PARTITIONS = 4


class FakeBroker:
    """The topics' logs, appended request by request; `down` makes it stop answering."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        self.appended: dict[int, list[bytes]] = defaultdict(list)  # by partition number, in order
        self.down = False
        self.lose_acks_once = False  # write the next request but never answer it (then go down)


class FakeProducer:
    """An aiokafka producer over `FakeBroker`: every message handed over is in flight until the
    next turn of the loop, when all of them go as one request."""

    def __init__(self, broker: FakeBroker, **_: Any) -> None:
        self.broker = broker
        self.in_flight: list[tuple[str, int, bytes, asyncio.Future[object]]] = []
        self.task: asyncio.Task[None] | None = None
        self.client = self

    # -- the parts of the client `_Sender` reads ----------------------------------------------
    @property
    def cluster(self) -> FakeProducer:
        return self

    def leader_for_partition(self, _tp: Any) -> int:
        return 1

    async def force_metadata_update(self) -> None:
        pass

    async def partitions_for(self, _topic: str) -> set[int]:
        return set(range(PARTITIONS))

    # -- the producer -------------------------------------------------------------------------
    async def start(self) -> None:
        if self.broker.down:
            raise KafkaConnectionError("broker down")
        self.task = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> Any:
        if partition is None:
            partition = partition_of(key.decode(), PARTITIONS)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.in_flight.append((topic, partition, value, future))
        return future

    async def _serve(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            request, self.in_flight = self.in_flight, []
            if not request or self.broker.down:
                self.in_flight = request + self.in_flight  # never answered
                continue
            firsts: list[tuple[str, int]] = []
            for topic, partition, _, _ in request:
                if (topic, partition) not in firsts:
                    firsts.append((topic, partition))
            for topic, partition in reversed(firsts):  # the worst order across partitions
                for t, p, value, _ in request:
                    if (t, p) == (topic, partition):
                        self.broker.logs[(t, p)].append(value)
                        self.broker.appended[p].append(value)
            if self.broker.lose_acks_once:
                self.broker.lose_acks_once, self.broker.down = False, True
                self.in_flight = []
                continue  # written, never acknowledged
            for _, _, _, future in request:
                if not future.done():
                    future.set_result(None)


def events(count: int) -> list[bytes]:
    """A stream over all four topics, switching topic often within each partition number."""
    types = ["usage.recorded", "ticket.opened", "usage.recorded", "survey.answered", "subscription.started"]
    return [
        orjson.dumps(
            {
                "event_id": f"ev-{index:05d}",
                "event_type": types[index % len(types) if index % 3 else (index // 3) % len(types)],
                "account_id": f"acct-{index % 9}",
                "occurred_at": "2024-01-01T00:00:00Z",
            }
        )
        for index in range(count)
    ]


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBroker]:
    fake = FakeBroker()

    async def no_topics(_settings: Settings) -> list[str]:
        return []

    monkeypatch.setattr(replay, "ensure_topics", no_topics)
    monkeypatch.setattr(replay, "AIOKafkaProducer", lambda **options: FakeProducer(fake, **options))
    monkeypatch.setattr(replay, "RETRY_PAUSE_S", 0.05)
    yield fake


def in_file_order(broker: FakeBroker, lines: list[bytes]) -> dict[int, list[int]]:
    """Per partition number, the file positions of what was appended, first copies only, where
    one comes after a later line of the file (empty lists: the order was kept)."""
    position = {line: index for index, line in enumerate(lines)}
    inversions: dict[int, list[int]] = {}
    for partition, appended in broker.appended.items():
        seen: set[int] = set()
        latest, wrong = -1, []
        for value in appended:
            index = position[value]
            if index in seen:
                continue  # written again after a restart: a repeat the worker ignores
            seen.add(index)
            if index < latest:
                wrong.append(index)
            latest = max(latest, index)
        inversions[partition] = wrong
    return inversions


def settings() -> Settings:
    return Settings(topic_prefix="t.", partitions=PARTITIONS)


async def test_a_burst_reaches_each_partition_number_in_file_order(broker: FakeBroker) -> None:
    lines = events(2000)
    summary = await replay.publish(lines, settings(), timeout_s=30)
    assert summary.total == len(lines)
    assert sorted(v for log in broker.logs.values() for v in log) == sorted(lines)
    assert set(broker.appended) == set(range(PARTITIONS))
    assert {p: wrong for p, wrong in in_file_order(broker, lines).items() if wrong} == {}
    topics = {topic for topic, _ in broker.logs}
    assert topics == {f"t.{family}" for family in FAMILIES}


async def test_after_a_broker_restart_the_order_holds_and_nothing_is_lost(broker: FakeBroker) -> None:
    lines = events(3000)
    stalls: list[float | None] = []

    async def restart_broker() -> None:
        while sum(len(log) for log in broker.logs.values()) < 800:
            await asyncio.sleep(0.001)
        broker.lose_acks_once = True  # one request written but unanswered, then down
        await asyncio.sleep(1.5)
        broker.down = False

    restart = asyncio.create_task(restart_broker())
    summary = await replay.publish(lines, settings(), timeout_s=3, on_stall=stalls.append)
    await restart
    assert summary.stalls >= 1 and stalls[-1] is None
    written = {v for log in broker.logs.values() for v in log}
    assert written == set(lines), f"{len(set(lines) - written)} lines never written"
    assert {p: wrong for p, wrong in in_file_order(broker, lines).items() if wrong} == {}


def test_a_valid_event_orjson_cannot_read_is_routed_not_skipped() -> None:
    """An ignored field may hold 1e400 (valid JSON, and the contract ignores it); orjson refuses
    infinity, so the contract's decoder routes the line."""
    settings = Settings(topic_prefix="t.", partitions=PARTITIONS)
    event = b'{"event_id":"e1","event_type":"usage.recorded","account_id":"acme",'
    event += b'"occurred_at":"2024-01-01T00:00:00Z","user_id":"u","feature":"f","pad":1e400}'
    assert replay.route(event, settings) == (settings.topic("usage"), b"acme")
    assert replay.route(b'{"event_type":"usage.recorded","pad":1e400}', settings) is None


def test_a_line_replay_cannot_route_is_named_with_the_reason_offline_dead_letters_it_for() -> None:
    """Not only lines without an event type: JSON that neither orjson nor the contract reads."""
    assert replay.unroutable(b'{"no": "event_type"}') == "no known event_type"
    assert replay.unroutable(b'{"event_type": "usage.recorded"}') == "no account_id"
    assert "not valid JSON" in replay.unroutable(b"not json")
    big_amount = b'{"event_id":"e","event_type":"subscription.started","account_id":"a","amount":1e400}'
    assert replay.route(big_amount, Settings(topic_prefix="t.", partitions=PARTITIONS)) is None
    assert "field 'amount' of subscription.started: Input should be a finite number" in replay.unroutable(
        big_amount
    )
