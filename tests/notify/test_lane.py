"""One destination's lane: what it hands its worker, what it may commit, which offsets it adopts."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from streamer.notify.config import NotifyConfig
from streamer.notify.lane import Lane, lane_group
from streamer.notify.service import Notifier, NotifyOptions, decode_alert
from streamer.settings import Settings

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


class BrokenConsumer:
    """A consumer whose stop ends in a CancelledError, as aiokafka's did with the broker away."""

    def assignment(self) -> set[TopicPartition]:
        return set()

    async def stop(self) -> None:
        raise asyncio.CancelledError


async def test_a_consumer_that_cannot_leave_its_group_does_not_stop_the_shutdown() -> None:
    crm = lane()
    crm.consumer = cast(AIOKafkaConsumer, BrokenConsumer())
    await crm.stop()  # logged, not raised: the other destinations and the dedupe log still close


class SilentBroker:
    """A consumer assigned one partition whose broker answers the lag query, then stops answering."""

    def __init__(self) -> None:
        self.answering = True

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if not self.answering:
            raise KafkaConnectionError("the broker is away")
        return dict.fromkeys(partitions, 0)

    async def position(self, tp: TopicPartition) -> int:
        return 0


async def test_healthz_is_degraded_while_the_broker_has_not_answered_a_destination_for_10_s() -> None:
    """It said `ok`, lag 0 and pending 0, all through a broker outage."""
    worker, clock, metrics = make(FakeSender())
    broker = SilentBroker()
    crm = Lane(worker, cast(AIOKafkaConsumer, broker), TOPIC, 10, metrics, decode_alert, clock)
    config = NotifyConfig.model_validate({"destinations": [{"name": "hook", "url": "http://127.0.0.1:9/x"}]})
    notifier = Notifier(Settings(), config, NotifyOptions(group_id="hs-notify"), sender=FakeSender())
    notifier.lanes = [crm]
    await crm.update_lag()
    assert notifier.health()["status"] == "ok"
    broker.answering = False
    await clock.sleep(9.0)
    await crm.update_lag()
    assert notifier.health()["status"] == "ok", "9 s without an answer is not an outage yet"
    await clock.sleep(2.0)
    await crm.update_lag()
    assert notifier.health() == {"status": "degraded", "in_flight": 0, "broker_silent_s": {"hook": 11.0}}
    broker.answering = True
    await crm.update_lag()
    assert notifier.health()["status"] == "ok"
