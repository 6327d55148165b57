"""Scoring one partition: dedupe, allowed lateness, stream time and idle re-scoring.

The same `PartitionEngine` runs inside the stream agents (accounts in a changelogged table)
and in the offline runner (accounts in a dict), which is why both give the same answers.
"""

from __future__ import annotations

import heapq
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mypy_extensions import mypyc_attr

from streamer.contract.events import Event
from streamer.core.account import Account, MoneyRefused, check_money, fold, over_capacity, prepare
from streamer.core.alerts import Observed, Trigger, band_confirm_due, check
from streamer.core.clock import DAY, HOUR, MINUTE, iso, to_ms
from streamer.core.config import ScoreConfig
from streamer.core.identity import profile_record
from streamer.core.money import format_money
from streamer.core.overrides import apply_override
from streamer.core.peers import PeerHistory, PeerReference, build_reference, on_grid, references_kept
from streamer.core.portfolio import PeriodAggregates
from streamer.core.published import Published
from streamer.core.revenue import Revenue
from streamer.core.score import Evaluation, Inputs, evaluate
from streamer.core.snapshot import PointFigures, build_snapshot, point_figures
from streamer.core.totals import Totals, counted, terms

# Events that change what an account contributes to the period sums (MRR or term ends).
REVENUE_EVENTS = frozenset(
    {"subscription.started", "subscription.changed", "subscription.canceled", "subscription.renewed"}
)

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"

ACTIVE_SPAN = 30 * DAY  # idle accounts are re-scored daily this long after their last event ...
QUIET_RESCORE = 7 * DAY  # ... and at least this often after that
QUIET_DAYS = 60 * DAY  # no use this long: a churned account, or one that never paid, is dormant


@dataclass(slots=True)
class Clock:
    """A partition's stream time (the latest event time seen) and its next re-scoring instant."""

    stream_time: int = -1
    next_tick: int = -1


@dataclass(slots=True, init=False)
class Outcome:
    status: str
    reason: str | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)

    # Written out: mypyc compiles this one, not the interpreted one @dataclass would generate.
    def __init__(
        self, status: str, reason: str | None = None, alerts: list[dict[str, Any]] | None = None
    ) -> None:
        self.status = status
        self.reason = reason
        self.alerts = [] if alerts is None else alerts


