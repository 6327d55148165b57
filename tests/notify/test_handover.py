"""Partitions moving between notifiers of one group: the worker gives back the alerts of revoked
partitions, the sent log follows its topic, and a lane waits for it on assignment."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streamer.notify.config import Destination, Retry
from streamer.notify.delivery import DestinationWorker, Outcome, Response
from streamer.notify.lane import Lane
from streamer.notify.metrics import NotifyMetrics
from streamer.notify.sentlog import SEP, KafkaSentLog, MemorySentLog
from streamer.notify.service import decode_alert
from streamer.stream.access import KafkaAccess

from .fakes import FakeSender, alert
from .test_delivery import drain, make

TOPIC = "cs.alerts"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class HeldSender(FakeSender):
    """Holds each post until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.posting = asyncio.Event()

    async def post(self, destination: Destination, payload: dict[str, Any], key: str) -> Response:
        self.posting.set()
        await self.release.wait()
        return await super().post(destination, payload, key)


async def test_withdraw_drops_only_the_queued_alerts_of_the_revoked_partitions() -> None:
    sender = FakeSender()
    worker, _, _ = make(sender)
    acks: list[str] = []
    worker.submit(alert("a0"), lambda: acks.append("a0"), P0)
    worker.submit(alert("a1"), lambda: acks.append("a1"), P1)
    worker.submit(alert("b0"), lambda: acks.append("b0"), P0)
    # the same alert read again from the partition kept: it stays, with that reading's ack only
    worker.submit(alert("a0"), lambda: acks.append("a0 again"), P1)
    assert worker.withdraw([P0]) == 1 and worker.pending == 2
    await drain(worker)
    assert sender.delivered() == ["a0", "a1"]
    assert acks == ["a0 again", "a1"], "a withdrawn reading was acked"
    # withdrawn, then read again (the partition came back): sent once
    worker.submit(alert("b0"), lambda: acks.append("b0"), P0)
    await drain(worker)
    assert sender.delivered() == ["a0", "a1", "b0"] and acks[-1] == "b0"


async def test_the_batch_being_sent_is_not_withdrawn_but_awaited_until_recorded() -> None:
    sender, sent = HeldSender(), MemorySentLog()
    worker, _, _ = make(sender, sent)
    acks: list[str] = []
    worker.submit(alert("a0"), lambda: acks.append("a0"), P0)
    worker.submit(alert("b0"), lambda: acks.append("b0"), P0)
    task = asyncio.create_task(worker.run())
    await sender.posting.wait()
    assert worker.sending([P0]) and not worker.sending([P1])
    assert worker.withdraw([P0]) == 1  # b0 only: a0 is on its way
    assert await worker.settle([P1], 0.01), "waited for a batch of a partition kept"
    assert not await worker.settle([P0], 0.05), "the wait is bounded"
    settling = asyncio.create_task(worker.settle([P0], 5.0))
    await asyncio.sleep(0.01)
    assert not settling.done()
    sender.release.set()
    assert await settling
    assert ("hook", "a0") in sent and acks == ["a0"]
    await asyncio.sleep(0.01)
    task.cancel()
    assert sender.delivered() == ["a0"] and worker.pending == 0


async def test_an_alert_withdrawn_from_a_digest_being_collected_is_left_out() -> None:
    sender = FakeSender()
    worker, _, _ = make(sender, digest_seconds=0.1)
    task = asyncio.create_task(worker.run())
    worker.submit(alert("a0"), lambda: None, P0)
    worker.submit(alert("a1"), lambda: None, P1)
    await asyncio.sleep(0.02)  # both collected, the window still open
    assert not worker.sending([P0, P1])
    assert worker.withdraw([P0]) == 1
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not worker.pending:
            break
    task.cancel()
    assert sender.delivered() == ["a1"]


