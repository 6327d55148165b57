"""The group leader's partition assignor: faust's, with the input partitions balanced by load.

faust's assignor keeps co-partitioned topics together (partition p of every input topic and of
the tables' changelogs goes to one member) and gives each member the same number of partitions.
This one keeps everything else of faust's (the protocol, the changelog distribution, global
tables) and places the group that holds the input topics with `balance.balance`, by the input
messages each partition holds (`InputLoads`). Until the loads are known (the broker did not
answer) and for any other topic group, faust's own assignment stands.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, cast

from faust.assignor import PartitionAssignor
from faust.assignor.client_assignment import ClientAssignment, CopartitionedAssignment
from faust.assignor.cluster_assignment import ClusterAssignment
from faust.assignor.copartitioned_assignor import CopartitionedAssignor

from streamer.stream.balance import Held, balance, busiest_share
from streamer.stream.offsets import ConsumerOffsets

log = logging.getLogger(__name__)


class InputLoads:
    """How many messages each input partition holds (summed over the input topics), as the
    broker last said: what the leader balances. Read by the assignor in faust's consumer thread,
    so it is replaced whole, never changed in place."""

    def __init__(self, offsets: ConsumerOffsets, topics: Iterable[str], partitions: int) -> None:
        self._offsets = offsets
        self.topics = sorted(topics)
        self.partitions = partitions
        self.loads: tuple[int, ...] | None = None  # None until the broker has answered once

    async def measure(self) -> None:
        """Ask the broker for the input partitions' start and end offsets; keep the loads as they
        were when it does not answer."""
        tps = [(topic, partition) for topic in self.topics for partition in range(self.partitions)]
        start = await self._offsets.start_offsets(tps)
        end = await self._offsets.end_offsets(tps)
        if set(start) != set(tps) or set(end) != set(tps):
            return
        loads = [0] * self.partitions
        for topic, partition in tps:
            loads[partition] += max(0, end[topic, partition] - start[topic, partition])
        self.loads = tuple(loads)

    async def measure_before_start(self) -> None:
        """`measure` from a loop of its own (the worker's has not started): its client goes too."""
        try:
            await self.measure()
        finally:
            await self.close()

    async def close(self) -> None:
        await self._offsets.close()


class BalancedAssignor(PartitionAssignor):
    """faust's `PartitionAssignor` with the input topics' group placed by `balance`."""

    def _perform_assignment(self, cluster: Any, member_metadata: Mapping[str, Any]) -> Any:
        # faust's own steps, in its order, with `_place` where it builds a CopartitionedAssignor.
        members = member_metadata.items()
        clients = {member: self._get_client_metadata(metadata) for member, metadata in members}
        subscriptions = {member: list(metadata.subscription) for member, metadata in members}
        cluster_assignment = ClusterAssignment()
        for member in member_metadata:
            cluster_assignment.add_client(member, subscriptions[member], clients[member])
        groups = self._get_copartitioned_groups(cluster_assignment.topics(), cluster, subscriptions)
        self._update_member_urls(clients)
        assignments: MutableMapping[str, ClientAssignment] = {
            member: ClientAssignment(actives={}, standbys={}) for member in member_metadata
        }
        group_of_topic: dict[str, int] = {}
        partitions_of_topic: dict[str, int] = {}
        for group_id, (partitions, topic_sets) in enumerate(sorted(groups.items())):
            for topics in topic_sets:
                for topic in topics:
                    group_of_topic[topic] = group_id
                    partitions_of_topic[topic] = partitions
                current = cluster_assignment.copartitioned_assignments(topics)
                for member, placed in self._place(topics, current, partitions).items():
                    assignments[member].add_copartitioned_assignment(placed)
        assignments = self._global_table_standby_assignments(assignments, partitions_of_topic)
        return self._protocol_assignments(
            assignments,
            self._get_changelog_distribution(assignments),
            self._get_external_topic_distribution(assignments),
            group_of_topic,
        )

    def _place(
        self, topics: set[str], current: MutableMapping[str, CopartitionedAssignment], partitions: int
    ) -> Mapping[str, CopartitionedAssignment]:
        loads = self._loads_for(topics, partitions)
        if loads is None:
            faust_own = CopartitionedAssignor(
                topics=topics, cluster_asgn=current, num_partitions=partitions, replicas=self.replicas
            )
            return cast(Mapping[str, CopartitionedAssignment], faust_own.get_assignment())
        now = {member: Held(set(held.actives), set(held.standbys)) for member, held in current.items()}
        placed = balance(loads, now, self.replicas)
        log.info(
            "partitions assigned by their input messages",
            extra={
                "loads": list(loads),
                "actives": {member: sorted(held.actives) for member, held in placed.items()},
                "standbys": {m: sorted(held.standbys) for m, held in placed.items() if held.standbys},
                "busiest_share": round(busiest_share(loads, placed), 3),
            },
        )
        return {
            member: CopartitionedAssignment(actives=held.actives, standbys=held.standbys, topics=set(topics))
            for member, held in placed.items()
        }

    def _loads_for(self, topics: set[str], partitions: int) -> Sequence[int] | None:
        """The input loads when `topics` is the input topics' group and they are known."""
        measured: InputLoads | None = getattr(self.app, "input_loads", None)
        if measured is None or measured.loads is None or len(measured.loads) != partitions:
            return None
        if not set(measured.topics) <= topics:
            return None
        return measured.loads
