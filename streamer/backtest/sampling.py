"""Replay a file in event-time order and score every paying account at each month start."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer.backtest.baseline import SampleKey, UsageWindow
from streamer.core.clock import DAY, bucket_of, month_of, month_start
from streamer.core.config import COMPONENTS, ScoreConfig
from streamer.core.risk import VOLUME_DAYS
from streamer.core.score import evaluate
from streamer.offline.runner import (
    UNREADABLE,
    OfflineRun,
    bounded_order_key,
    merge_order_key,
    open_events,
    time_window,
)
from streamer.settings import FAMILIES

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
    activity_start: int  # first usage, ticket or survey event (scores mean little before)
    data_end: int  # last event time
    lines: int = 0
    accepted: int = 0
    rejected: int = 0
    seconds: float = 0.0
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


def plan_month_starts(activity_start: int, data_end: int, warmup_ms: int, min_horizon_ms: int) -> list[int]:
    """Month starts `warmup_ms` or more after the day activity began whose shortest label window fits."""
    first = activity_start // DAY * DAY + warmup_ms  # whole days from the day activity began
    month = month_of(first)
    if month_start(month) < first:
        month += 1
    starts: list[int] = []
    while month_start(month) + min_horizon_ms <= data_end:
        starts.append(month_start(month))
        month += 1
    return starts


def sort_lines(path: Path, window: tuple[int, int] | None = None) -> list[tuple[int, int, bytes]]:
    """(event time, topic family, line) in the order `streamer offline --sort` applies them.

    Lines with an event time outside `window` (the `[input]` bounds) count as unreadable.
    """
    order = bounded_order_key(window) if window is not None else merge_order_key
    with open_events(path) as handle:
        keyed = [(*order(numbered)[:2], numbered[1]) for numbered in enumerate(handle)]
    keyed.sort(key=lambda item: item[:2])
    return keyed


def _span(keyed: list[tuple[int, int, bytes]]) -> tuple[int, int, int]:
    """(first event, first activity event, last event) times among the readable lines."""
    times = [ts for ts, _, _ in keyed if ts != UNREADABLE]
    if not times:
        raise ValueError(
            "no event in the file is valid and within the [input] event-time bounds (with --now, "
            "events after it are refused); `streamer offline FILE --out DIR` dead-letters each "
            "line with its reason"
        )
    activity = [ts for ts, family, _ in keyed if ts != UNREADABLE and family != 0]
    return times[0], (activity[0] if activity else times[0]), times[-1]


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
) -> Replay:
    """Feed the file through the offline runner in event-time order, pausing at each month start.

    At a pause every account with MRR at that instant is scored with the pure core (only events
    before the month start have been fed: no look-ahead). Alerts are collected as raised. The
    same is done on a weekly grid between month starts (`grid_samples`): `--tune` fits and
    validates on them inside its training period; every reported figure reads month starts only.
    """
    run = OfflineRun(config, partitions, published_ms=published_ms)
    keyed = sort_lines(path, time_window(config, run.published_ms))
    if on_sorted is not None:
        on_sorted(len(keyed))
    data_start, activity_start, data_end = _span(keyed)
    starts = plan_month_starts(activity_start, data_end, int(warmup_days * DAY), min_horizon_days * DAY)
    grid = weekly_grid(starts, data_end, min_horizon_days * DAY)
    instants = sorted(set(starts) | set(grid))
    month_instants = set(starts)
    samples: list[Sample] = []
    grid_samples: list[Sample] = []
    alerts: list[AlertRecord] = []
    usage = UsageWindow()
    baseline_usage: dict[SampleKey, int] = {}
    usage_family = FAMILIES.index("usage")

    def sample_at(at: int) -> None:
        monthly = at in month_instants
        into = samples if monthly else grid_samples
        for engine in run.engines:
            for account_id in sorted(engine.accounts):
                account = engine.accounts[account_id]
                if account.revenue.mrr_at(at) <= 0:
                    continue
                if monthly:
                    baseline_usage[account_id, at] = usage.before(account_id, at)
                found = evaluate(account.inputs(engine.usage_since), at, config, engine.peers.at(at))
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

    def lines() -> Iterator[bytes]:
        pending = iter(instants)
        upcoming = next(pending, None)
        for count, (ts, family, line) in enumerate(keyed, start=1):
            while upcoming is not None and ts >= upcoming:
                sample_at(upcoming)
                upcoming = next(pending, None)
            if family == usage_family:
                usage.add_line(ts, line)
            yield line
            if on_progress is not None and count % PROGRESS_EVERY == 0:
                on_progress(PROGRESS_EVERY)
        while upcoming is not None:
            sample_at(upcoming)
            upcoming = next(pending, None)
        if on_progress is not None:
            on_progress(len(keyed) % PROGRESS_EVERY)

    def on_alert(alert: dict[str, Any]) -> None:
        raised = int(datetime.fromisoformat(alert["raised_at"]).astimezone(UTC).timestamp() * 1000)
        alerts.append(AlertRecord(alert["account_id"], alert["rule"], alert["severity"], raised))

    def ignore(_: dict[str, Any]) -> None:
        return None

    summary = run.feed(
        lines(), on_snapshot=ignore, on_alert=on_alert, on_dead_letter=ignore, source=str(path)
    )
    timelines = {
        account_id: list(account.revenue.timeline)
        for engine in run.engines
        for account_id, account in engine.accounts.items()
    }
    return Replay(
        samples=samples,
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
        rules=dict(summary.alerts),
        baseline_usage=baseline_usage,
        grid_samples=grid_samples,
    )
