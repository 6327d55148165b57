"""Feed a file of contract events through the scoring core in one process, as a stream would.

Events are partitioned like Kafka's default partitioner does (murmur2 of the account id), each
partition keeps its own stream time, and the partitions' portfolio sums are added at the end,
so the answers equal those of the stream agents on the same events.
"""

from __future__ import annotations

import gzip
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import orjson

from streamer.contract.dead_letter import dead_letter_record
from streamer.contract.events import EVENT_FAMILY
from streamer.core.account import Account
from streamer.core.clock import HOUR, to_ms
from streamer.core.config import ScoreConfig
from streamer.core.engine import ACCEPTED, DUPLICATE, PartitionEngine
from streamer.core.intake import Refused, admit, apply
from streamer.core.periods import month_metrics, months_in_data
from streamer.core.portfolio import merge
from streamer.core.totals import add_up, report
from streamer.partitioning import partition_of
from streamer.settings import FAMILIES


def open_events(path: Path) -> IO[bytes]:
    """Open a JSONL file, gzip-compressed when its name ends in .gz."""
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def merge_order_key(numbered: tuple[int, bytes]) -> tuple[int, int, int]:
    """`--sort` order: (event time, topic family, line), the order the stream's merge releases.

    Unreadable lines come first; they are dead-lettered anyway.
    """
    number, line = numbered
    try:
        value = orjson.loads(line)
        moment = datetime.fromisoformat(value["occurred_at"])
        family = FAMILIES.index(EVENT_FAMILY[value["event_type"]])
        return int(moment.timestamp() * 1000), family, number
    except Exception:
        return UNREADABLE, 0, number


UNREADABLE = -(1 << 62)  # merge_order_key's time for a line it cannot read (dead-lettered first)


def publication_ms(now: datetime | None) -> int:
    """`--now` as epoch ms (a time without an offset is UTC); the wall clock when not given."""
    if now is None:
        return int(time.time() * 1000)
    return to_ms(now if now.tzinfo is not None else now.replace(tzinfo=UTC))


def time_window(config: ScoreConfig, published_ms: int) -> tuple[int, int]:
    """The event times `[input]` admits for messages published at `published_ms` (inclusive)."""
    bounds = config.input
    return bounds.earliest_ms, published_ms + int(bounds.max_skew_hours * HOUR)


def bounded_order_key(window: tuple[int, int]) -> Callable[[tuple[int, bytes]], tuple[int, int, int]]:
    """`merge_order_key`, with an event time outside `window` counted as unreadable (it is
    dead-lettered anyway, and must not stretch the span a backtest samples)."""
    low, high = window

    def key(numbered: tuple[int, bytes]) -> tuple[int, int, int]:
        found = merge_order_key(numbered)
        return found if low <= found[0] <= high else (UNREADABLE, 0, found[2])

    return key


BATCH = 5000  # lines per batch: snapshots of changed accounts are emitted once per batch


@dataclass
class Summary:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    snapshots: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0


class OfflineRun:
    """One pass over a file; outputs go to the writer callbacks (files, or lists in tests)."""

    def __init__(
        self,
        config: ScoreConfig,
        partitions: int,
        topic_prefix: str = "cs.",
        batch: int = BATCH,
        published_ms: int | None = None,
    ) -> None:
        """`published_ms`: when the file's events count as published, for the input bound on
        event time (`input.max_skew_hours`); default the start of the run (all past data passes).
        """
        self.config = config
        self.published_ms = published_ms if published_ms is not None else int(time.time() * 1000)
        self.batch = batch
        self.partitions = partitions
        self.topic_prefix = topic_prefix
        self.stores: list[dict[str, Account]] = [{} for _ in range(partitions)]
        self.engines = [PartitionEngine(config, store) for store in self.stores]
        self.summary = Summary()
        self._partitions: dict[str, int] = {}

    def feed(
        self,
        lines: Iterator[bytes],
        *,
        on_snapshot: Callable[[dict[str, Any]], None],
        on_alert: Callable[[dict[str, Any]], None],
        on_dead_letter: Callable[[dict[str, Any]], None],
        source: str = "file",
    ) -> Summary:
        summary = self.summary
        started = time.perf_counter()
        for number, line in enumerate(lines, start=1):
            summary.lines += 1
            if not line.strip():
                continue
            admitted = admit(line, key=None, family=None, published_ms=self.published_ms, config=self.config)
            if isinstance(admitted, Refused):
                summary.rejected += 1
                on_dead_letter(
                    dead_letter_record(
                        line, topic=source, partition=None, offset=number, key=None, error=admitted.reason
                    )
                )
                continue
            event = admitted
            partition = self._partitions.get(event.account_id)
            if partition is None:
                partition = self._partitions[event.account_id] = partition_of(
                    event.account_id, self.partitions
                )
            engine = self.engines[partition]
            outcome = apply(engine, event)
            for alert in outcome.alerts:
                summary.alerts[alert["rule"]] += 1
                on_alert(alert)
            if outcome.status == ACCEPTED:
                summary.accepted += 1
            elif outcome.status == DUPLICATE:
                summary.duplicates += 1
            else:
                summary.rejected += 1
                topic = self.topic_prefix + EVENT_FAMILY[event.event_type]
                on_dead_letter(
                    dead_letter_record(
                        line,
                        topic=topic,
                        partition=partition,
                        offset=number,
                        key=None,
                        error=outcome.reason or "",
                    )
                )
            if number % self.batch == 0:
                self._publish(on_snapshot)
        self._publish(on_snapshot)
        summary.seconds += time.perf_counter() - started
        return summary

    def _publish(self, on_snapshot: Callable[[dict[str, Any]], None]) -> None:
        """Each account whose snapshot changed, once, as a worker does after a batch."""
        for engine in self.engines:
            for account_id in engine.take_dirty():
                self.summary.snapshots += 1
                on_snapshot(engine.snapshot(account_id))

    # -- results ----------------------------------------------------------------------------------

    def accounts(self) -> Iterator[dict[str, Any]]:
        """Final snapshot of every account, by account id."""
        owners = {aid: engine for engine in self.engines for aid in engine.members}
        for account_id in sorted(owners):
            yield owners[account_id].snapshot(account_id)

    def portfolio(self) -> dict[str, Any]:
        """`{"currency", "current", "months"}` as documented in the README."""
        config = self.config
        latest = max(engine.clock.stream_time for engine in self.engines)
        for engine in self.engines:
            engine.open_months_until(latest)
        sums = merge(engine.periods.sums for engine in self.engines)
        options: dict[str, Any] = {
            "gross_margin": config.portfolio.gross_margin,
            "cs_cost_per_month": config.portfolio.cs_cost_per_month,
        }
        currency = config.currency.reporting
        return {
            "currency": currency,
            "current": report(add_up(engine.totals.sums for engine in self.engines), currency),
            "months": [month_metrics(sums, month, **options) for month in months_in_data(sums)],
        }
