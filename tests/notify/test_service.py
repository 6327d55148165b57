"""What the notifier does with a record before routing it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from streamer.notify.config import Retry, load_notify_config
from streamer.notify.delivery import DestinationWorker
from streamer.notify.metrics import NotifyMetrics
from streamer.notify.sentlog import MemorySentLog
from streamer.notify.service import RETRYING_S, Notifier, NotifyOptions, decode_alert
from streamer.settings import Settings

from .fakes import FakeClock, FakeSender, alert
from .test_delivery import drain


def test_an_alert_record_decodes_with_extra_fields_kept() -> None:
    record = alert("a1", owner="alice")
    assert decode_alert(orjson.dumps(record)) == record


def test_undeliverable_records_say_why() -> None:
    assert decode_alert(b"{not json").startswith("not JSON")  # type: ignore[union-attr]
    assert decode_alert(b"[1, 2]") == "not a JSON object: list"
    assert decode_alert(None).startswith("not JSON")  # type: ignore[union-attr]
    assert decode_alert(orjson.dumps({"alert_id": "a1", "rule": 3})) == (
        "missing or not text: account_id, rule, severity"
    )


def test_a_record_that_is_not_an_alert_as_the_workers_write_them_is_undeliverable() -> None:
    """A `profile` of text once stopped the notifier at every start: routing read it as a table.
    Anyone who may write the alerts topic may have written such a record: it is skipped."""
    assert decode_alert(orjson.dumps(alert("a1", profile="x"))) == (
        "not an alert: profile: Input should be a valid dictionary or instance of AccountProfile"
    )
    assert str(decode_alert(orjson.dumps(alert("a2", reasons=[1])))).startswith("not an alert: reasons.0:")
    assert str(decode_alert(orjson.dumps(alert("a3", score="high")))).startswith("not an alert: score:")


def test_an_alert_id_the_dedupe_log_could_not_record_is_undeliverable() -> None:
    """An id of half a megabyte made the dedupe log's record (the id twice) larger than the
    broker takes: every destination the alert went to retried it for ever."""
    assert decode_alert(orjson.dumps(alert("a" * 128))) == alert("a" * 128)
    assert decode_alert(orjson.dumps(alert("a" * 129))) == "alert_id of 129 characters: at most 128"


def test_an_alert_that_cannot_be_written_again_is_undeliverable() -> None:
    """orjson reads 1,024 levels of nesting and writes 255: an extra field 300 levels deep failed
    the JSON digest it was batched in, and the valid alerts with it were recorded as rejected."""
    deep = b"[" * 300 + b"1" + b"]" * 300  # written by hand: orjson itself refuses to write it
    record = orjson.dumps(alert("a1"))[:-1] + b', "x": ' + deep + b"}"
    assert str(decode_alert(record)).startswith("cannot be written as JSON again:")


async def test_healthz_is_degraded_while_a_destination_has_been_retrying_for_minutes(tmp_path: Path) -> None:
    """A destination failing every request (a revoked webhook now retries for good) left
    /healthz `ok`: nothing said that nothing was delivered."""
    path = tmp_path / "n.toml"
    path.write_text('[[destinations]]\nname = "crm"\nurl = "http://127.0.0.1:9/hook"\n')
    notifier = Notifier(Settings(kafka_bootstrap="127.0.0.1:1"), load_notify_config(path), NotifyOptions("g"))
    clock, seen = FakeClock(), []
    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        seen.append(notifier.health())
        if clock.now > RETRYING_S + 60:
            gate.set()

    worker = DestinationWorker(
        notifier.config.destinations[0],
        Retry(initial_seconds=30, max_seconds=30, jitter=0),
        FakeSender([401] * 10),
        MemorySentLog(),
        NotifyMetrics(),
        sleep=sleep,
        clock=clock,
    )
    notifier.workers = [worker]
    worker.submit(alert("a1"), lambda: None)
    await drain(worker)
    assert gate.is_set()
    statuses = [(answer["status"], answer.get("retrying_s")) for answer in seen]
    assert statuses[0] == ("ok", None)  # 30 s: a failure of the moment
    assert ("degraded", {"crm": RETRYING_S + 30}) in statuses
    assert seen[-1]["last_error"] == {
        "crm": "HTTP 401: the destination refuses every alert; check its URL and headers"
    }
    assert notifier.health() == {"status": "ok", "in_flight": 0}  # delivered: ok again
