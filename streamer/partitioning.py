"""Which partition a message keyed by `account_id` lands on (Kafka's default murmur2)."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_of(account_id: str, partitions: int) -> int:
    """Kafka's default partition for a message keyed by `account_id` (Java clients, aiokafka)."""
    return (int(murmur2(account_id.encode())) & 0x7FFFFFFF) % partitions
