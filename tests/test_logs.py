"""The structured logs: one JSON object per line, and the third-party lines that need no one."""

from __future__ import annotations

import logging

import orjson
import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError

from streamer.logs import configure_logging

COORDINATOR = "aiokafka.consumer.group_coordinator"


def test_a_broker_without_a_coordinator_yet_is_a_warning_and_busy_timers_are_quiet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    kafka = logging.getLogger("aiokafka")  # as a worker has it: the CLI commands quieten it
    kafka_level, kafka.level = kafka.level, logging.NOTSET
    try:
        configure_logging("info")
        log = logging.getLogger(COORDINATOR)
        log.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
        log.error("Group Coordinator Request failed: %s", KafkaConnectionError())
        timers = logging.getLogger("mode.timers")
        timers.warning("Timer %s is overlapping (interval=%r runtime=%r)", "release_idle", 0.5, 1.4)
        logging.getLogger("streamer.stream").warning("kept")
    finally:
        entries = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
        root.handlers[:], root.level = handlers, level
        kafka.setLevel(kafka_level)
    assert [(entry["logger"], entry["level"]) for entry in entries] == [
        (COORDINATOR, "warning"),
        (COORDINATOR, "error"),  # anything else stays an error
        ("streamer.stream", "warning"),
    ]
    assert entries[0]["msg"].startswith("the broker has no group coordinator yet (starting?); asking again")