@mypyc_attr(allow_interpreted_subclasses=True)  # the tests count its visits in a subclass
class PartitionEngine:
    """Applies a partition's events in arrival order and keeps its partial portfolio sums."""

    def __init__(
        self,
        config: ScoreConfig,
        accounts: MutableMapping[str, Account],
        clock: Clock | None = None,
        references: Sequence[PeerReference] = (),
        keep_hour_finals: bool = False,
    ) -> None:
        self.config = config
        self.accounts = accounts
        self.clock = clock or Clock()
        self.members: set[str] = set(accounts)
        self.periods = PeriodAggregates(config.time.portfolio_history_months)
        self.totals = Totals()
        # Evaluations made since the account's snapshot was last taken; once taken, the snapshot
        # is kept compact in `published` and the evaluation let go (it is 5x the size).
        self.evaluations: dict[str, Evaluation] = {}
        self.published = Published()
        # Accounts whose kept snapshot was evaluated again after a recovery, not published: they
        # stay so at every re-staging until the account is scored (`snapshot_again`).
        self._evaluated_again: set[str] = set()
        self.dirty: set[str] = set()  # accounts scored since their snapshot was last taken
        # With `keep_hour_finals`: the evaluations a scoring of a later hour superseded before
        # their snapshot was taken, each its account's last of that hour (`take_hour_finals`).
        self.hour_finals: list[tuple[str, PointFigures]] | None = [] if keep_hour_finals else None
        self._lateness = int(config.time.allowed_lateness_days * DAY)
        self._interval = int(config.time.rescore_interval_hours * HOUR)
        self._usage_interval = int(config.time.usage_rescore_minutes * MINUTE)
        self._renewal_window = config.lifecycle.renewal_window_days * DAY
        every = config.time.idle_rescore_days
        # An idle account due at every tick is re-scored once this long after its last scoring.
        self._idle_gap = -1 if every is None else round(every * DAY) - self._interval
        self._silence = round(config.alerts.silence_days * DAY)
        self._currency = config.currency.reporting
        self.usage_since: int | None = None  # the day of the first usage event the partition saw
        # References of the grid points a late event can still reach (the one before it included).
        self._refresh_days = config.peers.refresh_days
        self.peers = PeerHistory(keep=references_kept(self._lateness, self._refresh_days))
        # The timer queue: each account's next due tick (see `_next_due`), so a tick visits only
        # the accounts due at it. Entries superseded by a later schedule stay in the heap until
        # popped and are skipped (`_due_at` has the current one).
        self._due_at: dict[str, int] = {}
        self._timers: list[tuple[int, str]] = []
        self._opened = -1  # the latest tick whose period sums and peer reference are made
        self.rebuild(references)

    # -- recovery ---------------------------------------------------------------------------------

    def rebuild(self, stored: Sequence[PeerReference] = ()) -> None:
        """Recompute the derived partition state (portfolio sums, totals, since when usage is
        observed, peer references) from the accounts (the references read only windows no
        admissible event can change, so they come out as they were when first built).

        `stored`: references kept from before (the worker stores them); one whose midnight is
        among those to rebuild is taken as it is instead of being rebuilt from every account.
        """
        if self.clock.stream_time < 0:
            # Accounts and no partition record (a worker stopped after writing the account
            # records of its first checkpoint, before its partition record): derived as the
            # partition's first event moves stream time (`_advance`).
            return
        self._note_members()
        midnights: list[int] = []  # the latest grid points, as `tick` refreshed them
        tick = self.clock.next_tick - self._interval
        while len(midnights) < self.peers.keep and tick > 0:
            if on_grid(tick, self._refresh_days):
                midnights.append(tick)
            tick -= self._interval
        kept = {reference.tick: reference for reference in stored}
        for midnight in reversed(midnights):
            self.peers.add(kept.get(midnight) or self._reference(midnight))
        self._count_members()

    def _note_members(self) -> None:
        """Since when usage is observed, and the months with data, from the accounts."""
        for account_id in self.members:
            account = self.accounts[account_id]
            self._note_usage(account)
            # The month of the partition's first event: it bounds the months listed as having
            # data (`months_in_data`); left to `advance` it became the stream time's month.
            self.periods.note(account.first_seen)

    def _count_members(self) -> None:
        """The portfolio sums and totals of the accounts, and each one's next due tick."""
        self.periods.advance(self.clock.stream_time, self._revenue_of)
        members = sorted(self.members)
        self.periods.add_all((account_id, self.accounts[account_id].revenue) for account_id in members)
        for account_id in members:
            account = self.accounts[account_id]
            if account.terms:
                account.terms = counted(account.terms)  # stored before churned ones had no band
                self.totals.update(account_id, account.terms)
            self._schedule(account)

    # -- events -----------------------------------------------------------------------------------

    def process(self, event: Event) -> Outcome:
        """Apply one decoded event; duplicates change nothing, too-late events are rejected."""
        refused = self.check(event)
        return refused if refused is not None else self.apply_checked(event)

    def check(self, event: Event) -> Outcome | None:
        """The outcome of a duplicate or rejected event, or None: then `apply_checked` applies it
        (the event is prepared: converted to the reporting currency). Nothing that scoring reads
        changes here, so the ticks the event passes can run in between (`run_ticks`)."""
        at = to_ms(event.occurred_at)
        account_id = event.account_id
        account = self.accounts.get(account_id)
        if account is not None:
            self._tidy(account, self.clock.next_tick - self._interval)
            if account.has_seen(event.event_id):
                return Outcome(DUPLICATE)
        clock = self.clock
        if clock.stream_time >= 0 and at < clock.stream_time - self._lateness:
            return Outcome(REJECTED, self._too_late(at))
        try:
            check_money(event, self.config, account)
        except MoneyRefused as exc:
            return Outcome(REJECTED, str(exc))
        refusal = over_capacity(account, event, self.config.limits)
        if refusal is not None:
            return Outcome(REJECTED, refusal)
        prepare(event, self.config)  # a conversion that fails does so before anything changes
        return None

    def apply_checked(self, event: Event) -> Outcome:
        """Apply an event `check` let through."""
        at = to_ms(event.occurred_at)
        account_id = event.account_id
        # Stream time moves first: idle accounts (this one too) are re-scored at the ticks passed.
        alerts = self.pass_time(at)
        account = self.accounts.get(account_id) or Account(account_id, first_seen=at)
        trigger = fold(account, event, at, self.config)
        account.remember(event.event_id, at, self.config.limits.max_remembered_ids)
        self.accounts[account_id] = account
        if event.event_type == "usage.recorded":
            self._note_usage(account)
        self.members.add(account_id)
        self.periods.note(at)
        if event.event_type in REVENUE_EVENTS:
            self.periods.update(account_id, account.revenue)
        # Usage alone is folded in and scored at the next event or tick when scored just now.
        if not (event.event_type == "usage.recorded" and self._recently_scored(account, at)):
            alerts += self._score(account, max(account.now, at), trigger)
        alerts += self._catch_up(account)
        self._schedule(account)
        return Outcome(ACCEPTED, alerts=alerts)

    def _note_usage(self, account: Account) -> None:
        """Usage is observed from the day (UTC) of the partition's first usage event.

        A day, not the event's instant: by the day, it moves at most once per day of allowed
        lateness (each move once re-scored every account of the partition that never used the
        product; scorings now read it as `tracked` says).
        """
        first_use = account.usage.first_use
        if first_use is None:
            return
        day = first_use - first_use % DAY
        if self.usage_since is None or day < self.usage_since:
            self.usage_since = day

    def tracked(self, account: Account, now: int) -> int | None:
        """`usage_since` as a scoring of `account` at `now` reads it.

        An account that used the product counts its silence from its own last use, whatever
        the partition's first usage. One that never did counts as silent from the partition's
        first usage only once that is the allowed lateness and a day behind `now`: a usage event
        still admissible can move it back no further than that, so no scoring ever read a value
        that a late event changed. (Read as it was, a late first usage changed the scorings of
        the midnights already passed, which could not be redone: re-scoring such accounts at their
        latest instant left a band change confirmed at another midnight, and arrival order
        changed a snapshot's time and its alerts.)"""
        since = self.usage_since
        if since is None or account.usage.last_use is not None or since <= now - self._lateness - DAY:
            return since
        return None

    def _catch_up(self, account: Account) -> list[dict[str, Any]]:
        """A late event scored an account before ticks already passed: re-score it at those.

        This is what in-order processing would have done after the event, so an account's final
        state does not depend on whether its events came late.
        """
        alerts: list[dict[str, Any]] = []
        tick = self._first_tick_after(account.now)
        while tick < self.clock.next_tick:
            if self._due(account, tick):
                alerts += self._score(account, tick, None)
            tick += self._interval
        return alerts

    def _first_tick_after(self, at: int) -> int:
        """Ticks are at interval boundaries (a day: 00:00 UTC)."""
        return (at // self._interval + 1) * self._interval

    def _recently_scored(self, account: Account, at: int) -> bool:
        """Usage alone only improves adoption; re-score for it at most every few minutes.

        A late usage event (older than the latest scoring) is always scored. A usage event
        within the interval after the latest scoring is folded into the state and shows at the
        account's next scoring (its next event past the interval, or the next midnight that
        re-scores it); until then the snapshot depends on which of those events came first (at
        the end of a file too: `time.usage_rescore_minutes = 0` scores every event).
        """
        return account.score is not None and 0 <= at - account.now < self._usage_interval

    def _too_late(self, at: int) -> str:
        days = self.config.time.allowed_lateness_days
        return (
            f"occurred_at {iso(at)} is more than {days:g} days behind the partition's stream time "
            f"{iso(self.clock.stream_time)}: too late to fold in (allowed lateness is "
            f"time.allowed_lateness_days); backfill history with `streamer offline` instead"
        )

    # -- stream time ------------------------------------------------------------------------------

    def _advance(self, at: int) -> list[dict[str, Any]]:
        """Move stream time to `at`, re-scoring idle accounts at each tick it passes."""
        # Accounts before the partition's first event (its account is added after this) are
        # accounts restored without a partition record, whose events are read again and only
        # move stream time: counted and scheduled now, as a restart with a partition record does
        # (`rebuild`), with no reference (no midnight before the first event had one). Left
        # undone, they were not re-scored at a midnight until an event of their own came.
        restored = self.clock.stream_time < 0 and bool(self.members)
        alerts = self.run_ticks(at)
        self.clock.stream_time = at
        if restored:
            self._note_members()
            self._count_members()
        else:
            self.periods.advance(at, self._revenue_of)
        return alerts

    def pass_time(self, at: int) -> list[dict[str, Any]]:
        """Move stream time to `at` when it is later (the ticks passed run first), as applying an
        event of that time does (`apply_checked`); also for an event the recovered accounts hold
        already: a worker killed after writing the account records and before its partition
        record restarts at an older stream time, and an event more than the allowed lateness
        behind the one it skipped was applied there (offline, and the worker without the kill,
        refuse it)."""
        return self._advance(at) if at > self.clock.stream_time else []

    def ticks_before(self, at: int) -> bool:
        """Whether ticks (or the rest of one) are to run before stream time can move to `at`."""
        next_tick = self.clock.next_tick
        return 0 <= next_tick <= at and at > self.clock.stream_time

    def run_ticks(self, at: int, budget: int | None = None) -> list[dict[str, Any]]:
        """Run the ticks up to `at` (stream time stays where it is): all of them, or until
        `budget` accounts due were visited, the rest left for the next call.

        A midnight re-scores every active account of the partition; the worker runs it in steps
        and lets its event loop turn in between (until `ticks_before` is False). The accounts are
        visited in the same order either way, so the state and the outputs are the same too.
        """
        clock = self.clock
        if clock.next_tick < 0:
            clock.next_tick = self._first_tick_after(at)
        alerts: list[dict[str, Any]] = []
        while clock.next_tick <= at:
            tick = clock.next_tick
            if self._opened != tick:
                self._opened = tick
                self.periods.advance(tick, self._revenue_of)
                if on_grid(tick, self._refresh_days):
                    self.peers.add(self._reference(tick))
            budget, done = self._visit_due(tick, budget, alerts)
            if not done:
                break
            clock.next_tick = tick + self._interval
            if budget == 0:
                break
        return alerts

    def _visit_due(
        self, tick: int, budget: int | None, alerts: list[dict[str, Any]]
    ) -> tuple[int | None, bool]:
        """Re-score the idle accounts due at `tick` (event time), in account order, until `budget`
        of them were visited (None: no limit); return what is left of the budget and whether
        every account due at `tick` was visited.

        Only the accounts whose timer is due are visited (the peer reference, at a grid point,
        still reads every account): the answers are those of visiting every account and asking
        `_due`, because `_next_due` is the first tick at which `_due` holds.
        """
        timers, due_at = self._timers, self._due_at
        while timers and timers[0][0] <= tick:
            if budget == 0:
                return budget, False
            at, account_id = heapq.heappop(timers)
            if due_at.get(account_id) != at:
                continue  # superseded by a later schedule
            if budget is not None:
                budget -= 1
            del due_at[account_id]
            account = self.accounts[account_id]
            self._tidy(account, tick)
            if account.now < tick and (account.band is None or self._due(account, tick)):
                alerts += self._score(account, tick, None)
            else:
                self.accounts[account_id] = account  # tidied: written back like a scoring
            self._schedule(account, after=tick)
        return budget, True

    def _tidy(self, account: Account, tick: int) -> None:
        """Forget the dedupe ids and day buckets a tick at `tick` makes obsolete.

        Done when the account is next touched rather than at every tick for every account: both
        steps only drop what is older than a cutoff that grows with the tick, so doing them once
        with the latest cutoff leaves the same state as doing them at each tick in between.
        """
        if tick <= 0:
            return
        account.forget_ids_before(tick - self._lateness - DAY)
        account.expire(tick // DAY)

    def _schedule(self, account: Account, after: int = -1) -> None:
        """Put the account's next due tick (after `after`) in the timer queue, or none."""
        account_id = account.account_id
        due = self._next_due(account, after)
        if due is None:
            self._due_at.pop(account_id, None)
        elif self._due_at.get(account_id) != due:
            self._due_at[account_id] = due
            heapq.heappush(self._timers, (due, account_id))
            if len(self._timers) > 2 * len(self._due_at) + 1024:  # drop superseded entries
                self._timers = [(at, aid) for at, aid in self._timers if self._due_at.get(aid) == at]
                heapq.heapify(self._timers)

    def _next_due(self, account: Account, after: int = -1) -> int | None:
        """The first tick not yet run at which `tick` would re-score the account, or None.

        `_due` holds at the latest `QUIET_RESCORE` after the account's last scoring unless the
        account is dormant then, and a dormant account stays dormant until it changes (when it
        is scheduled again); so at most `QUIET_RESCORE / interval + 1` ticks are tried.
        """
        if self.clock.next_tick < 0:
            return None
        tick = max(self.clock.next_tick, self._first_tick_after(max(account.now, after)))
        if account.band is None:
            return tick
        while not self._due(account, tick):
            if tick - account.now >= QUIET_RESCORE:
                return None
            tick += self._interval
        return tick

    def _reference(self, midnight: int) -> PeerReference:
        accounts = self.accounts
        members = (
            (accounts[aid].usage, accounts[aid].revenue, accounts[aid].profile)
            for aid in sorted(self.members)
        )
        peers = self.config.peers
        return build_reference(
            members,
            midnight,
            self._lateness,
            peers.group_by,
            peers.composite_weights,
            peers.compared,
            self.config.lifecycle.renewal_window_days * DAY,
        )

    def _due(self, account: Account, tick: int) -> bool:
        """Whether an idle account needs re-scoring at this tick.

        Always when an MRR change fell due since it was scored. Otherwise daily for 30 days after
        its last event, or while a ticket is open or a renewal is within the renewal window;
        weekly otherwise; never once it has churned with nothing scheduled and no recent usage.
        With `time.idle_rescore_days`, "daily" for the 30 days and the renewal window becomes
        every that many days and at the alert lines in between (`_alert_line_passed`).
        (An account scored shortly before the tick is re-scored too: skipping it would make its
        final snapshot depend on whether a late event arrived before or after the tick.)
        """
        revenue = account.revenue
        if any(account.now < at <= tick for at, _ in revenue.timeline):
            return True
        override = account.override
        if override is not None and not override.cleared and account.now < override.expires_at <= tick:
            return True  # an override expired since the last scoring: the model's score is back
        if self._dormant(account, tick):
            return False
        confirm = band_confirm_due(account.alerts, self.config.alerts)
        if confirm is not None and account.now < confirm <= tick:
            return True  # a band change has held long enough to be acknowledged (alerts.py)
        if tick - account.now >= QUIET_RESCORE or account.support.open_count:
            return True
        renewal = revenue.next_renewal(tick)
        near_renewal = renewal is not None and renewal - tick <= self._renewal_window
        if not near_renewal and tick - account.last_event_at >= ACTIVE_SPAN:
            return False
        return tick - account.now > self._idle_gap or self._alert_line_passed(account, tick, renewal)

    def _alert_line_passed(self, account: Account, tick: int, renewal: int | None) -> bool:
        """Whether a silence alert's line (once and twice `silence_days` without use) or the start
        of the renewal window fell since the account's last scoring: with `time.idle_rescore_days`
        an idle account is re-scored then, not only every that many days."""
        now = account.now
        if renewal is not None and now < renewal - self._renewal_window <= tick:
            return True
        since = self.inputs(account, now).silence_start()
        if since is None:
            return False
        return now < since + self._silence <= tick or now < since + 2 * self._silence <= tick

    def _dormant(self, account: Account, tick: int) -> bool:
        """Churned long enough ago, scored since, nothing scheduled: re-scoring changes nothing.

        "Long enough" is the allowed lateness and a day: until then a late event may still land
        before the churn, and the account is re-scored at every due tick in any arrival order,
        so its last scoring (and snapshot) does not depend on when the churn arrived.

        An account that never paid is dormant once it has been scored `QUIET_DAYS` after its
        last event: it has no contract to lose, and re-scoring it weekly for ever let a few
        events dated 2000-01-01 in a backfill cost a year of weekly scorings each (2,000 such
        lines took a minute of `streamer offline`).
        """
        revenue = account.revenue
        if not revenue.timeline:
            quiet = account.last_event_at + QUIET_DAYS
            return account.now > quiet and tick > quiet
        last_change = revenue.timeline[-1][0]
        return (
            account.now > last_change  # scored once after the change (at its tick, or late)
            and tick - last_change > self._lateness + DAY
            and revenue.mrr_at(account.now) == 0
            and (account.usage.last_use is None or tick - account.usage.last_use > QUIET_DAYS)
        )

    # -- scoring ----------------------------------------------------------------------------------

    def inputs(self, account: Account, now: int) -> Inputs:
        """What a scoring of `account` at `now` reads (the partition's first usage as `tracked`
        says)."""
        return account.inputs(self.tracked(account, now))

    def evaluation(self, account: Account, now: int) -> Evaluation:
        """The model's scoring of `account` at `now`, against the peer reference in force then
        (a person's override not applied)."""
        return evaluate(self.inputs(account, now), now, self.config, self.peers.at(now))

    def _score(self, account: Account, now: int, trigger: Trigger | None) -> list[dict[str, Any]]:
        account_id = account.account_id
        inputs = self.inputs(account, now)  # the silence rule reads them too
        evaluation = evaluate(inputs, now, self.config, self.peers.at(now))
        evaluation = apply_override(evaluation, account.override, self.config)
        previous = (account.score, account.band) if account.score is not None and account.band else None
        alerts = check(
            account_id,
            previous,
            evaluation,
            trigger,
            account.alerts,
            self.config.alerts,
            format_money(evaluation.mrr),
            Observed(account.usage.first_use, inputs.silence_start(), account.first_seen),
        )
        if alerts:
            profile = profile_record(account.profile)
            for alert in alerts:
                alert["profile"] = profile
        account.now, account.score, account.band = now, evaluation.score, evaluation.band
        account.terms = terms(evaluation)
        self.accounts[account_id] = account
        self._remember(account_id, evaluation, account.terms)
        return alerts

    def _remember(self, account_id: str, evaluation: Evaluation, shares: tuple[int, ...]) -> None:
        finals = self.hour_finals
        if finals is not None:
            # An account's scorings go forward in event time: one of a later hour makes the one
            # pending the last of its hour, whether or not a snapshot is taken in between.
            pending = self.evaluations.get(account_id)
            if pending is not None and pending.now // HOUR < evaluation.now // HOUR:
                finals.append((account_id, point_figures(pending)))
        self.evaluations[account_id] = evaluation
        self.totals.update(account_id, shares)
        # Every scoring changes the snapshot (as_of at least); publishing the latest once per
        # batch keeps outputs bounded and makes the last one published the account's final one.
        self.dirty.add(account_id)

    def open_months_until(self, ts: int) -> None:
        """Keep month starts up to `ts` even if this partition's stream time is behind.

        Partitions' sums add up only over the same months; a quiet partition is brought level
        with the others before they are merged (its known scheduled changes included).
        """
        if self.clock.stream_time >= 0:
            self.periods.advance(ts, self._revenue_of)

    def _revenue_of(self, account_id: str) -> Revenue:
        return self.accounts[account_id].revenue

    # -- outputs ----------------------------------------------------------------------------------

    def snapshot(self, account_id: str) -> dict[str, Any]:
        """The account's current `cs.health` record: built from its latest evaluation, or the one
        taken last when it was not scored since (exactly what was published: the projection's
        re-staging reads it), or, after a recovery, evaluated again at its last scoring instant."""
        evaluation = self.evaluations.pop(account_id, None)
        if evaluation is None and (kept := self.published.get(account_id)) is not None:
            return kept
        account = self.accounts[account_id]
        if evaluation is None:  # nothing kept yet: a recovered account
            evaluation = apply_override(self.evaluation(account, account.now), account.override, self.config)
            self._evaluated_again.add(account_id)
        else:
            self._evaluated_again.discard(account_id)
        snapshot = build_snapshot(account, evaluation, self._currency, self.config.model)
        self.published.keep(account_id, snapshot)
        return snapshot

    def snapshot_again(self, account_id: str) -> tuple[dict[str, Any], bool]:
        """`snapshot` for the projection's re-staging, and whether it was evaluated again (after
        a recovery) rather than taken for publishing: one evaluated again must not replace the
        snapshot published at its instant, one taken for publishing must (Redis restored from an
        older save can hold an earlier snapshot of the same instant: an event arriving late is
        scored at the account's latest instant)."""
        snapshot = self.snapshot(account_id)  # notes whether it evaluated the account again
        return snapshot, account_id in self._evaluated_again

    def take_hour_finals(self) -> list[tuple[str, PointFigures]]:
        """(account, `point_figures`) of each scoring that became the last of its hour (event
        time, UTC) since the last call, before its snapshot was taken: with the snapshots taken,
        every hour an account was scored in has its last scoring out, wherever batches end (the
        projection's history keeps one point per hour). Empty unless `keep_hour_finals`."""
        finals = self.hour_finals
        if not finals:
            return []
        self.hour_finals = []
        return finals

    def take_dirty(self) -> list[str]:
        """Accounts whose snapshot changed since the last call, in a stable order."""
        dirty = sorted(self.dirty)
        self.dirty.clear()
        return dirty
