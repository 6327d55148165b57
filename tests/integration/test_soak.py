"""The combined soak (`bench/soak.py`) with a smaller setting: the poison corpus interleaved in
a replayed history, a broker restart during the replay, SIGKILLs, a Redis outage and a second
worker joining and leaving; then 0 crashes, 0 stalls, the same answers as offline in Kafka and
Redis, and exactly the poisons in the dead-letter topic. Runs on a private stack (it stops and
starts Kafka and Redis)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import SoakPlan, print_result, soak

pytestmark = pytest.mark.integration

# The full scenario (10 kills, 30 s outage, 40 accounts x 4 months) is `bench/soak.py`; this
# one keeps every kind of fault at a size that suits the suite.
SMALL = SoakPlan(accounts=20, months=3, replay_s=90.0, kills=3, redis_outage_s=10.0)


@pytest.mark.slow
def test_the_soak_ends_with_offlines_answers_and_exactly_the_poisons_dead_lettered(tmp_path: Path) -> None:
    result = soak(SMALL, tmp_path, echo=lambda _: None)
    print_result(result, SMALL)  # shown by pytest when the test fails (or with -s)
    assert result.ok, "\n".join(result.failures())
    kinds = {fault.what.split(" (")[0] for fault in result.faults}
    assert {"broker restart", "w2 joins", "w2 leaves", "Redis down", "Redis up"} <= kinds, kinds
    assert sum(fault.what.startswith("SIGKILL") for fault in result.faults) == SMALL.kills
