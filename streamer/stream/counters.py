"""The scorer's running totals, read by its logs and metrics."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Running totals for logs and metrics."""

    processed: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rerouted: int = 0
    copies_again: int = 0  # re-routed copies sent again, handled already (`streamer/state/copies.py`)
    stale: int = 0  # fetched before a rebalance or its recovery ended, or delivered twice
    reread: int = 0  # delivered again after a restart or rebalance, already in the stored state
    dead_letters_known: int = 0  # rejected again after a restart: its dead letter already written
    offset_gaps: int = 0  # input offsets lost for good: gone from Kafka before they were read
    gap_rereads: int = 0  # deliveries that skipped offsets, refused and read again from the first
    empty_offsets: int = 0  # input offsets without a record (transaction markers, aborted records)
    consumer_gaps: int = 0  # offset ranges faust's consumer recorded as gaps (counted by it)
    rereads: int = 0  # stalled partitions sought back to their next offset
    alerts: int = 0
    snapshots: int = 0
    batches: int = 0
    by_rule: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_latency_s: float = 0.0
