"""Replay a file in event-time order and score every paying account at each month start."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer.backtest.baseline import SampleKey, UsageWindow, accepted_line
from streamer.core.clock import DAY, bucket_of, month_of, month_start
from streamer.core.config import COMPONENTS, ScoreConfig
from streamer.core.risk import VOLUME_DAYS
from streamer.offline.external_sort import Key, SortedLines
from streamer.offline.runner import (
    UNREADABLE,
    OfflineRun,
    merge_order_key,
    open_events,
    time_window,
)
from streamer.partitioning import partition_of
from streamer.settings import FAMILIES

LATEST = 1 << 62  # no bound on event time (`sorted_lines` without a window)
PROGRESS_EVERY = 5000  # lines between progress callbacks


@dataclass(frozen=True, slots=True)
class Sample:
    """One account's score at one month start, from the events before that instant only."""

    account_id: str
    at: int  # the month start, epoch ms
    score: float
    band: str
    stage: str
    plan: str | None
    components: tuple[float | None, ...]  # in COMPONENTS order; None when the component had no data
    mrr: int  # micro-units of the reporting currency
    signals: Mapping[str, float] = field(default_factory=dict)  # signal -> 0-100 sub-score (with data)
    volumes: Mapping[str, int] = field(default_factory=dict)  # feature -> events over 28 days (used ones)


@dataclass(frozen=True, slots=True)
class AlertRecord:
    account_id: str
    rule: str
    severity: str
    raised_at: int


@dataclass
class Replay:
    """Everything the metrics need from one pass over the history."""

    samples: list[Sample]
    alerts: list[AlertRecord]
    timelines: dict[str, list[tuple[int, int]]]  # account -> final MRR timeline
    month_starts: list[int]
    data_start: int  # first event time
    activity_start: int  # first usage, ticket or survey event of a paying account (scores mean little before)
    data_end: int  # last event time
    lines: int = 0
    accepted: int = 0
    rejected: int = 0
    seconds: float = 0.0
    duplicates: int = 0  # lines repeating an event_id (counted in `lines`, as `streamer offline` does)
    blank: int = 0  # empty or whitespace-only lines, skipped
    beyond_bound: int = 0  # lines dated after the bound on event time (`--now` + max skew): refused
    rules: dict[str, int] = field(default_factory=dict)
    baseline_usage: dict[SampleKey, int] = field(default_factory=dict)  # see backtest.baseline
    grid_samples: list[Sample] = field(default_factory=list)  # on the weekly grid between month starts


GRID_DAYS = 7  # the spacing of the extra sampling instants `--tune` folds validate on


def weekly_grid(month_starts: list[int], data_end: int, min_horizon_ms: int) -> list[int]:
    """Instants every `GRID_DAYS` days from the first month start on, month starts left out (they
    are sampled anyway), each with its shortest label window inside the data."""
    if not month_starts:
        return []
    taken = set(month_starts)
    found: list[int] = []
    at = month_starts[0] + GRID_DAYS * DAY
    while at + min_horizon_ms <= data_end:
        if at not in taken:
            found.append(at)
        at += GRID_DAYS * DAY
    return found


def first_month_start(activity_start: int, warmup_ms: int) -> int:
    """The first month start `warmup_ms` or more after the day activity began (whole days)."""
    first = activity_start // DAY * DAY + warmup_ms
    month = month_of(first)
    if month_start(month) < first:
        month += 1
    return month_start(month)


def plan_month_starts(activity_start: int, data_end: int, warmup_ms: int, min_horizon_ms: int) -> list[int]:
    """Month starts `warmup_ms` or more after the day activity began whose shortest label window fits."""
    month = month_of(first_month_start(activity_start, warmup_ms))
    starts: list[int] = []
    while month_start(month) + min_horizon_ms <= data_end:
        starts.append(month_start(month))
        month += 1
    return starts


@dataclass(slots=True)
class Span:
    """The first event, first activity event and last event times among the lines noted: every
    readable line while the lines are keyed for sorting (`sorted_lines`), the accepted events
    while they are replayed."""

    first: int | None = None
    activity: int | None = None
    last: int | None = None
    beyond: int = 0  # lines dated after the window's end (refused as in the future)

    def see(self, key: Key) -> None:
        at, family, _ = key
        if at != UNREADABLE:
            self.note(at, family != 0)

    def note(self, at: int, activity: bool) -> None:
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)
        if activity:
            self.activity = at if self.activity is None else min(self.activity, at)

    def times(self) -> tuple[int, int, int]:
        """(first event, first activity event or else the first event, last event)."""
        if self.first is None or self.last is None:
            raise ValueError(
                "no event in the file is valid and within the [input] event-time bounds (with --now, "
                "events after it are refused); `streamer offline FILE --out DIR` dead-letters each "
                "line with its reason"
            )
        return self.first, self.first if self.activity is None else self.activity, self.last


