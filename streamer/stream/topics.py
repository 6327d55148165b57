"""Create the input, output and table changelog topics (idempotent), with the configured partition count."""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from streamer.contract.decode import MAX_EVENT_BYTES
from streamer.settings import Settings
from streamer.stream.access import KafkaAccess

log = logging.getLogger(__name__)

OUTPUTS = ("alerts", "health", "deadletter")
TABLES = ("accounts", "clocks")  # the worker's tables; each has a changelog topic

COMPACTED = {"cleanup.policy": "compact"}
# A table changelog is read from its start when a worker recovers a partition, so what it holds
# is what recovery costs. Compaction keeps one record per key, but Kafka's log cleaner only
# compacts closed segments: with the broker's segment size (256 MiB locally, 1 GiB by default)
# a changelog below that size was never compacted and recovery read every record ever written
# (history, not state). Small segments that also close after a few minutes, and a cleaner that
# starts once a fifth of the log is superseded, bound what recovery reads to about 1.25 x the
# compact state plus one open segment per partition.
# One account is one changelog record. The broker's default record limit (1 MiB) was within
# reach of valid input (140,000 usage events of one account within the allowed lateness, or
# 1,000 survey answers with long ids), and a record the broker refuses stops the worker on every
# restart. The core's `[limits]` bound an account's record below this (a test builds the worst
# case of the default limits: about 7.4 MB, 88% of the 8 MiB this was); a segment holds at least
# one record.
CHANGELOG_RECORD_MAX_BYTES = 12 * 1024 * 1024
CHANGELOG_SEGMENT_BYTES = CHANGELOG_RECORD_MAX_BYTES
CHANGELOG_SEGMENT_MS = 5 * 60 * 1000
CHANGELOG = {
    **COMPACTED,
    "max.message.bytes": str(CHANGELOG_RECORD_MAX_BYTES),
    "segment.bytes": str(CHANGELOG_SEGMENT_BYTES),
    "segment.ms": str(CHANGELOG_SEGMENT_MS),
    "min.cleanable.dirty.ratio": "0.2",
}


# An input message's Kafka timestamp bounds how far in the future its event may be
# (`input.max_skew_hours`). With the default CreateTime the producer sets it: an event dated
# 2099 sent with a timestamp in 2100 passed, set its partition's stream time to 2099, and every
# later event was too late. With LogAppendTime the broker stamps each message as it appends it.
#
# A keyless message (or one another partitioner placed) is re-published keyed to its account's
# partition of the same topic: the copy is larger than what the broker took by the key. At the
# broker's default record limit (1 MiB + 12 bytes) a valid keyless event within some 70 bytes
# of the largest the contract takes was refused as the copy, sent again for ever, and the
# worker stood still, at every restart. The input topics take a valid event with its key.
INPUT_RECORD_MAX_BYTES = MAX_EVENT_BYTES + 64 * 1024
# What a record batch of one uncompressed record adds to its key and value: the batch header (61
# bytes) and the record's own fields (at most 32), rounded up. A copy that does not fit the
# topic's limit with it is dead-lettered instead of re-routed (`streamer.stream.scorer`).
RECORD_OVERHEAD_BYTES = 128
INPUT = {"message.timestamp.type": "LogAppendTime", "max.message.bytes": str(INPUT_RECORD_MAX_BYTES)}

# Alerts and dead letters are logs: every record counts, not the latest per key. A compacted
# one kept one alert per account, and refused a dead letter without a key (of a keyless
# message), which the worker then sent again for ever while every partition waited.
LOGGED = {"cleanup.policy": "delete"}
LOGGED_OUTPUTS = ("alerts", "deadletter")


def min_insync(replication_factor: int) -> dict[str, str]:
    """With three copies or more, a write the producers see acknowledged (acks=all) is on two of
    them at least; with fewer, one (a lost broker must not stop every write)."""
    return {"min.insync.replicas": "2"} if replication_factor >= 3 else {}


def changelog_topic(settings: Settings, table: str) -> str:
    """faust's name for a table's changelog: `{app id}-{table}-changelog`."""
    return f"{settings.app_id}-{table}-changelog"


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the worker uses, with the configs it is created with (the broker's defaults
    when empty)."""
    durable = min_insync(settings.replication_factor)
    configs: dict[str, dict[str, str]] = {name: INPUT | durable for name in settings.input_topics.values()}
    for output in OUTPUTS:
        configs[settings.topic(output)] = (COMPACTED if output == "health" else LOGGED) | durable
    for table in TABLES:
        configs[changelog_topic(settings, table)] = CHANGELOG | durable
    return configs


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Four co-partitioned inputs, alerts, compacted health snapshots, dead letters, and the
    compacted table changelogs (see `CHANGELOG`).

    The changelogs are created here, before the worker starts, rather than left to faust: faust
    creates them in the background, and a table written before its changelog reached the
    worker's metadata crashes the agent (`PartitionsMismatch: ... changelog has 0 partitions`),
    seen on a busy machine.
    """
    return [
        NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=configs)
        for name, configs in topic_configs(settings).items()
    ]


