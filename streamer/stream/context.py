"""Act as one event of a partition while touching tables outside faust's own iteration.

faust routes a table read or write (and its changelog record) to the partition of the "current
event". We process a whole batch, grouped by partition, so we set the current event to one of
that partition's events for the duration of its table work.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from streamer.stream.faust_private import current_event


@contextmanager
def acting_as(event: Any) -> Iterator[None]:
    token = current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        current_event.reset(token)


def acted_as() -> Any | None:
    """The event the worker acts as now (`acting_as`, or faust's own iteration), if any."""
    ref = current_event.get(None)
    return None if ref is None else ref()


@dataclass(frozen=True)
class _Position:
    topic: str
    partition: int


class PartitionEvent:
    """Stands for an event of `partition` where a table write has no message behind it (a
    partition record that must be written before any of its messages is applied)."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Position(topic, partition)
