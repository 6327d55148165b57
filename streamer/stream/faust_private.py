"""Every private faust name the worker relies on, listed and checked in one place.

faust-streaming 0.15.x is pinned, and these names are not its public API: an upgrade may rename
or reshape them without notice. `problems()` says which are missing or have another shape; the
worker checks at start-up and a unit test checks in CI, so an upgrade fails loudly instead of
silently losing the guarantees that depend on them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import faust
import faust.streams
import faust.types.tuples
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

# faust's "current event": table reads and writes go to the partition of the event it holds.
current_event = faust.streams._current_event
# The lock faust holds while it records an acknowledgement (the input lane's too).
ack_lock = faust.types.tuples.ack_lock


@dataclass(frozen=True)
class PrivateName:
    """One private faust name: where it lives, the parameters we call or override it with, and
    what of ours depends on it."""

    owner: type | ModuleType
    name: str
    parameters: tuple[str, ...] | None  # None: not a callable (an attribute or a context var)
    used_by: str

    def problem(self) -> str | None:
        """What is wrong with it in the installed faust, or None."""
        where = f"{getattr(self.owner, '__qualname__', None) or self.owner.__name__}.{self.name}"
        if not hasattr(self.owner, self.name):
            return f"{where} is missing (used by {self.used_by})"
        if self.parameters is None:
            return None
        found: Callable[..., object] = getattr(self.owner, self.name)
        names = tuple(inspect.signature(found).parameters)
        if names != self.parameters:
            return f"{where}{names} no longer takes {self.parameters} (used by {self.used_by})"
        return None


NAMES = (
    PrivateName(
        faust_aiokafka.Consumer,
        "_wait_next_records",
        ("self", "timeout"),
        "stream/consumer.py: drop fetches that overlapped a seek",
    ),
    PrivateName(
        faust_aiokafka.Consumer,
        "_is_changelog_tp",
        ("self", "tp"),
        "stream/consumer.py: let changelog records through",
    ),
    PrivateName(
        faust_aiokafka.Consumer,
        "_add_gap",
        ("self", "tp", "offset_from", "offset_to"),
        "stream/consumer.py: count and log offset gaps",
    ),
    PrivateName(
        faust_aiokafka.Consumer,
        "_new_offset",
        ("self", "tp"),
        "stream/consumer.py: never commit past an input offset not acknowledged",
    ),
    PrivateName(faust.App, "_new_transport", ("self",), "stream/consumer.py: install our consumer"),
    PrivateName(faust.streams, "_current_event", None, "stream/context.py: route table writes"),
    PrivateName(faust.types.tuples, "ack_lock", None, "stream/consumer.py: acknowledge input records"),
)

# Set in the consumer's __init__, so not visible on the class: checked in its source instead.
COMMITTED_OFFSET = "_committed_offset"
CONSUMER_STATE = {
    COMMITTED_OFFSET: "stream/offsets.py and stream/consumer.py: where re-reads start",
    "_acked": "stream/consumer.py: acknowledge input records (what faust commits)",
    "_acked_index": "stream/consumer.py: acknowledge input records",
    "_read_offset": "stream/consumer.py: the input lane's read position",
    "_buffered_partitions": "stream/consumer.py: which partitions the input lane delivers",
    "_waiting_for_ack": "stream/consumer.py: wake faust's commit after acknowledgements",
}


def problems() -> list[str]:
    """Every private name that is missing or has another shape in the installed faust."""
    found = [problem for name in NAMES if (problem := name.problem()) is not None]
    source = inspect.getsource(faust_consumer.Consumer.__init__)
    for name, used_by in CONSUMER_STATE.items():
        if f"self.{name}" not in source:
            found.append(f"faust's Consumer no longer sets {name} (used by {used_by})")
    if not hasattr(faust_consumer.Consumer, "_n_acked"):
        found.append("faust's Consumer no longer counts _n_acked (used by stream/consumer.py)")
    return found