async def test_a_destination_that_never_answers_queues_no_more_after_each_rebalance() -> None:
    """Withdrawn alerts were left in the queue for the worker to skip, but a batch retried for
    good never gets there: each rebalance that read the same alerts again added one more entry per
    alert (21,000 for 1,000 pending alerts after 20 rebalances). The queue holds what is pending."""

    class Down(FakeSender):
        async def post(self, destination: Destination, payload: dict[str, Any], key: str) -> Response:
            return Response(Outcome.retry, "HTTP 503")

    async def a_turn(seconds: float) -> None:  # the backoff, without the waiting
        await asyncio.sleep(0)

    hook = Destination.model_validate({"name": "hook", "url": "http://127.0.0.1:9/x"})
    worker = DestinationWorker(hook, Retry(), Down(), MemorySentLog(), NotifyMetrics(), sleep=a_turn)
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(20):
            for n in range(50):
                worker.submit(alert(f"a{n}"), lambda: None, P0)
            await asyncio.sleep(0)
            worker.withdraw([P0])  # revoked, then assigned back and read again
            assert worker._queue.qsize() <= worker.pending
    finally:
        task.cancel()


class TailConsumer:
    """The sent log's consumer: `getmany` hands out the batches put in `batches`."""

    def __init__(self, tp: TopicPartition) -> None:
        self.tp, self.end, self.read_to = tp, 0, 0
        self.batches: asyncio.Queue[list[tuple[str, str, bool]]] = asyncio.Queue()

    def write(self, *pairs: tuple[str, str, bool]) -> None:
        """Records as another notifier writes them: (destination, alert id, tombstone)."""
        self.end += len(pairs)
        self.batches.put_nowait(list(pairs))

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                pairs = await self.batches.get()
        except TimeoutError:
            return {}
        records = []
        for destination, alert_id, tombstone in pairs:
            value = None if tombstone else orjson.dumps({"status": "sent"})
            records.append(Record(f"{destination}{SEP}{alert_id}".encode(), value))
            self.read_to += 1
        return {self.tp: records}

    async def position(self, tp: TopicPartition) -> int:
        return self.read_to

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end for tp in tps}

    async def stop(self) -> None:
        pass


class Record:
    def __init__(self, key: bytes, value: bytes | None) -> None:
        self.key, self.value = key, value


def following() -> tuple[KafkaSentLog, TailConsumer]:
    tp = TopicPartition("cs.notify.sent", 0)
    log = KafkaSentLog(cast(KafkaAccess, None), tp.topic)
    consumer = TailConsumer(tp)
    log._partitions, log._consumer = [tp], cast(AIOKafkaConsumer, consumer)
    log._tail = asyncio.create_task(log._follow(cast(AIOKafkaConsumer, consumer)))
    return log, consumer


async def test_the_sent_log_applies_what_other_notifiers_record_after_its_start() -> None:
    log, consumer = following()
    try:
        assert await log.catch_up(0.5)  # nothing recorded yet
        consumer.write(("crm", "a1", False), ("crm", "a2", False))
        assert await log.catch_up(2.0)
        assert ("crm", "a1") in log and ("crm", "a2") in log
        consumer.write(("crm", "a1", True))  # a tombstone forgets the pair
        assert await log.catch_up(2.0)
        assert ("crm", "a1") not in log and ("crm", "a2") in log
    finally:
        await log.stop()
    assert log._tail is None and log._consumer is None


async def test_catching_up_is_bounded_when_the_tail_does_not_reach_the_end() -> None:
    log, consumer = following()
    try:
        consumer.end = 5  # recorded, but never handed to the tail
        assert not await log.catch_up(0.2)
    finally:
        await log.stop()


