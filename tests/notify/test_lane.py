"""One destination's lane: what it hands its worker, what it may commit, which offsets it adopts."""

from __future__ import annotations

from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streamer.notify.lane import Lane, lane_group, starting_offsets
from streamer.notify.service import decode_alert

from .fakes import FakeSender, alert
from .test_delivery import make

TOPIC = "cs.alerts"
TP = TopicPartition(TOPIC, 0)


def lane(**options: Any) -> Lane:
    worker, clock, metrics = make(FakeSender(), **options)
    unused = cast(AIOKafkaConsumer, None)  # `dispatch` reads no consumer
    return Lane(worker, unused, TOPIC, 10, metrics, decode_alert, clock)


def test_each_destination_commits_under_a_group_of_its_own() -> None:
    assert lane_group("hs-notify", "crm") == "hs-notify.crm"


def test_an_alert_routed_elsewhere_is_done_at_once_and_one_routed_here_waits_for_its_worker() -> None:
    crm = lane(rules=["payment_failed"])
    crm.dispatch(TP, 0, orjson.dumps(alert("a", rule="silence")))
    assert crm.progress.committable() == {TP: 1} and crm.worker.pending == 0
    crm.dispatch(TP, 1, orjson.dumps(alert("b", rule="payment_failed")))
    crm.dispatch(TP, 2, orjson.dumps(alert("c", rule="silence")))
    assert crm.worker.pending == 1
    assert crm.progress.committable() == {TP: 1}, "committed past an alert its worker has not finished"


def test_an_undeliverable_record_is_skipped_without_holding_the_offsets() -> None:
    crm = lane()
    crm.dispatch(TP, 0, b"not json")
    crm.dispatch(TP, 1, None)
    assert crm.progress.committable() == {TP: 2} and crm.worker.pending == 0


def at(*offsets: int, topic: str = TOPIC) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in enumerate(offsets)}


def test_on_the_first_start_after_the_upgrade_every_group_takes_the_shared_groups_offsets() -> None:
    shared = {**at(5, 7), **at(9, topic="other")}
    assert starting_offsets(shared, {"crm": {}, "slack": {}}, TOPIC) == {"crm": at(5, 7), "slack": at(5, 7)}


def test_a_destination_added_later_starts_where_the_others_are_not_at_the_stale_shared_group() -> None:
    lanes = {"crm": at(40, 50), "slack": at(45, 48), "late": {}}
    assert starting_offsets(at(5, 7), lanes, TOPIC) == {"late": at(45, 50)}


def test_groups_with_offsets_of_their_own_keep_them() -> None:
    assert starting_offsets(at(5, 7), {"crm": at(6, 6)}, TOPIC) == {}
    assert starting_offsets({}, {"crm": {}}, TOPIC) == {}, "nothing to start from: --start-from decides"
    assert starting_offsets(at(-1, -1), {"crm": {}}, TOPIC) == {}
