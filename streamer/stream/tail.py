"""Follow `cs.alerts` and print each alert as a line a person can read."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from streamer.contract.vocabulary import Severity
from streamer.settings import Settings
from streamer.stream.access import KafkaAccess
from streamer.stream.broker import wait_for_broker
from streamer.stream.clients import start_consumer
from streamer.stream.recent_alerts import as_alert

SEVERITY_MARK: dict[str, str] = {Severity.critical: "CRIT", Severity.warning: "WARN", Severity.info: "info"}


def shown(value: Any) -> str:
    """`value` as text safe to print on a terminal: control and format characters escaped.

    Ids and reasons come from producers' data (an account id may hold any character the contract
    allows); printed raw, an escape sequence in one would act on the reader's terminal (clear it,
    retitle it, hide lines) and a right-to-left override would reorder what they read."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text
    )


def json_line(alert: dict[str, Any]) -> str:
    """The alert as one line of JSON whose every character prints: JSON escapes only the
    controls below U+0020, and a C1 control (U+009B is CSI) or a bidi override from a producer
    then reached the terminal raw. Outside strings JSON holds ASCII only, so escaping these
    characters as `\\uXXXX` keeps the line the same JSON."""
    text = orjson.dumps(alert).decode()
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else json.dumps(char)[1:-1] for char in text)


def format_alert(alert: dict[str, Any]) -> str:
    reasons = "; ".join(shown(r["message"]) for r in alert.get("reasons", [])[:3])
    severity = SEVERITY_MARK.get(alert["severity"], shown(alert["severity"]))
    return (
        f"{shown(alert['raised_at'])}  {severity:4}  "
        f"{shown(alert['account_id']):<16} {shown(alert['rule']):<22} score {shown(alert['score']):>5} "
        f"{shown(alert['band']):<6} MRR {shown(alert['mrr']):>10}  {reasons}"
    )


class NoAlertsTopic(Exception):
    """The broker has no alerts topic under the deployment's prefix."""


async def tail(
    settings: Settings,
    emit: Callable[[dict[str, Any]], None],
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    timeout_s: float | None = None,
    connect_timeout_s: float = 30.0,
    topic_wait_s: float = 0.0,
    skipped: Callable[[str], None] = lambda why: None,
) -> int:
    """Call `emit` for each alert until `limit` alerts or `timeout_s` seconds; return the count.
    A record that is not an alert goes to `skipped` with where it is and why.

    BrokerUnavailable when no broker answers within `connect_timeout_s`; NoAlertsTopic when the
    broker has no such topic (subscribing to it would have the broker create it with its own
    defaults, which a worker then refuses: another partition count), after `topic_wait_s` for
    one just created: a busy broker's metadata can lag its creation for a moment (the demo's
    watcher, started right after creating the topics, ended on it once in a loaded test run)."""
    kafka = KafkaAccess.of(settings)
    await wait_for_broker(kafka, connect_timeout_s, "following the alerts")
    topic = settings.topic("alerts")
    consumer = AIOKafkaConsumer(
        **kafka.client_options(),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
    )
    await start_consumer(consumer)  # closed again when it fails: else "Unclosed AIOKafkaConsumer" at exit
    seen = 0
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        topic_deadline = time.monotonic() + topic_wait_s
        while topic not in await consumer.topics():  # asks for every topic: creates none
            if time.monotonic() < topic_deadline:
                await asyncio.sleep(0.2)
                continue
            raise NoAlertsTopic(
                f"the broker at {kafka.bootstrap} has no topic {topic!r}: start the workers first "
                f"(they create it), or check HEALTHSTREAM_TOPIC_PREFIX ({settings.topic_prefix!r})"
            )
        consumer.subscribe([topic])
        while limit is None or seen < limit:
            if deadline is not None and time.monotonic() >= deadline:
                break
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if limit is not None and seen >= limit:
                        break
                    found = as_alert(record.value or b"")
                    if isinstance(found, str):
                        skipped(f"partition {record.partition} offset {record.offset}: {found}")
                        continue
                    emit(found)
                    seen += 1
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return seen