class Schedule:
    """The instants a replay pauses at, settled as the events are fed.

    Only accepted events set the span sampled: a line the run refuses, dated years before or
    after the history, must add or move no month start. Which lines are accepted is known only
    once each is fed, so the month starts planned from the span of every readable line (`bounds`,
    which refused lines can only widen) are candidates; the weekly grid, laid from the first
    month start, is added once the first accepted activity event fixes that; and `settle` keeps
    the instants of the accepted events' span. With `exact` (the accepted span, known from an
    earlier pass), the candidates are the instants themselves.
    """

    def __init__(
        self, bounds: Span, warmup_ms: int, min_horizon_ms: int, *, exact: bool = False, grid: bool = True
    ) -> None:
        _, activity_start, self._end = bounds.times()
        self._grid = grid  # lay the weekly grid (only `--tune` reads it)
        self._warmup, self._horizon = warmup_ms, min_horizon_ms
        self.months = plan_month_starts(activity_start, self._end, warmup_ms, min_horizon_ms)
        self._month_set = set(self.months)
        self._pending = list(self.months)
        self._anchored_on_activity = bounds.activity is not None
        self.accepted = Span()
        self.sampled: set[int] = set()
        self._anchored = False
        if exact:
            self._anchor(activity_start)

    def due(self, at: int) -> int | None:
        """The next instant not after `at` still to sample, taken off the schedule; else None."""
        if self._pending and self._pending[0] <= at:
            instant = heapq.heappop(self._pending)
            self.sampled.add(instant)
            return instant
        return None

    def is_month_start(self, at: int) -> bool:
        return at in self._month_set

    def accept(self, at: int, activity: bool) -> None:
        """An event the run accepted (fed in event-time order)."""
        self.accepted.note(at, activity)
        if not self._anchored and (activity or not self._anchored_on_activity):
            self._anchor(at)

    def _anchor(self, activity_start: int) -> None:
        """Lay the weekly grid from the first month start after `activity_start`: every instant
        of it lies after the event that fixed it, so none is already passed."""
        self._anchored = True
        at = first_month_start(activity_start, self._warmup) + GRID_DAYS * DAY
        while self._grid and at + self._horizon <= self._end:
            if at not in self._month_set:
                heapq.heappush(self._pending, at)
            at += GRID_DAYS * DAY

    def settle(self) -> tuple[tuple[int, int, int], list[int], set[int]] | None:
        """The accepted events' span, its month starts and its weekly grid; None when one of
        those instants was not sampled (every activity event that could be read was refused:
        the month starts then count from the first event, and the replay is run again)."""
        times = self.accepted.times()
        _, activity_start, data_end = times
        starts = plan_month_starts(activity_start, data_end, self._warmup, self._horizon)
        grid = set(weekly_grid(starts, data_end, self._horizon)) if self._grid else set()
        if not (set(starts) | grid) <= self.sampled:
            return None
        return times, starts, grid


@contextmanager
def sorted_lines(path: Path, window: tuple[int, int] | None = None) -> Iterator[tuple[SortedLines, Span]]:
    """The file's lines keyed (event time, topic family, line number) in the order `streamer
    offline --sort` applies them, sorted in bounded memory (`SortedLines`), and their span.

    Lines with an event time outside `window` (the `[input]` bounds) count as unreadable; the
    span counts those after it (`beyond`).
    """
    low, high = window if window is not None else (UNREADABLE, LATEST)
    span = Span()

    def key(numbered: tuple[int, bytes]) -> Key:
        found = merge_order_key(numbered)
        if not low <= found[0] <= high:
            span.beyond += found[0] > high
            found = (UNREADABLE, 0, found[2])  # refused anyway: it must not stretch the span
        span.see(found)
        return found

    with open_events(path) as handle, SortedLines(handle, key) as ordered:
        yield ordered, span


def replay(
    path: Path,
    config: ScoreConfig,
    *,
    partitions: int = 4,
    warmup_days: float = 60,
    min_horizon_days: int = 30,
    on_sorted: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    published_ms: int | None = None,
    grid: bool = True,
) -> Replay:
    """Feed the file through the offline runner in event-time order, pausing at each month start.

    At a pause every account with MRR at that instant is scored with the pure core (only events
    before the month start have been fed: no look-ahead). Alerts are collected as raised. The
    same is done on a weekly grid between month starts (`grid_samples`): `--tune` fits and
    validates on them inside its training period; every reported figure reads month starts only.
    Without `grid` they are not sampled: some four times the month starts' samples, in memory
    until the end of the replay (a reviewer's 400-year span took 711 MB without `--tune`).
    """
    warmup_ms, horizon_ms = int(warmup_days * DAY), min_horizon_days * DAY
    run = OfflineRun(config, partitions, published_ms=published_ms)
    window = time_window(config, run.published_ms)
    with sorted_lines(path, window) as (ordered, span):
        if on_sorted is not None:
            on_sorted(ordered.count)
        schedule = Schedule(span, warmup_ms, horizon_ms, grid=grid)
        found = _replay(run, ordered, schedule, str(path), on_progress)
    if found is not None:
        found.beyond_bound = span.beyond
        return found
    # Every readable activity event was refused: the month starts count from the first accepted
    # event, before the candidates sampled. Replayed again with the accepted span known.
    with sorted_lines(path, window) as (ordered, _):
        schedule = Schedule(schedule.accepted, warmup_ms, horizon_ms, exact=True, grid=grid)
        run = OfflineRun(config, partitions, published_ms=run.published_ms)
        found = _replay(run, ordered, schedule, str(path), None)
    if found is None:  # the accepted events are the same on a second pass
        raise AssertionError(f"{path}: the second replay sampled other instants than the first")
    found.beyond_bound = span.beyond
    return found


