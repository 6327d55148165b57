"""The timer queue: a tick re-scores exactly the idle accounts that visiting every account would.

`VisitAll` schedules every account at every tick, which is what the engine did before the
queue (each tick asked `_due` of every account); the queue must give the same alerts, the same
scorings and the same snapshots, also across a recovery from the stored accounts.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from streamer.contract.events import Event
from streamer.core.account import Account
from streamer.core.clock import to_ms
from streamer.core.config import ScoreConfig
from streamer.core.engine import PartitionEngine

from .events import at, canceled, nps, opened, renewed, resolved, started, usage


class VisitAll(PartitionEngine):
    """Every account is due for a visit at every tick (and `_due` decides, as before the queue)."""

    def _next_due(self, account: Account, after: int = -1) -> int | None:
        if self.clock.next_tick < 0:
            return None
        return max(self.clock.next_tick, self._first_tick_after(max(account.now, after)))


def portfolio() -> list[Event]:
    """Accounts that go quiet and cross band and alert lines with no event of their own."""
    events: list[Event] = [
        # silent after a week of use: silence at 14 and 28 days, its band falls with no event
        started("quiet", at(0), "500", seats=5),
        *(usage("quiet", at(day, 9), f"u{day % 3}") for day in range(7)),
        # pays and never uses the product: silent from its start (usage is tracked since day 0),
        # so silence at 14 and 28 days from day 2, 05:00, off the weekly re-scoring days
        started("absent", at(2, 5), "400"),
        # an urgent ticket left open: support_backlog after 72 h, daily re-scoring while open
        started("ticket", at(0, 1), "300"),
        *(usage("ticket", at(day, 10)) for day in range(0, 60, 2)),
        opened("ticket", at(20), "t1", "urgent"),
        resolved("ticket", at(45), "t1"),
        # a renewal falls inside the window while idle (renewal_at_risk), then a late NPS
        started("renews", at(0, 2), "200", term_end=at(75)),
        *(usage("renews", at(day, 11)) for day in range(0, 10)),
        nps("renews", at(12), 3),
        renewed("renews", at(74), term_end=at(440)),
        # cancels at a future date: the MRR change falls due with no event, then dormant
        started("leaves", at(0, 3), "100"),
        usage("leaves", at(1)),
        canceled("leaves", at(5), effective_at=at(30)),
        # never pays: uses the product for four days, then is dormant once scored 60 days on
        *(usage("prospect", at(day, 8)) for day in range(4)),
        # keeps the partition's stream time moving for 120 days
        started("busy", at(0, 4), "50"),
        *(usage("busy", at(day, 12)) for day in range(0, 120)),
    ]
    events.sort(key=lambda event: event.occurred_at)
    # one late event (within the allowed lateness): the account is caught up at the ticks passed
    events.insert(len(events) // 2, usage("quiet", at(3, 18), "late-user"))
    return events


def run(
    engine_type: type[PartitionEngine],
    events: list[Event],
    recover_at: int | None = None,
    config: ScoreConfig | None = None,
) -> Any:
    config = config or ScoreConfig()
    store: dict[str, Account] = {}
    engine = engine_type(config, store)
    alerts: list[dict[str, Any]] = []
    scorings: list[tuple[str, str]] = []
    for number, event in enumerate(events):
        if number == recover_at:  # a worker restarting from its tables
            engine = engine_type(config, copy.deepcopy(store), copy.deepcopy(engine.clock))
            store = engine.accounts  # type: ignore[assignment]
        alerts += engine.process(event).alerts
        for account_id in engine.take_dirty():
            snapshot = engine.snapshot(account_id)
            scorings.append((account_id, snapshot["as_of"]))
    snapshots = {account_id: engine.snapshot(account_id) for account_id in sorted(engine.members)}
    return alerts, scorings, snapshots


def test_idle_accounts_are_scored_at_the_same_ticks_as_when_every_account_is_visited() -> None:
    events = portfolio()
    expected = run(VisitAll, events)
    alerts, scorings, snapshots = run(PartitionEngine, events)
    rules = {alert["rule"] for alert in alerts}
    # the idle crossings this portfolio is for did happen, with no event of their own
    assert {"silence", "support_backlog", "renewal_at_risk", "band_worsened"} <= rules
    assert alerts == expected[0]
    assert scorings == expected[1]
    assert snapshots == expected[2]


def test_a_recovered_engine_rebuilds_its_timers_and_goes_on_alike() -> None:
    events = portfolio()
    expected = run(VisitAll, events)
    for recover_at in (len(events) // 3, 2 * len(events) // 3):
        assert run(PartitionEngine, events, recover_at=recover_at) == expected


def test_a_tick_visits_only_the_accounts_due_at_it() -> None:
    visited: list[str] = []

    class Counting(PartitionEngine):
        def _due(self, account: Account, tick: int) -> bool:
            visited.append(account.account_id)
            return PartitionEngine._due(self, account, tick)

    engine = Counting(ScoreConfig(), {})
    for event in portfolio():
        engine.process(event)
    before = len(visited)
    engine.run_ticks(engine.clock.next_tick)  # 'leaves' churned long ago: dormant, never asked again
    assert "leaves" not in visited[before:]
    assert engine._due_at.get("leaves") is None


def test_an_account_that_never_paid_is_left_alone_once_scored_60_days_after_its_last_event() -> None:
    """Re-scored weekly for ever, a few events dated 2000-01-01 in a backfill cost a year of
    weekly scorings each."""
    _, scorings, snapshots = run(PartitionEngine, portfolio())
    times = [datetime.fromisoformat(when) for account_id, when in scorings if account_id == "prospect"]
    last_event = at(3, 8)
    assert last_event + timedelta(days=60) < times[-1] <= last_event + timedelta(days=67)
    assert datetime.fromisoformat(snapshots["prospect"]["as_of"]) == times[-1]
    assert len(times) < 45  # daily for 30 days, weekly to 60, then none (120 days of stream time)


WEEKLY = ScoreConfig.model_validate({"time": {"idle_rescore_days": 7}})


def test_with_idle_rescore_days_the_timers_still_match_visiting_every_account() -> None:
    events = portfolio()
    expected = run(VisitAll, events, config=WEEKLY)
    assert run(PartitionEngine, events, config=WEEKLY) == expected
    assert run(PartitionEngine, events, recover_at=len(events) // 2, config=WEEKLY) == expected


def test_idle_rescore_days_rescores_idle_accounts_less_and_keeps_the_alert_lines() -> None:
    events = portfolio()
    daily_alerts, daily_scorings, _ = run(PartitionEngine, events)
    alerts, scorings, _ = run(PartitionEngine, events, config=WEEKLY)
    assert len(scorings) < len(daily_scorings) * 0.75

    def raised(found: list[dict[str, Any]], rule: str) -> list[tuple[str, str, str]]:
        return [(a["account_id"], a["severity"], a["raised_at"]) for a in found if a["rule"] == rule]

    # 'quiet' and 'absent' (never used) are re-scored at the silence lines (14 and 28 days
    # without use) as when daily, so their silence alerts come on the same days.
    assert raised(alerts, "silence") == raised(daily_alerts, "silence")
    assert {"quiet", "absent"} <= {account for account, _, _ in raised(daily_alerts, "silence")}
    # A condition on the score itself is seen when the account is next re-scored: 'renews' falls
    # into renewal_at_risk on day 15 (its NPS of 3, its use ending), seen on day 19 when weekly.
    weekly, daily = raised(alerts, "renewal_at_risk"), raised(daily_alerts, "renewal_at_risk")
    assert len(weekly) == len(daily) == 2
    for (_, _, weekly_at), (_, _, daily_at) in zip(weekly, daily, strict=True):
        delay = datetime.fromisoformat(weekly_at) - datetime.fromisoformat(daily_at)
        assert timedelta(0) < delay < timedelta(days=7)


class InSteps(PartitionEngine):
    """Runs the ticks an event passes one account at a time, as the worker does in steps of
    `YIELD_EVERY` with its event loop turning in between; counts the steps that stopped mid-tick."""

    stopped_mid_tick = 0

    def process(self, event: Event) -> Any:
        refused = self.check(event)
        if refused is not None:
            return refused
        at = to_ms(event.occurred_at)
        alerts: list[dict[str, Any]] = []
        while self.ticks_before(at):
            before = self.clock.next_tick
            alerts += self.run_ticks(at, 1)
            if self.clock.next_tick == before:
                InSteps.stopped_mid_tick += 1
        outcome = self.apply_checked(event)
        outcome.alerts = alerts + outcome.alerts
        return outcome


def test_ticks_run_in_steps_leave_the_same_alerts_scorings_and_snapshots() -> None:
    events = portfolio()
    expected = run(PartitionEngine, events)
    InSteps.stopped_mid_tick = 0
    assert run(InSteps, events) == expected
    assert InSteps.stopped_mid_tick > 100  # ticks were left and resumed with accounts still due
    for recover_at in (len(events) // 3, 2 * len(events) // 3):
        assert run(InSteps, events, recover_at=recover_at) == expected
