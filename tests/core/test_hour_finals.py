"""The engine's hour finals: with the snapshots taken wherever batches happen to end, every hour an
account was scored in has its last scoring out, so the projection's history (one point per hour,
the hour's last) is the same whatever the batching."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from functools import cache

import orjson
import pytest

from streamer.contract.decode import decode_event
from streamer.contract.events import Event
from streamer.core.account import Account
from streamer.core.clock import HOUR, iso
from streamer.core.config import ScoreConfig
from streamer.core.engine import PartitionEngine
from streamer.core.snapshot import build_snapshot
from streamer.projection import history
from streamer.projection.codec import epoch_ms
from streamer.sim.config import SimulationConfig
from streamer.sim.generate import generate_events

from .events import ms, override, override_cleared
from .harness import EveryScoring

Point = tuple[str, int, bytes]  # account, as_of (epoch ms), the history point


@cache
def portfolio() -> tuple[Event, ...]:
    """12 accounts over 2 months, with overrides set and cleared (their band is in the point)."""
    simulated = [
        decode_event(orjson.dumps(event))
        for event in generate_events(SimulationConfig(accounts=12, months=2, seed=7, usage_density=0.3))
    ]
    accounts = sorted({event.account_id for event in simulated})
    start = ms(simulated[0].occurred_at)
    day = 24 * HOUR
    extra = [
        override(accounts[0], iso(start + 20 * day), iso(start + 40 * day), band="red"),
        override(accounts[1], iso(start + 25 * day + 3 * HOUR), iso(start + 90 * day), score=12.5),
        override_cleared(accounts[1], iso(start + 31 * day + 5 * HOUR)),
    ]
    return tuple(sorted([*simulated, *extra], key=lambda event: ms(event.occurred_at)))


def every_scoring() -> list[Point]:
    engine = EveryScoring()
    for event in portfolio():
        engine.process(event)
    return [
        (account, evaluation.now, history.point_of(evaluation)) for account, evaluation in engine.scorings
    ]


def batched(ends: Iterator[bool], keep_hour_finals: bool = True) -> list[Point]:
    """The points a worker stages: the hour finals and the snapshots, taken where `ends` says a
    batch ends (after an event) and at the end."""
    engine = PartitionEngine(ScoreConfig(), {}, keep_hour_finals=keep_hour_finals)
    points: list[Point] = []

    def publish() -> None:
        for account, figures in engine.take_hour_finals():
            points.append((account, figures[0], history.point_from(figures)))
        for account in engine.take_dirty():
            snapshot = engine.snapshot(account)
            points.append((account, epoch_ms(snapshot["as_of"]), history.point(snapshot)))

    for event in portfolio():
        engine.process(event)
        if next(ends):
            publish()
    publish()
    return points


def hourly(points: list[Point]) -> dict[tuple[str, int], tuple[int, bytes]]:
    """Each (account, hour)'s latest point, as the staging and the history script keep it (a later
    point of the same instant replaces the earlier)."""
    kept: dict[tuple[str, int], tuple[int, bytes]] = {}
    for account, as_of, point in points:
        key = (account, as_of // HOUR)
        if key not in kept or as_of >= kept[key][0]:
            kept[key] = (as_of, point)
    return kept


def ends_at_random(share: float, seed: int) -> Iterator[bool]:
    rng = random.Random(seed)
    while True:
        yield rng.random() < share


def never() -> Iterator[bool]:
    while True:
        yield False


@pytest.mark.parametrize(
    "ends",
    [
        pytest.param(lambda: never(), id="one batch"),
        pytest.param(lambda: ends_at_random(0.002, 1), id="batches of about 500"),
        pytest.param(lambda: ends_at_random(0.05, 2), id="batches of about 20"),
        pytest.param(lambda: ends_at_random(1.0, 3), id="a batch per event"),
    ],
)
def test_every_hour_keeps_its_last_scoring_wherever_batches_end(ends: Callable[[], Iterator[bool]]) -> None:
    expected = hourly(every_scoring())
    assert len({account for account, _ in expected}) == 12
    assert hourly(batched(ends())) == expected


def test_without_the_hour_finals_the_history_depends_on_the_batches() -> None:
    """What the test above guards against: only the snapshots taken lose hours' last scorings."""
    expected = hourly(every_scoring())
    lost = set(expected) - set(hourly(batched(never(), keep_hour_finals=False)))
    assert len(lost) > len(expected) // 2


def test_an_evaluations_point_is_the_point_of_its_snapshot() -> None:
    engine = EveryScoring()
    for event in portfolio():
        engine.process(event)
    accounts: dict[str, Account] = dict(engine.accounts)
    overridden = by_score = 0
    for account, evaluation in engine.scorings:
        snapshot = build_snapshot(accounts[account], evaluation, "USD")
        assert history.point_of(evaluation) == history.point(snapshot), snapshot["as_of"]
        overridden += evaluation.override is not None
        if evaluation.override is not None and evaluation.override.override.band is None:
            by_score += 1  # a score override: its point keeps the band that score is in
            assert history.decode(history.point_of(evaluation)).override_band == evaluation.band
    assert overridden > by_score > 0
