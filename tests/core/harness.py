"""A single-partition engine with the bookkeeping tests need (alerts raised, outcomes)."""

from __future__ import annotations

from typing import Any

from streamer.contract.events import Event
from streamer.core.account import Account
from streamer.core.config import ScoreConfig
from streamer.core.engine import Outcome, PartitionEngine
from streamer.core.facts import Facts
from streamer.core.score import Evaluation, evaluate
from streamer.offline.runner import OfflineRun

from .events import When, ms


class Feed:
    """Feed events through one `PartitionEngine`; keep every alert and outcome."""

    def __init__(self, config: ScoreConfig | None = None) -> None:
        self.config = config or ScoreConfig()
        self.store: dict[str, Account] = {}
        self.engine = PartitionEngine(self.config, self.store)
        self.alerts: list[dict[str, Any]] = []
        self.outcomes: list[Outcome] = []

    def __call__(self, *events: Event) -> list[Outcome]:
        outcomes = []
        for event in events:
            outcome = self.engine.process(event)
            self.alerts += outcome.alerts
            outcomes.append(outcome)
        self.outcomes += outcomes
        return outcomes

    def account(self, account_id: str) -> Account:
        return self.store[account_id]

    def evaluate(self, account_id: str, when: When) -> Evaluation:
        """Score the account at an event time of the test's choosing (pure, changes nothing),
        against the engine's peer reference for that instant."""
        instant = ms(when)
        account = self.store[account_id]
        return evaluate(
            account.inputs(self.engine.tracked(account, instant)),
            instant,
            self.config,
            self.engine.peers.at(instant),
        )

    def facts(self, account_id: str, when: When) -> Facts:
        return self.evaluate(account_id, when).facts

    def mrr_at(self, account_id: str, when: When) -> int:
        return self.store[account_id].revenue.mrr_at(ms(when))

    def snapshot(self, account_id: str) -> dict[str, Any]:
        return self.engine.snapshot(account_id)

    def raised(self, rule: str | None = None, account: str | None = None) -> list[dict[str, Any]]:
        return [
            alert
            for alert in self.alerts
            if (rule is None or alert["rule"] == rule) and (account is None or alert["account_id"] == account)
        ]


class EveryScoring(PartitionEngine):
    """Records every scoring (account, evaluation), in order: the history points a batch of one
    scoring each would give."""

    def __init__(self, config: ScoreConfig | None = None) -> None:
        super().__init__(config or ScoreConfig(), {})
        self.scorings: list[tuple[str, Evaluation]] = []

    def _remember(self, account_id: str, evaluation: Evaluation, shares: tuple[int, ...]) -> None:
        self.scorings.append((account_id, evaluation))
        PartitionEngine._remember(self, account_id, evaluation, shares)


def encode(event: Event) -> bytes:
    """The event as a producer would send it (one JSON line)."""
    return event.model_dump_json(exclude_none=True).encode()


def run_offline(events: list[Event], config: ScoreConfig | None = None, partitions: int = 1) -> OfflineRun:
    """Feed events through the offline runner (as JSON lines) and return it for its results."""
    run = OfflineRun(config or ScoreConfig(), partitions)
    run.feed(
        iter(encode(event) for event in events),
        on_snapshot=lambda _: None,
        on_alert=lambda _: None,
        on_dead_letter=lambda _: None,
    )
    return run


def months(run: OfflineRun) -> dict[str, dict[str, Any]]:
    """portfolio.json's months by label."""
    return {month["month"]: month for month in run.portfolio()["months"]}