class SlowSentLog(MemorySentLog):
    """Knows the previous owner's records only once `caught` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.caught = asyncio.Event()

    async def catch_up(self, timeout_s: float) -> bool:
        await self.caught.wait()
        return True


class LaneConsumer:
    """Hands out one record of `alert` a0 on P0 once, then nothing."""

    def __init__(self) -> None:
        self.assigned = {P0, P1}
        self.records: dict[TopicPartition, list[Any]] = {
            P0: [type("R", (), {"offset": 0, "value": orjson.dumps(alert("a0"))})()]
        }
        self.commits: list[dict[TopicPartition, OffsetAndMetadata]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        records, self.records = self.records, {}
        return records

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.append(offsets)

    def pause(self, *tps: TopicPartition) -> None:
        pass

    def resume(self, *tps: TopicPartition) -> None:
        pass


async def test_a_lane_hands_over_nothing_until_the_sent_log_has_read_the_previous_owners_records() -> None:
    sent = SlowSentLog()
    worker, clock, metrics = make(FakeSender(), sent)
    lane = Lane(worker, cast(AIOKafkaConsumer, LaneConsumer()), TOPIC, 10, metrics, decode_alert, clock)
    await lane.hand_over([])  # a rebalance starts (the first one revokes nothing)
    taking = asyncio.create_task(lane.take_over([P0, P1]))
    stepping = asyncio.create_task(lane.step())
    await asyncio.sleep(0.05)
    assert not stepping.done() and worker.pending == 0, "an alert handed over before the sent log caught up"
    await sent.record("hook", ["a0"], "sent")  # what the previous owner recorded, now read
    sent.caught.set()
    await asyncio.wait_for(asyncio.gather(taking, stepping), 2)
    assert worker.pending == 0 and lane.progress.committable() == {P0: 1}, "a0 sent again"


async def test_a_revocation_withdraws_waits_commits_and_forgets() -> None:
    sender = HeldSender()
    worker, clock, metrics = make(sender)
    consumer = LaneConsumer()
    consumer.records = {
        P0: [type("R", (), {"offset": n, "value": orjson.dumps(alert(f"a{n}"))})() for n in range(3)],
        P1: [type("R", (), {"offset": 0, "value": orjson.dumps(alert("b0"))})()],
    }
    lane = Lane(worker, cast(AIOKafkaConsumer, consumer), TOPIC, 10, metrics, decode_alert, clock)
    await lane.step()
    task = asyncio.create_task(worker.run())
    await sender.posting.wait()  # a0 is being sent
    handing = asyncio.create_task(lane.hand_over([P0]))
    await asyncio.sleep(0.02)
    assert not handing.done() and worker.pending == 2  # a1 and a2 withdrawn; a0 and b0 left
    sender.release.set()
    await asyncio.wait_for(handing, 2)
    assert consumer.commits[-1][P0].offset == 1, "committed past a withdrawn alert, or not a0"
    assert P0 not in lane.progress.committable()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not worker.pending:
            break
    task.cancel()
    assert sender.delivered() == ["a0", "b0"]


async def test_a_stopping_lane_does_not_wait_for_the_batch_being_sent() -> None:
    """A SIGTERM during a rebalance of a dead destination's group waited 10 s in `settle`, and the
    stop came close to the 20 s grace before a kill."""
    sender = HeldSender()
    worker, clock, metrics = make(sender)
    consumer = LaneConsumer()
    consumer.records = {P0: [type("R", (), {"offset": 0, "value": orjson.dumps(alert("a0"))})()]}
    lane = Lane(worker, cast(AIOKafkaConsumer, consumer), TOPIC, 10, metrics, decode_alert, clock)
    await lane.step()
    task = asyncio.create_task(worker.run())
    await sender.posting.wait()  # a0 is being sent and held
    lane.stopping = True

    async def waited(*_: object) -> bool:
        raise AssertionError("a stopping lane waited for the batch being sent")

    worker.settle = waited  # type: ignore[method-assign]
    async with asyncio.timeout(30):  # bounds a hang only: the check is that settle is not awaited
        await lane.hand_over([P0])
    task.cancel()


async def test_a_batch_in_retry_that_another_notifier_delivered_meanwhile_is_not_sent_again() -> None:
    """A previous owner whose wait ran out kept retrying the batch of a revoked partition while the
    new owner delivered it: a dead destination got up to three copies of a digest."""
    sent = MemorySentLog()
    sender = FakeSender([503, 503, 503])
    worker, _clock, metrics = make(sender, sent)

    async def sleep(seconds: float) -> None:  # meanwhile the new owner delivers and records it
        assert worker.retrying
        await sent.record("hook", ["a0"], "sent")

    worker._sleep = sleep
    worker.submit(alert("a0"), lambda: None, P0)
    await drain(worker)
    assert [status for *_, status in sender.requests] == [503], "sent again after the other delivered it"
    assert not worker.retrying and worker.pending == 0
    assert metrics.deduped.labels("hook")._value.get() == 1


class CancelledOnStop:
    async def stop(self) -> None:
        raise asyncio.CancelledError  # what aiokafka's fetcher raised with the broker away


async def test_the_sent_log_stops_when_its_consumer_cannot() -> None:
    """A SIGTERM with the broker away ended in a CancelledError here, and the producer, the HTTP
    session and the metrics server were never closed."""
    log = KafkaSentLog(cast(KafkaAccess, None), "cs.notify.sent")
    log._consumer = cast(AIOKafkaConsumer, CancelledOnStop())
    await log.stop()
    assert log._consumer is None
