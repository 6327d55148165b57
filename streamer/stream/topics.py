"""Create the input, output and table changelog topics (idempotent), with the configured partition count."""

from __future__ import annotations

import logging
from contextlib import suppress

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamer.settings import Settings

log = logging.getLogger(__name__)

OUTPUTS = ("alerts", "health", "deadletter")
TABLES = ("accounts", "clocks")  # the worker's tables; each has a changelog topic


def changelog_topic(settings: Settings, table: str) -> str:
    """faust's name for a table's changelog: `{app id}-{table}-changelog`."""
    return f"{settings.app_id}-{table}-changelog"


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Four co-partitioned inputs, alerts, compacted health snapshots, dead letters, and the
    compacted table changelogs.

    The changelogs are created here, before the worker starts, rather than left to faust: faust
    creates them in the background, and a table written before its changelog reached the
    worker's metadata crashes the agent (`PartitionsMismatch: ... changelog has 0 partitions`),
    seen on a busy machine.
    """
    compacted = {settings.topic("health"), *(changelog_topic(settings, table) for table in TABLES)}
    names = [
        *settings.input_topics.values(),
        *(settings.topic(o) for o in OUTPUTS),
        *(changelog_topic(settings, table) for table in TABLES),
    ]
    specs = []
    for name in names:
        configs = {"cleanup.policy": "compact"} if name in compacted else {}
        specs.append(NewTopic(name, settings.partitions, 1, topic_configs=configs))
    return specs


async def ensure_topics(settings: Settings) -> list[str]:
    """Create whichever topics are missing; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            with suppress(TopicAlreadyExistsError):  # another process created them meanwhile
                await admin.create_topics(missing)
            log.info("created topics", extra={"topics": [spec.name for spec in missing]})
        return [spec.name for spec in missing]
    finally:
        await admin.close()