class TopicsUnusable(Exception):
    """The deployment's topics cannot be used as they are: the message says why and what to do."""


class TopicsMismatch(TopicsUnusable):
    """Topics of the deployment exist with another partition count than the settings'."""


class TopicsNotCreated(TopicsUnusable):
    """The broker refused to create topics of the deployment."""


async def ensure_topics(settings: Settings) -> list[str]:
    """Create whichever topics are missing; return the names created. Changelogs that exist
    already get `CHANGELOG`'s settings (those created by an earlier release had the broker's
    segment size, so they were never compacted), input topics `INPUT`'s, the alerts and
    dead-letter topics `LOGGED`'s.

    Raises `TopicsMismatch` when topics exist with another partition count than
    `settings.partitions`: an account's events, state and outputs live on the partition its id
    hashes to among that many, so a worker cannot run on them (on an input with fewer
    partitions it re-routed every event back to where it was, for ever)."""
    admin = AIOKafkaAdminClient(**KafkaAccess.of(settings).client_options(), request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        ours = [spec.name for spec in topic_specs(settings) if spec.name in existing]
        if ours:
            await _check_existing(admin, settings, ours)
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            with suppress(TopicAlreadyExistsError):  # another process created them meanwhile
                check_created(await admin.create_topics(missing))
            log.info("created topics", extra={"topics": [spec.name for spec in missing]})
        older = sorted(existing & {changelog_topic(settings, table) for table in TABLES})
        if older:
            await _configure(admin, older, CHANGELOG, CHANGELOG_SETTINGS)
        inputs = sorted(existing & set(settings.input_topics.values()))
        if inputs:
            await _configure(admin, inputs, INPUT, INPUT_SETTINGS)
        logs = sorted(existing & {settings.topic(output) for output in LOGGED_OUTPUTS})
        if logs:
            await _configure(admin, logs, LOGGED, LOGGED_SETTINGS)
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def configure_inputs(kafka: KafkaAccess, names: list[str]) -> None:
    """Give existing input topics `INPUT`'s settings (one created again by an operator or by
    the broker on demand has the broker's defaults); a failure is logged, as at start-up."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=15000)
    try:
        await admin.start()
        await _configure(admin, names, INPUT, INPUT_SETTINGS)
    except Exception as exc:
        log.warning(f"could not set {INPUT_SETTINGS.what}", extra={"topics": names, "error": repr(exc)})
    finally:
        await admin.close()


@dataclass(frozen=True)
class InputTopics:
    """What the broker says of the input topics now; None where it did not answer."""

    record_limit: int | None  # the smallest `max.message.bytes` (the broker's default included)
    partitions: dict[str, int] | None  # each topic's partition count


async def describe_inputs(kafka: KafkaAccess, names: list[str]) -> InputTopics:
    """The largest record every input topic takes now, and each one's partition count (an
    operator can add partitions under running workers: start-up refuses that, and until the
    restart the worker says so)."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=15000)
    try:
        await admin.start()
        try:
            described, refused = await _described(admin, names)
        except Exception as exc:
            _unanswered("the input topics' configs", exc)
            described, refused = {}, names
        try:
            topics = await admin.describe_topics(names)
        except Exception as exc:
            _unanswered("the input topics' partitions", exc)
            topics = []
    except Exception as exc:
        _unanswered("the input topics", exc)
        return InputTopics(None, None)
    finally:
        await admin.close()
    limits = [
        int(entry[1])
        for entries in described.values()
        for entry in entries
        if entry[0] == "max.message.bytes" and entry[1]
    ]
    counts = {
        str(t["topic"]): len(t["partitions"]) for t in topics if t["partitions"] and not t["error_code"]
    }
    return InputTopics(
        min(limits) if not refused and len(limits) == len(names) else None,
        counts if len(counts) == len(names) else None,
    )


_UNANSWERED: set[tuple[str, str]] = set()  # (what, error type) said once per process


def _unanswered(what: str, exc: Exception) -> None:
    """Say once per kind of error that the broker did not describe `what` (an ACL that refuses
    DescribeConfigs, say): the worker then keeps what it knew, which nothing else would show."""
    key = (what, type(exc).__name__)
    if key not in _UNANSWERED:
        _UNANSWERED.add(key)
        log.warning(
            f"the broker did not describe {what}; going on with what was known (said once)",
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )


