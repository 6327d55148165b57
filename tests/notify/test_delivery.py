"""One destination's worker: retries, rejection, dedupe by alert id, digests, commit progress."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from streamer.notify.config import Destination, Retry
from streamer.notify.delivery import DestinationWorker, Outcome, classify, without_url
from streamer.notify.metrics import NotifyMetrics
from streamer.notify.progress import Progress
from streamer.notify.ratelimit import TokenBucket
from streamer.notify.sentlog import MemorySentLog
from tests.fixtures import wait_until_async

from .fakes import FakeClock, FakeSender, alert

RETRY = Retry(initial_seconds=1, multiplier=2, max_seconds=8, jitter=0)


def make(
    sender: FakeSender, sent: MemorySentLog | None = None, **options: Any
) -> tuple[DestinationWorker, FakeClock, NotifyMetrics]:
    clock, metrics = FakeClock(), NotifyMetrics()
    destination = Destination.model_validate({"name": "hook", "url": "http://127.0.0.1:9/x", **options})
    bucket = TokenBucket(destination.rate_per_minute / 60, destination.burst, clock=clock, sleep=clock.sleep)
    worker = DestinationWorker(
        destination,
        RETRY,
        sender,
        sent if sent is not None else MemorySentLog(),
        metrics,
        bucket=bucket,
        sleep=clock.sleep,
        draw=lambda: 0.5,
    )
    return worker, clock, metrics


def value(metrics: NotifyMetrics, name: str) -> float:
    return (
        metrics.registry.get_sample_value(f"healthstream_notify_{name}_total", {"destination": "hook"}) or 0
    )


async def drain(worker: DestinationWorker) -> None:
    task = asyncio.create_task(worker.run())
    for _ in range(1000):
        await asyncio.sleep(0)
        if not worker.pending:
            break
    task.cancel()


def test_status_classes() -> None:
    assert [classify(s).outcome for s in (200, 204, 429, 500, 503, 408, 404, 410, 301, 400, 413, 422)] == [
        Outcome.sent,
        Outcome.sent,
        Outcome.retry,
        Outcome.retry,
        Outcome.retry,
        Outcome.retry,
        Outcome.retry,  # the destination's fault (test_rejections)
        Outcome.retry,
        Outcome.retry,
        Outcome.rejected,
        Outcome.rejected,
        Outcome.rejected,
    ]
    assert classify(429, "30").retry_after == 30


async def test_failures_are_retried_with_backoff_and_acked_once_sent() -> None:
    sender = FakeSender([503, ConnectionRefusedError(), 500, 200])
    worker, clock, metrics = make(sender)
    acks: list[str] = []
    worker.submit(alert("a1"), lambda: acks.append("a1"))
    await drain(worker)
    assert [status for *_, status in sender.requests] == [503, "error", 500, 200]
    assert clock.sleeps == [1, 2, 4]
    assert acks == ["a1"]
    assert (value(metrics, "sent"), value(metrics, "retried"), value(metrics, "failed")) == (1, 3, 0)


async def test_a_4xx_is_a_definitive_rejection_acked_without_retry() -> None:
    sender = FakeSender([400])
    sent = MemorySentLog()
    worker, clock, metrics = make(sender, sent)
    acks: list[str] = []
    worker.submit(alert("a1"), lambda: acks.append("a1"))
    await drain(worker)
    assert len(sender.requests) == 1 and clock.sleeps == [] and acks == ["a1"]
    assert value(metrics, "failed") == 1 and sent.pairs == {("hook", "a1"): "rejected"}


async def test_an_unforeseen_error_gives_up_that_message_and_the_destination_goes_on() -> None:
    """An error no rule foresaw (in sending, or in formatting an alert) rejects that message,
    recorded and acked like a 4xx: retried, it would meet the same error; left to end the
    notifier, it met it again after every restart."""

    class Exploding(FakeSender):
        async def post(self, destination, payload, key):  # type: ignore[no-untyped-def]
            if "a1" in str(payload):
                raise RuntimeError("boom")
            return await super().post(destination, payload, key)

    for options, unforeseen in (({}, "a1"), ({"format": "slack"}, "a3")):
        sender, sent = Exploding(), MemorySentLog()
        worker, clock, metrics = make(sender, sent, **options)
        acks: list[str] = []
        odd = alert("a3", reasons=5)  # a Slack message cannot be made of it
        for item in (alert("a1"), alert("a2"), odd, alert("a4")):
            worker.submit(item, lambda alert_id=item["alert_id"], acks=acks: acks.append(alert_id))
        await drain(worker)
        assert acks == ["a1", "a2", "a3", "a4"] and clock.sleeps == []
        assert sent.pairs[("hook", unforeseen)] == "rejected", options
        assert value(metrics, "failed") == 1 and value(metrics, "sent") == 3


async def test_429_waits_at_least_retry_after() -> None:
    class Limited(FakeSender):
        async def post(self, destination, payload, key):  # type: ignore[no-untyped-def]
            response = await super().post(destination, payload, key)
            if len(self.requests) == 1:
                return classify(429, "6")
            return response

    worker, clock, _ = make(Limited())
    worker.submit(alert("a1"), lambda: None)
    await drain(worker)
    assert clock.sleeps == [6]


async def test_an_alert_already_sent_is_not_sent_again() -> None:
    sent = MemorySentLog()
    sender = FakeSender()
    worker, _, metrics = make(sender, sent)
    acks: list[str] = []
    worker.submit(alert("a1"), lambda: acks.append("first"))
    worker.submit(alert("a1"), lambda: acks.append("while queued"))
    await drain(worker)
    worker.submit(alert("a1"), lambda: acks.append("after"))
    await drain(worker)
    assert sender.delivered() == ["a1"]
    assert acks == ["first", "while queued", "after"]
    assert value(metrics, "deduped") == 2


async def test_dedupe_is_per_destination() -> None:
    sent = MemorySentLog()
    await sent.record("other", ["a1"], "sent")
    sender = FakeSender()
    worker, _, _ = make(sender, sent)
    worker.submit(alert("a1"), lambda: None)
    await drain(worker)
    assert sender.delivered() == ["a1"]


async def test_digest_collects_for_its_window_and_sends_one_message() -> None:
    sender = FakeSender()
    # A window far longer than the submissions take, even on a busy machine (0.2 s with a
    # pause between them split the digest when the loop stalled).
    worker, _, metrics = make(sender, digest_seconds=2)
    acks: list[str] = []
    task = asyncio.create_task(worker.run())
    for n in range(5):
        worker.submit(alert(f"a{n}"), lambda n=n: acks.append(f"a{n}"))
        await asyncio.sleep(0)
    await wait_until_async("the digest to be sent", lambda: not worker.pending)
    task.cancel()
    assert len(sender.requests) == 1
    assert sender.delivered() == [f"a{n}" for n in range(5)]
    assert sorted(acks) == [f"a{n}" for n in range(5)]
    assert (value(metrics, "messages"), value(metrics, "sent")) == (1, 5)


async def test_digest_is_cut_at_max_digest_alerts() -> None:
    sender = FakeSender()
    worker, _, _ = make(sender, digest_seconds=60, max_digest_alerts=2)
    for n in range(4):
        worker.submit(alert(f"a{n}"), lambda: None)
    task = asyncio.create_task(worker.run())
    for _ in range(100):
        await asyncio.sleep(0)
        if not worker.pending:
            break
    task.cancel()
    assert [len(payload["alerts"]) for _, payload, *_ in sender.requests] == [2, 2]


async def test_rate_limit_spaces_messages() -> None:
    sender = FakeSender()
    worker, clock, metrics = make(sender, rate_per_minute=60, burst=2)
    for n in range(4):
        worker.submit(alert(f"a{n}"), lambda: None)
    await drain(worker)
    assert len(sender.requests) == 4
    assert clock.sleeps == [1, 1]  # two at once, then one a second
    assert value(metrics, "rate_limited_seconds") == 2


def test_progress_commits_only_past_alerts_every_destination_finished() -> None:
    tp = TopicPartition("cs.alerts", 0)
    progress = Progress()
    first = progress.read(tp, 10, 2)
    second = progress.read(tp, 11, 1)
    progress.read(tp, 12, 0)  # routed nowhere: done at once
    assert progress.committable() == {tp: 10}
    second()
    first()
    assert progress.committable() == {tp: 10}  # one destination of offset 10 still sending
    first()
    assert progress.committable() == {tp: 13}


def test_progress_ignores_callbacks_from_before_a_revocation() -> None:
    tp, other = TopicPartition("cs.alerts", 0), TopicPartition("cs.alerts", 1)
    progress = Progress()
    stale = progress.read(tp, 5, 1)
    kept = progress.read(other, 7, 1)
    progress.forget([tp])
    fresh = progress.read(tp, 5, 1)
    stale()
    assert progress.committable()[tp] == 5
    fresh()
    kept()
    assert progress.committable() == {tp: 6, other: 8}


def test_a_delivery_error_names_the_destinations_origin_not_its_secret_path() -> None:
    """aiohttp's errors quote the whole URL, and a webhook's path or query is often its secret."""
    url = "https://hooks.example.com/services/T000/B000/SECRETPATH?token=SECRETTOKEN"
    destination = Destination(name="slack", url=url)
    detail = f"ClientResponseError: 400, message='Too many headers', url='{url}'"
    shown = without_url(detail, destination)
    assert "SECRET" not in shown and "https://hooks.example.com:443/..." in shown
