"""Which member of the group scores which partition: balanced by load, not by count.

Every event of an account stays on its account's partition, so a partition's events are as
uneven as the accounts' sizes: on the bench's stream one partition of four holds 58% of them.
faust's assignor gives each member the same number of partitions (two and two there, 76% of the
events on the busier worker in the bench). `balance` gives each partition, heaviest first, to the
member with the least load so far (longest processing time first, within 4/3 of the best split):
one member takes the heavy partition alone and the other the three light ones (58%). When what the members
hold now is as good (its busiest member no busier, by load and then by count), it stays.

Pure: the leader's assignor (`stream/assignor.py`) calls it with the partitions' loads and the
members' current assignment. The same inputs always give the same answer; ties go to the member
with fewer partitions, then to the member that holds the partition now (its state is local
there), then by member id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class Held:
    """The partitions one member scores (`actives`) and keeps warm copies of (`standbys`)."""

    actives: set[int] = field(default_factory=set)
    standbys: set[int] = field(default_factory=set)


def balance(loads: Sequence[int], current: Mapping[str, Held], replicas: int = 0) -> dict[str, Held]:
    """Partitions 0..len(loads)-1 over the members of `current`: each partition active on one
    member, the heaviest first to the least loaded; then on up to `replicas` other members as a
    standby (at most one per member and never where it is active), the same way by standby load.

    `loads[p]` is partition p's weight (its input messages); `current` maps every member to what
    it holds now (empty for a newcomer): kept when it is as good, else it breaks ties.
    """
    members = sorted(current)
    if not members:
        raise ValueError("no member to assign partitions to")
    order = sorted(range(len(loads)), key=lambda p: (-loads[p], p))
    placed = {member: Held() for member in members}

    for partition in order:
        owner = min(
            members,
            key=lambda m: (
                _load(loads, placed[m].actives),
                len(placed[m].actives),
                partition not in current[m].actives,
                m,
            ),
        )
        placed[owner].actives.add(partition)
    if _complete(current, len(loads)) and _worst(loads, current) <= _worst(loads, placed):
        for member in members:  # the members keep what they hold: it is as good, and local
            placed[member].actives = set(current[member].actives)

    copies = min(replicas, len(members) - 1)
    standby_load = dict.fromkeys(members, 0)
    for partition in order:
        for _ in range(copies):
            free = [m for m in members if partition not in placed[m].actives | placed[m].standbys]
            keeper = min(
                free,
                key=lambda m: (
                    standby_load[m],
                    len(placed[m].standbys),
                    partition not in current[m].standbys | current[m].actives,
                    m,
                ),
            )
            placed[keeper].standbys.add(partition)
            standby_load[keeper] += loads[partition]
    return placed


def _load(loads: Sequence[int], partitions: set[int]) -> int:
    return sum(loads[p] for p in partitions)


def _worst(loads: Sequence[int], placed: Mapping[str, Held]) -> tuple[int, int]:
    """The busiest member's load, then the most partitions on one member: lower is better."""
    return (
        max(_load(loads, held.actives) for held in placed.values()),
        max(len(held.actives) for held in placed.values()),
    )


def _complete(placed: Mapping[str, Held], partitions: int) -> bool:
    """Whether every partition is active on exactly one member, and no other partition is."""
    actives = [p for held in placed.values() for p in held.actives]
    return sorted(actives) == list(range(partitions))


def busiest_share(loads: Sequence[int], placed: Mapping[str, Held]) -> float:
    """The share of all the load on the member with the most (0.0 for no load at all)."""
    total = sum(loads)
    if total == 0:
        return 0.0
    return _worst(loads, placed)[0] / total