def _replay(
    run: OfflineRun,
    ordered: SortedLines,
    schedule: Schedule,
    source: str,
    on_progress: Callable[[int], None] | None,
) -> Replay | None:
    """One pass; None when an instant of the accepted span was not sampled (`Schedule.settle`)."""
    samples: list[Sample] = []
    grid_samples: list[Sample] = []
    alerts: list[AlertRecord] = []
    usage = UsageWindow()
    baseline_usage: dict[SampleKey, int] = {}
    usage_family = FAMILIES.index("usage")
    summary = run.summary

    def sample_at(at: int) -> None:
        monthly = schedule.is_month_start(at)
        into = samples if monthly else grid_samples
        for engine in run.engines:
            for account_id in sorted(engine.accounts):
                account = engine.accounts[account_id]
                if account.revenue.mrr_at(at) <= 0:
                    continue
                if monthly:
                    baseline_usage[account_id, at] = usage.before(account_id, at)
                found = engine.evaluation(account, at)
                components = tuple(found.components[name] for name in COMPONENTS)
                into.append(
                    Sample(
                        account_id,
                        at,
                        found.score,
                        found.band,
                        found.stage,
                        found.plan,
                        components,
                        found.mrr,
                        {name: sub for name, (_, sub) in found.signals.items()},
                        account.usage.feature_volume(bucket_of(at), VOLUME_DAYS),
                    )
                )

    def paying(line: bytes, at: int) -> bool:
        """Whether the account of an accepted activity line pays at `at`: the use of an account
        that never pays then (a trial, a test account, a stray line dated years back) starts no
        activity span, as it is in no sample."""
        account_id = accepted_line(line)["account_id"]
        account = run.engines[partition_of(account_id, run.partitions)].accounts[account_id]
        return account.revenue.mrr_at(at) > 0

    def lines() -> Iterator[bytes]:
        for count, ((ts, family, _), line) in enumerate(ordered, start=1):
            while (instant := schedule.due(ts)) is not None:
                sample_at(instant)
            if family == usage_family:
                usage.add_line(ts, line)
            accepted = summary.accepted
            yield line  # the run has applied it when the next line is asked for
            if summary.accepted > accepted:
                schedule.accept(
                    ts, family != 0 and (schedule.accepted.activity is not None or paying(line, ts))
                )
            if on_progress is not None and count % PROGRESS_EVERY == 0:
                on_progress(PROGRESS_EVERY)
        if on_progress is not None:
            on_progress(ordered.count % PROGRESS_EVERY)

    def on_alert(alert: dict[str, Any]) -> None:
        raised = int(datetime.fromisoformat(alert["raised_at"]).astimezone(UTC).timestamp() * 1000)
        alerts.append(AlertRecord(alert["account_id"], alert["rule"], alert["severity"], raised))

    def ignore(_: dict[str, Any]) -> None:
        return None

    run.feed(lines(), on_snapshot=ignore, on_alert=on_alert, on_dead_letter=ignore, source=source)
    settled = schedule.settle()
    if settled is None:
        return None
    (data_start, activity_start, data_end), starts, grid = settled
    kept = set(starts)  # candidates outside the accepted span were sampled too: dropped here
    timelines = {
        account_id: list(account.revenue.timeline)
        for engine in run.engines
        for account_id, account in engine.accounts.items()
    }
    return Replay(
        samples=[sample for sample in samples if sample.at in kept],
        alerts=alerts,
        timelines=timelines,
        month_starts=starts,
        data_start=data_start,
        activity_start=activity_start,
        data_end=data_end,
        lines=summary.lines,
        accepted=summary.accepted,
        rejected=summary.rejected,
        seconds=summary.seconds,
        duplicates=summary.duplicates,
        blank=summary.blank,
        rules=dict(summary.alerts),
        baseline_usage={key: n for key, n in baseline_usage.items() if key[1] in kept},
        grid_samples=[sample for sample in grid_samples if sample.at in grid],
    )
