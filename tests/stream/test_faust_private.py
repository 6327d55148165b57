"""The private faust names the worker relies on exist, with the shape it expects."""

from __future__ import annotations

from typing import Any

import pytest
from faust.types import TP

from streamer.stream import faust_private
from streamer.stream.faust_private import PrivateName


def test_every_private_faust_name_exists_with_the_expected_signature_in_the_pinned_faust() -> None:
    assert faust_private.problems() == []


def test_a_renamed_or_reshaped_name_is_reported_with_what_depends_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class UpgradedConsumer:
        async def _wait_next_records(self, timeout: float, extra: int) -> None: ...

    names = [
        PrivateName(UpgradedConsumer, "_wait_next_records", ("self", "timeout"), "dropping fetches"),
        PrivateName(UpgradedConsumer, "_is_changelog_tp", ("self", "tp"), "changelog records"),
    ]
    monkeypatch.setattr(faust_private, "NAMES", (*faust_private.NAMES, *names))
    found = faust_private.problems()
    assert len(found) == 2
    assert "UpgradedConsumer._wait_next_records" in found[0] and "dropping fetches" in found[0]
    assert "UpgradedConsumer._is_changelog_tp is missing" in found[1]


def test_an_attribute_is_only_checked_for_existence() -> None:
    assert PrivateName(faust_private, "current_event", None, "tests").problem() is None
    assert "missing" in (PrivateName(faust_private, "nothing_here", None, "tests").problem() or "")


def test_the_aiokafka_names_and_the_other_faust_override_are_pinned_too() -> None:
    """The private names reached from dead_letters.py (the dead-letter topic's partition count)
    and consumer.py's commit override are checked with the rest."""
    from aiokafka.client import AIOKafkaClient
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    pinned = {(name.owner, name.name): name.parameters for name in faust_private.NAMES}
    assert pinned[(AIOKafkaClient, "fetch_all_metadata")] == ("self",)
    assert pinned[(AIOKafkaConsumerThread, "_commit")] == ("self", "offsets")
    assert "_client" in faust_private.AIOKAFKA_CONSUMER_STATE


def test_an_attribute_aiokafkas_consumer_no_longer_sets_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    state = {**faust_private.AIOKAFKA_CONSUMER_STATE, "_renamed_client": "the partition count"}
    monkeypatch.setattr(faust_private, "AIOKAFKA_CONSUMER_STATE", state)
    assert faust_private.problems() == [
        "aiokafka's AIOKafkaConsumer no longer sets _renamed_client (used by the partition count)"
    ]


async def test_topic_partitions_asks_the_consumers_client_for_the_topics_metadata() -> None:
    class Metadata:
        def partitions_for_topic(self, topic: str) -> set[int] | None:
            return {0, 1, 2} if topic == "cs.deadletter" else None

    class Client:
        async def fetch_all_metadata(self) -> Metadata:
            return Metadata()

    class Consumer:
        _client = Client()

    consumer: Any = Consumer()
    assert await faust_private.topic_partitions(consumer, "cs.deadletter") == {0, 1, 2}
    assert await faust_private.topic_partitions(consumer, "cs.unknown") is None


def test_committed_offsets_is_fausts_record_or_nothing_yet() -> None:
    class Consumer:
        def __init__(self) -> None:
            self._committed_offset = {TP("cs.usage", 0): 12}

    assert faust_private.committed_offsets(Consumer()) == {TP("cs.usage", 0): 12}
    assert faust_private.committed_offsets(object()) == {}
