"""The leader's placement of partitions by load (`stream/balance.py`, `stream/assignor.py`)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.assignor.client_assignment import CopartitionedAssignment
from hypothesis import given
from hypothesis import strategies as st

from streamer.stream.assignor import BalancedAssignor, InputLoads
from streamer.stream.balance import Held, balance, busiest_share
from streamer.stream.offsets import ConsumerOffsets

# The bench's stream (100 accounts x 12 months, seed 11): input messages per partition.
BENCH = [11_220, 31_941, 32_925, 104_858]


def fresh(*members: str) -> dict[str, Held]:
    return {member: Held() for member in members}


def test_the_heavy_partition_goes_alone_and_the_light_ones_together() -> None:
    placed = balance(BENCH, fresh("a", "b"))
    assert sorted(sorted(held.actives) for held in placed.values()) == [[0, 1, 2], [3]]
    assert busiest_share(BENCH, placed) == pytest.approx(104_858 / sum(BENCH))


def test_equal_loads_are_split_by_count() -> None:
    placed = balance([0] * 8, fresh("a", "b", "c"))
    assert sorted(len(held.actives) for held in placed.values()) == [2, 3, 3]


def test_a_tie_stays_with_the_member_that_holds_the_partition() -> None:
    current = {"a": Held({2, 3}), "b": Held({0, 1})}
    placed = balance([5, 5, 5, 5], current)
    assert placed["a"].actives == {2, 3} and placed["b"].actives == {0, 1}


def test_standbys_sit_on_other_members_than_the_active() -> None:
    placed = balance(BENCH, fresh("a", "b", "c"), replicas=1)
    for partition in range(len(BENCH)):
        holders = [m for m, held in placed.items() if partition in held.actives]
        keepers = [m for m, held in placed.items() if partition in held.standbys]
        assert len(holders) == 1 and len(keepers) == 1 and holders != keepers


def test_no_member_is_an_error() -> None:
    with pytest.raises(ValueError, match="no member"):
        balance(BENCH, {})


def best_busiest(loads: list[int], members: int) -> int:
    """The busiest member's load in the best placement (brute force)."""
    best = sum(loads)
    for owners in itertools.product(range(members), repeat=len(loads)):
        sides = [0] * members
        for partition, owner in enumerate(owners):
            sides[owner] += loads[partition]
        best = min(best, max(sides))
    return best


@given(
    loads=st.lists(st.integers(0, 1000), min_size=1, max_size=7),
    members=st.integers(1, 4),
    replicas=st.integers(0, 3),
    held=st.lists(st.integers(0, 3), max_size=7),
)
def test_every_partition_is_placed_once_and_near_the_best_split(
    loads: list[int], members: int, replicas: int, held: list[int]
) -> None:
    names = [f"m{i}" for i in range(members)]
    current = fresh(*names)
    for partition, owner in enumerate(held[: len(loads)]):
        current[names[owner % members]].actives.add(partition)
    placed = balance(loads, current, replicas)

    for partition in range(len(loads)):
        assert sum(partition in h.actives for h in placed.values()) == 1
        keepers = [m for m, h in placed.items() if partition in h.standbys]
        assert len(keepers) == min(replicas, members - 1)
        assert not any(partition in placed[m].actives for m in keepers)
    busiest = max(sum(loads[p] for p in h.actives) for h in placed.values())
    # Longest processing time first is within 4/3 - 1/(3m) of the best split.
    assert busiest * 3 * members <= best_busiest(loads, members) * (4 * members - 1)
    assert balance(loads, current, replicas) == placed  # the same inputs, the same answer


def assignor(loads: tuple[int, ...] | None, replicas: int = 0) -> BalancedAssignor:
    inputs = SimpleNamespace(loads=loads, topics=["in-a", "in-b"])
    app: Any = SimpleNamespace(tables=SimpleNamespace(), input_loads=inputs)
    return BalancedAssignor(app, replicas=replicas)


def current_of(*actives: set[int]) -> dict[str, CopartitionedAssignment]:
    topics = {"in-a", "in-b", "changelog"}
    return {f"m{i}": CopartitionedAssignment(actives=set(a), topics=topics) for i, a in enumerate(actives)}


def test_the_assignor_places_the_input_group_by_load() -> None:
    placed = assignor(tuple(BENCH))._place({"in-a", "in-b", "changelog"}, current_of({0, 1, 2, 3}, set()), 4)
    assert placed["m0"].actives == {3} and placed["m1"].actives == {0, 1, 2}
    assert placed["m0"].topics == {"in-a", "in-b", "changelog"}


def test_without_loads_or_for_another_group_faust_decides() -> None:
    for loads, topics in [(None, {"in-a", "in-b"}), (tuple(BENCH), {"other"}), ((1, 2), {"in-a", "in-b"})]:
        placed = assignor(loads)._place(topics, current_of({0, 1, 2, 3}, set()), 4)
        assert sorted(len(held.actives) for held in placed.values()) == [2, 2]  # faust: by count


class FakeOffsets:
    """Start and end offsets as a broker would list them (`ConsumerOffsets`' two calls)."""

    def __init__(self, start: dict[tuple[str, int], int], end: dict[tuple[str, int], int]) -> None:
        self.start, self.end = start, end

    async def start_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: self.start[tp] for tp in tps if tp in self.start}

    async def end_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: self.end[tp] for tp in tps if tp in self.end}


async def test_input_loads_add_up_each_partitions_messages_over_the_input_topics() -> None:
    start = {("in-a", 0): 0, ("in-a", 1): 10, ("in-b", 0): 5, ("in-b", 1): 0}
    end = {("in-a", 0): 7, ("in-a", 1): 30, ("in-b", 0): 5, ("in-b", 1): 100}
    loads = InputLoads(cast(ConsumerOffsets, FakeOffsets(start, end)), ["in-b", "in-a"], 2)
    await loads.measure()
    assert loads.loads == (7, 120)


async def test_input_loads_stay_unknown_while_the_broker_leaves_a_partition_out() -> None:
    start = {("in-a", 0): 0, ("in-a", 1): 0}
    end = {("in-a", 0): 7}  # partition 1 missing: the broker did not answer for it
    loads = InputLoads(cast(ConsumerOffsets, FakeOffsets(start, end)), ["in-a"], 2)
    await loads.measure()
    assert loads.loads is None
