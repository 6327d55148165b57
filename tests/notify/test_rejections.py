"""A rejected alert is not lost for good: only a delivery counts as delivered, and answers that
say the destination is misconfigured (401, 403, 404, 410, 3xx) are retried, not rejections."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from streamer.notify.delivery import Outcome, classify
from streamer.notify.sentlog import SEP, KafkaSentLog, MemorySentLog
from streamer.stream.access import KafkaAccess

from .fakes import FakeSender, alert
from .test_delivery import drain, make, value


@pytest.mark.parametrize("status", [301, 302, 307, 308, 401, 403, 404, 405, 407, 410])
def test_an_answer_blaming_the_destination_is_retried(status: int) -> None:
    """A rotated token (401), a revoked Slack webhook (403/404/410) or a moved URL (301) refuses
    every alert alike: rejecting them discarded every alert until the config was fixed."""
    response = classify(status)
    assert response.outcome is Outcome.retry
    assert response.detail.startswith(f"HTTP {status}: ") and "URL" in response.detail


@pytest.mark.parametrize("status", [400, 409, 413, 415, 422, 999, 199])
def test_an_answer_refusing_the_alert_itself_is_a_rejection(status: int) -> None:
    assert classify(status).outcome is Outcome.rejected


async def test_a_revoked_webhook_is_retried_and_the_alert_delivered_once_fixed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender, sent = FakeSender([404, 401, 301]), MemorySentLog()
    worker, clock, metrics = make(sender, sent)
    acks: list[str] = []
    worker.submit(alert("a1"), lambda: acks.append("a1"))
    with caplog.at_level("WARNING"):
        await drain(worker)
    assert [status for *_, status in sender.requests] == [404, 401, 301, 200]
    assert clock.sleeps == [1, 2, 4] and acks == ["a1"]
    assert sent.pairs == {("hook", "a1"): "sent"}
    assert (value(metrics, "retried"), value(metrics, "failed")) == (3, 0)
    faults = [
        r for r in caplog.records if r.getMessage() == "the destination refuses every request, retrying"
    ]
    assert len(faults) == 3, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(("script", "options"), [([400], {}), ([503, 503], {"max_attempts": 2})])
async def test_a_rejected_alert_is_sent_again_when_read_again(script: list[int], options: Any) -> None:
    """Rejected (or given up on after max_attempts): acked, not retried in that run, but the
    dedupe log does not count it as delivered, so reading it again (a rewound group) sends it."""
    sent = MemorySentLog()
    first, _, metrics = make(FakeSender(script), sent)
    if options:
        first.retry = first.retry.model_copy(update=options)
    acks: list[str] = []
    first.submit(alert("a1"), lambda: acks.append("first"))
    await drain(first)
    assert acks == ["first"] and value(metrics, "failed") == 1
    assert ("hook", "a1") not in sent and sent.pairs[("hook", "a1")] == "rejected"
    fixed = FakeSender()
    again, _, _ = make(fixed, sent)
    again.submit(alert("a1"), lambda: acks.append("again"))
    await drain(again)
    assert fixed.delivered() == ["a1"] and acks == ["first", "again"]
    assert ("hook", "a1") in sent


class Record:
    def __init__(self, key: bytes, value: bytes | None) -> None:
        self.key, self.value = key, value


def record(alert_id: str, status: str | None) -> Record:
    value = (
        None
        if status is None
        else orjson.dumps({"destination": "hook", "alert_id": alert_id, "status": status})
    )
    return Record(f"hook{SEP}{alert_id}".encode(), value)


def test_the_kafka_log_counts_only_deliveries_and_the_latest_record_of_a_pair_decides() -> None:
    """As compaction keeps it: a rejection recorded after a delivery (two notifiers racing) leaves
    the pair to be sent again, never lost; a record without a status (unreadable) counts as none."""
    log = KafkaSentLog(cast(KafkaAccess, None), "cs.notify.sent")
    tp = TopicPartition(log.topic, 0)
    log._apply(
        {
            tp: [
                record("sent", "sent"),
                record("rejected", "rejected"),
                record("fixed", "rejected"),
                record("fixed", "sent"),
                record("raced", "sent"),
                record("raced", "rejected"),
                Record(f"hook{SEP}odd".encode(), b"not json"),
            ]
        }
    )  # type: ignore[dict-item]
    assert log.pairs == {("hook", "sent"), ("hook", "fixed")}


class Producer:
    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_kafka_log_remembers_a_rejection_without_counting_it_as_delivered() -> None:
    log = KafkaSentLog(cast(KafkaAccess, None), "cs.notify.sent")
    log._started, log._producer = True, cast(AIOKafkaProducer, Producer())
    await log.record("hook", ["a1"], "rejected")
    await log.record("hook", ["a2"], "sent")
    assert ("hook", "a1") not in log and ("hook", "a2") in log