def check_created(response: Any) -> None:
    """Raise `TopicsNotCreated` for each topic the broker refused (the CreateTopics response
    carries an error per topic and raises for none): a worker went on and waited for ever,
    without a word, for topics that were never there."""
    refused = []
    for topic in response.topic_errors:
        name, code = topic[0], topic[1]
        if code in (0, TopicAlreadyExistsError.errno):  # another process created it meanwhile
            continue
        detail = topic[2] if len(topic) > 2 and topic[2] else None
        error = for_code(code).__name__
        refused.append(f"{name}: {error}" + (f" ({detail})" if detail else ""))
    if refused:
        raise TopicsNotCreated(
            "the broker refused to create topics: "
            + "; ".join(refused)
            + ". Fix what it names (the broker's settings or this client's rights) and start again"
        )


async def _check_existing(admin: AIOKafkaAdminClient, settings: Settings, names: list[str]) -> None:
    """Refuse topics with another partition count (`TopicsMismatch`); warn about topics with
    fewer copies than `settings.replication_factor` (created before it was raised: the worker
    runs on them, and one lost broker can lose what they hold)."""
    described = await admin.describe_topics(names)
    thin = sorted(
        str(topic["topic"])
        for topic in described
        if not topic["error_code"]
        and topic["partitions"]
        and min(len(partition["replicas"]) for partition in topic["partitions"]) < settings.replication_factor
    )
    if thin:
        log.warning(
            "topics have fewer copies than HEALTHSTREAM_REPLICATION_FACTOR; raise theirs with "
            "kafka-reassign-partitions",
            extra={"topics": thin, "replication_factor": settings.replication_factor},
        )
    wrong = sorted(
        (str(topic["topic"]), len(topic["partitions"]))
        for topic in described
        if not topic["error_code"] and len(topic["partitions"]) != settings.partitions
    )
    if wrong:
        listed = ", ".join(f"{name} has {count}" for name, count in wrong)
        raise TopicsMismatch(
            f"topics exist with another partition count than HEALTHSTREAM_PARTITIONS "
            f"({settings.partitions}): {listed}. Every topic of a deployment needs the same count "
            "(accounts are placed by partition): set HEALTHSTREAM_PARTITIONS (or `streamer worker "
            "--partitions`) to theirs, or delete the topics and start again"
        )


_TOPIC_OVERRIDE = 1  # DescribeConfigs config_source: set on the topic itself


@dataclass(frozen=True)
class _TopicSettings:
    """What `_configure` says when it sets, or cannot set, one kind of topic-level settings."""

    what: str
    otherwise: str


CHANGELOG_SETTINGS = _TopicSettings(
    "the changelog topics' compaction and record-size settings",
    "recovery reads their whole history until they are set, and an account whose record outgrows "
    "the broker's default limit (1 MiB) stops the worker",
)
INPUT_SETTINGS = _TopicSettings(
    "the input topics' broker timestamps (LogAppendTime) and record size",
    "a producer's own message timestamps bound how far in the future an event may be, and a "
    "keyless event within some 70 bytes of the largest one cannot be re-routed to its "
    "account's partition (the worker dead-letters it)",
)
LOGGED_SETTINGS = _TopicSettings(
    "the alerts and dead-letter topics' delete policy",
    "a compacted one keeps one record per key and refuses a dead letter without a key, which the "
    "worker sends again until it is taken",
)


async def _described(admin: AIOKafkaAdminClient, names: list[str]) -> tuple[dict[str, list[Any]], list[str]]:
    """Each topic's config entries as DescribeConfigs answers them (name, value, read-only,
    source, ...; the broker's defaults included), and a line for each topic it would not describe."""
    described: dict[str, list[Any]] = {}
    refused: list[str] = []
    for response in await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    ):
        for code, message, _, name, entries in response.resources:
            if code:
                refused.append(f"{name}: error {code} {message}")
            else:
                described[name] = entries
    return described, refused


async def _configure(
    admin: AIOKafkaAdminClient, names: list[str], wanted: dict[str, str], kind: _TopicSettings
) -> None:
    """Set `wanted` on existing topics that lack it, keeping their other topic-level settings
    (AlterConfigs replaces a topic's whole set of overrides). A failure is logged, not fatal:
    the worker runs either way (what it costs: `kind.otherwise`)."""
    errors: list[str] = []
    try:
        described, refused = await _described(admin, names)
        errors += refused
        resources = []
        for name, entries in described.items():
            overrides = {
                entry[0]: entry[1]
                for entry in entries
                if entry[3] == _TOPIC_OVERRIDE and entry[1] is not None
            }
            if any(overrides.get(key) != value for key, value in wanted.items()):
                configs = {**overrides, **wanted}
                resources.append(ConfigResource(ConfigResourceType.TOPIC, name, configs=configs))
        if resources:
            for response in await admin.alter_configs(resources):
                errors += [
                    f"{name}: error {code} {message}" for code, message, _, name in response.resources if code
                ]
            log.info(f"set {kind.what}", extra={"topics": [r.name for r in resources]})
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    if errors:
        log.warning(
            f"could not set {kind.what}; {kind.otherwise} "
            "(kafka-configs.sh --alter --entity-type topics ...)",
            extra={"errors": errors[:4], "configs": wanted},
        )
