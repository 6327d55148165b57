"""Which partition a message keyed by `account_id` lands on (Kafka's default murmur2)."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_of(account_id: str, partitions: int) -> int:
    """Kafka's default partition for a message keyed by `account_id` (Java clients, aiokafka)."""
    return partition_of_key(account_id.encode(), partitions)


def partition_of_key(key: bytes, partitions: int) -> int:
    """`partition_of` for an account id already encoded as UTF-8."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions
