"""Structured logs: one JSON object per line on stderr, with any `extra=` fields included."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class CoordinatorNotReady(logging.Filter):
    """aiokafka logs an error each time it asks for the group coordinator before the broker has
    one (a fresh broker creating its offsets topic, or one just restarted): it asks again, and a
    worker started with the stack logged an error that needed no one. A warning says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.ERROR
            and record.msg == "Group Coordinator Request failed: %s"
            and "GroupCoordinatorNotAvailable" in str(record.args)
        ):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "the broker has no group coordinator yet (starting?); asking again: %s"
        return True


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka.consumer.group_coordinator").addFilter(CoordinatorNotReady())
    # The worker's timers wait for the scorer while it scores a batch, by design (see
    # streamer.stream.app); mode's timers warned "Timer ... is overlapping" at each such wait,
    # about once a second while the worker was busy, a hundred lines for one backfill.
    logging.getLogger("mode.timers").setLevel(logging.ERROR)
