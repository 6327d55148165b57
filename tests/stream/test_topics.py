"""The topics the worker creates before it starts: inputs, outputs and the tables' changelogs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.errors import InvalidTopicError, PolicyViolationError, TopicAlreadyExistsError

from streamer.contract.decode import MAX_EVENT_BYTES
from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream import topics
from streamer.stream.access import KafkaAccess
from streamer.stream.app import create_app
from streamer.stream.topics import (
    TABLES,
    InputTopics,
    TopicsNotCreated,
    changelog_topic,
    check_created,
    describe_inputs,
    topic_specs,
)
from tests.fixtures import free_port


def test_table_changelogs_are_created_up_front_compacted_and_co_partitioned(tmp_path: Path) -> None:
    settings = Settings(app_id="hs-test", topic_prefix="t.", partitions=6, data_dir=tmp_path)
    specs = {spec.name: spec for spec in topic_specs(settings)}
    for table in TABLES:
        spec = specs[changelog_topic(settings, table)]
        assert spec.num_partitions == 6
        configs = spec.topic_configs
        assert configs["cleanup.policy"] == "compact"
        # Compaction only cleans closed segments: a changelog whose segments are as large as
        # the broker's (256 MiB locally) is never compacted, and recovery reads its history.
        assert int(configs["segment.bytes"]) <= 12 * 1024 * 1024  # one largest account record
        assert int(configs["segment.ms"]) <= 15 * 60 * 1000
        assert float(configs["min.cleanable.dirty.ratio"]) <= 0.5
    assert specs["t.health"].topic_configs == {"cleanup.policy": "compact"}
    # the broker stamps input messages: a producer cannot date them; and the largest valid
    # event, re-routed with its key, fits (topics.INPUT)
    assert specs["t.usage"].topic_configs == {
        "message.timestamp.type": "LogAppendTime",
        "max.message.bytes": str(MAX_EVENT_BYTES + 64 * 1024),
    }
    # every alert and dead letter counts, and a dead letter may have no key (topics.LOGGED)
    for log in ("t.alerts", "t.deadletter"):
        assert specs[log].topic_configs == {"cleanup.policy": "delete"}


def test_changelog_names_are_the_ones_faust_writes_to(tmp_path: Path) -> None:
    """If faust named a table's changelog otherwise, the worker would still race its creation."""
    settings = Settings(app_id="hs-test", partitions=2, data_dir=tmp_path)
    app = create_app(settings, ScoreConfig(), store="memory://")
    assert sorted(app.tables) == sorted(TABLES)
    for table in TABLES:
        assert app.tables[table].changelog_topic.get_topic_name() == changelog_topic(settings, table)


def test_failover_settings_reach_faust(tmp_path: Path) -> None:
    settings = Settings(
        app_id="hs-test",
        data_dir=tmp_path,
        standby_replicas=1,
        session_timeout_s=10,
        heartbeat_interval_s=1,
    )
    conf = create_app(settings, ScoreConfig(), store="memory://").conf
    assert conf.table_standby_replicas == 1
    assert (conf.broker_session_timeout, conf.broker_heartbeat_interval) == (10, 1)
    defaults = create_app(
        Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://"
    ).conf
    assert (defaults.table_standby_replicas, defaults.broker_session_timeout) == (0, 60)


def test_a_fetch_is_capped_so_a_batch_stays_near_its_size(tmp_path: Path) -> None:
    from streamer.stream.app import BATCH_MAX, FETCH_MAX

    conf = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://").conf
    assert conf.broker_max_poll_records == FETCH_MAX <= BATCH_MAX


def test_a_fetch_returns_little_per_partition_so_every_topic_delivers_soon(tmp_path: Path) -> None:
    """With a backlog, a fetch's records are handed out partition by partition: faust's 1 MiB per
    partition made the busy topics' partitions hold up the merge at every start."""
    from streamer.stream.app import PARTITION_FETCH_BYTES

    conf = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://").conf
    assert conf.consumer_max_fetch_size == PARTITION_FETCH_BYTES <= 128 * 1024


def test_rocksdb_stores_keep_small_write_buffers_and_cache(tmp_path: Path) -> None:
    """faust's defaults (64 MiB x 3 write buffers, a 2 GiB block cache, per partition) kept a
    recovered partition's changelog resident beside the decoded accounts."""
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path, store="rocksdb://"), ScoreConfig())
    for table in TABLES:
        options = app.tables[table].data.rocksdb_options  # type: ignore[attr-defined]
        assert options.write_buffer_size * options.max_write_buffer_number <= 16 * 1024 * 1024
        assert options.block_cache_size <= 16 * 1024 * 1024


def test_topics_the_broker_refused_to_create_are_named_with_its_reason() -> None:
    """CreateTopics answers with an error per topic and raises for none: a worker went on and
    failed later, on a topic that was never there."""
    response = SimpleNamespace(
        topic_errors=[
            ("cs.usage", 0, None),
            ("cs.alerts", TopicAlreadyExistsError.errno, "exists"),  # another process was first
            ("cs.health", PolicyViolationError.errno, "compaction is not allowed"),
            ("cs.tickets", InvalidTopicError.errno, None),
        ]
    )
    with pytest.raises(TopicsNotCreated) as refused:
        check_created(response)
    said = str(refused.value)
    assert (
        "cs.health: PolicyViolationError (compaction is not allowed); cs.tickets: InvalidTopicError." in said
    )
    assert "cs.usage" not in said and "cs.alerts" not in said
    check_created(
        SimpleNamespace(topic_errors=[("cs.usage", 0), ("cs.alerts", TopicAlreadyExistsError.errno)])
    )


def test_topics_get_the_replication_factor_and_two_in_sync_copies_from_three() -> None:
    single = topic_specs(Settings(partitions=4))
    assert {spec.replication_factor for spec in single} == {1}
    assert all("min.insync.replicas" not in spec.topic_configs for spec in single)
    three = topic_specs(Settings(partitions=4, replication_factor=3))
    assert {spec.replication_factor for spec in three} == {3}
    assert all(spec.topic_configs["min.insync.replicas"] == "2" for spec in three)
    [health] = [spec for spec in three if spec.name == "cs.health"]
    assert health.topic_configs["cleanup.policy"] == "compact"  # the kind's own settings kept


def test_a_broker_that_does_not_describe_the_inputs_is_said_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker keeps what it knew of the input topics when the broker does not answer; it
    used to say nothing at all (an ACL refusing DescribeConfigs left the limit at its default)."""
    monkeypatch.setattr(topics, "_UNANSWERED", set())  # said once per process: not by another test
    dead = KafkaAccess(f"127.0.0.1:{free_port()}")

    async def twice() -> list[InputTopics]:
        return [await describe_inputs(dead, ["hs.usage"]) for _ in range(2)]

    with caplog.at_level(logging.WARNING, logger="streamer.stream.topics"):
        assert asyncio.run(twice()) == [InputTopics(None, None)] * 2
    said = [r.getMessage() for r in caplog.records if "did not describe" in r.getMessage()]
    assert said == ["the broker did not describe the input topics; going on with what was known (said once)"]
