"""Where a destination's new group starts: the notifier's mark, else `--start-from`."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError
from aiokafka.structs import OffsetAndMetadata

from streamer.notify.starts import furthest, of_topic, retried, starting_point

TOPIC = "cs.alerts"


def tp(partition: int) -> TopicPartition:
    return TopicPartition(TOPIC, partition)


def at(*offsets: int, topic: str = TOPIC) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in enumerate(offsets)}


ENDS = {tp(0): 50, tp(1): 60, tp(2): 70}
BEGINNINGS = {tp(0): 3, tp(1): 0, tp(2): 0}


def test_a_new_group_starts_at_the_mark_and_where_it_has_none_as_start_from_says() -> None:
    mark = at(40, 45)  # nothing marked in partition 2 yet
    latest = starting_point(mark, BEGINNINGS, ENDS, "latest")
    assert {t: m.offset for t, m in latest.items()} == {tp(0): 40, tp(1): 45, tp(2): 70}
    earliest = starting_point(mark, BEGINNINGS, ENDS, "earliest")
    assert {t: m.offset for t, m in earliest.items()} == {tp(0): 40, tp(1): 45, tp(2): 0}


def test_without_a_mark_a_new_group_starts_at_the_end_or_the_beginning() -> None:
    assert {t: m.offset for t, m in starting_point({}, BEGINNINGS, ENDS, "latest").items()} == ENDS
    assert {t: m.offset for t, m in starting_point({}, BEGINNINGS, ENDS, "earliest").items()} == BEGINNINGS
    assert starting_point(at(5), {}, {}, "latest") == {}, "no partitions yet: nothing to commit"


def test_only_the_topics_committed_offsets_count() -> None:
    assert of_topic({**at(5, -1), **at(9, topic="other")}, TOPIC) == {tp(0): OffsetAndMetadata(5, "")}


def test_the_mark_is_the_furthest_any_destination_has_read_to() -> None:
    dead, healthy = {tp(0): 3, tp(1): 8}, {tp(0): 40, tp(2): 7}
    assert furthest([dead, healthy]) == {tp(0): 40, tp(1): 8, tp(2): 7}
    assert furthest([]) == {}


async def test_a_retriable_broker_error_is_retried_until_it_answers_and_others_are_not() -> None:
    """A new cluster answers GroupCoordinatorNotAvailable until `__consumer_offsets` exists: the
    first notifier on it ended with a traceback."""
    answers: list[Exception | str] = [
        GroupCoordinatorNotAvailableError(),
        GroupCoordinatorNotAvailableError(),
        "offsets",
    ]

    async def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await retried(call, 30.0, "reading offsets") == "offsets"

    async def refused() -> str:
        raise GroupAuthorizationFailedError()

    with pytest.raises(GroupAuthorizationFailedError):
        await retried(refused, 30.0, "reading offsets")

    async def never() -> str:
        raise GroupCoordinatorNotAvailableError()

    with pytest.raises(GroupCoordinatorNotAvailableError):
        await retried(never, 0.0, "reading offsets")
