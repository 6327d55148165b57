"""Contract events from the hidden model: per-account streams merged into event-time order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from operator import itemgetter
from random import Random
from typing import Any

from streamer.sim.config import SimulationConfig
from streamer.sim.portfolio import CANCELING, AccountModel, build_portfolio
from streamer.sim.profile import profile_fields
from streamer.sim.scheduler import Scheduler
from streamer.sim.support import SupportModel
from streamer.sim.surveys import SurveyModel
from streamer.sim.times import DAY, day_prefix, rfc3339
from streamer.sim.usage import UsageModel

Event = dict[str, Any]
Timed = tuple[int, Event]

MERGE_DAYS = 7
"""Days of every account merged at once by `generate_events`."""
RAMP_DAYS = 45
"""A new customer reaches its full usage level over its first weeks."""

_by_time = itemgetter(0)


def generate_events(
    config: SimulationConfig, portfolio: Sequence[AccountModel] | None = None
) -> Iterator[Event]:
    """Every contract event of the simulation, in nondecreasing `occurred_at` order.

    `portfolio` is the hidden model from `build_portfolio(config)`; it is built when omitted.
    Each event is a fresh dict ready for JSON encoding; the stream is identical for a config.
    """
    models = build_portfolio(config) if portfolio is None else portfolio
    streams = [account_days(model, config) for model in models]
    for _ in range(0, config.days + 1, MERGE_DAYS):
        merged: list[Timed] = []
        for stream in streams:
            for batch in islice(stream, MERGE_DAYS):
                merged.extend(batch)
        merged.sort(key=_by_time)
        for _, event in merged:
            yield event


def account_days(model: AccountModel, config: SimulationConfig) -> Iterator[list[Timed]]:
    """One account's events, one time-ordered batch per day (the first: all before the start).

    Every event of the batch for day d falls inside that UTC day, so concatenating the
    accounts' batches of the same days and sorting them (stably, by time) merges the streams,
    ties kept in account order: a k-way merge done a week at a time, which measured about
    1.4 times faster than `heapq.merge` over per-event iterators.
    """
    rng = Random(f"{config.seed}/{model.index}/observed")
    aid = model.account_id
    usage = UsageModel(aid, model.tz_hours, rng, config.usage_density)
    support = SupportModel(aid, model.tz_hours, rng)
    surveys = SurveyModel(model.tz_hours, rng)
    later = Scheduler(aid)
    start, end = config.start_ts, config.end_ts
    subs = model.sub_events
    next_sub, number = 0, 0
    for day in range(-1, config.days):
        day_ts = start + day * DAY
        day_end = day_ts + DAY if day >= 0 else start
        today: list[Timed] = []
        while next_sub < len(subs) and subs[next_sub][0] < day_end:
            ts, event_type, fields = subs[next_sub]
            next_sub += 1
            event: Event = {
                "event_id": "",
                "event_type": event_type,
                "account_id": aid,
                "occurred_at": rfc3339(ts),
            }
            event.update(fields)
            today.append((ts, event))
            if next_sub == 1:  # who the account is, as the CRM says it when it becomes a customer
                who = profile_fields(config.seed, model.index, model.initial_plan, model.tz_hours)
                today.append((ts, _profile_event(aid, ts, who)))
        if day >= 0 and model.status[day]:
            _observe(model, day, day_ts, usage, support, surveys, later, today)
        later.pop_before(day_end, today)
        today.sort(key=_by_time)
        if today and today[-1][0] >= end:
            today = [item for item in today if item[0] < end]
        for _, event in today:
            if not event["event_id"]:
                number += 1
                event["event_id"] = f"{aid}-{number:06d}"
        yield today


def _profile_event(aid: str, ts: int, fields: dict[str, Any]) -> Event:
    """`account.updated`, with an id of its own (the numbered ids of the other events stay)."""
    event: Event = {
        "event_id": f"{aid}-profile-1",
        "event_type": "account.updated",
        "account_id": aid,
        "occurred_at": rfc3339(ts),
    }
    event.update(fields)
    return event


def _observe(
    model: AccountModel,
    day: int,
    day_ts: int,
    usage: UsageModel,
    support: SupportModel,
    surveys: SurveyModel,
    later: Scheduler,
    today: list[Timed],
) -> None:
    """Usage, tickets and surveys of a day on which the account is a customer."""
    health = model.health[day]
    engagement = model.engagement[day]
    seats = model.seats[day]
    since_start = model.days_since_start(day)
    ramp = 0.35 + 0.65 * min(1.0, since_start / RAMP_DAYS)
    weekend = (day_ts // DAY + 3) % 7 >= 5
    canceling = model.status[day] == CANCELING
    window = model.windows.get(day)
    if window is None:
        usage.day(today, day_ts, day_prefix(day_ts), health, seats, weekend, ramp, canceling, engagement)
    else:
        part: list[Timed] = []
        usage.day(part, day_ts, day_prefix(day_ts), health, seats, weekend, ramp, canceling, engagement)
        today.extend(item for item in part if window[0] <= item[0] < window[1])
    users = usage.user_ids[: usage.users(seats)]
    onboarding = since_start < 60
    support.day(later, day_ts, health, users, weekend, onboarding, window or (day_ts, day_ts + DAY))
    if window is None:
        surveys.day(later, day, day_ts, health, users, since_start)
