"""Building the worker's app: what faust registers, and what the worker skips at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
import faust.app.base
import pytest
import venusian

from streamer.core.config import ScoreConfig
from streamer.settings import Settings
from streamer.stream.app import create_app


def test_the_agent_and_timers_are_registered_without_autodiscovery_marks(tmp_path: Path) -> None:
    """faust's venusian marks read every loaded module's real path (0.23 CPU s per start);
    the worker never autodiscovers, so it declares its agent and timers without them."""
    real = faust.app.base.venusian
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    assert list(app.agents) == [f"{create_app.__module__}.score"]  # the name faust gave it before
    declared = [agent.fun for agent in app.agents.values()] + list(app._app_tasks)
    assert len(declared) >= 4  # the agent and at least three timers
    marked = [fun for fun in declared if hasattr(fun, venusian.ATTACH_ATTR)]
    assert not marked, f"marked for autodiscovery: {marked}"
    assert faust.app.base.venusian is real  # restored for any other app in the process


def test_the_app_has_no_http_client(tmp_path: Path) -> None:
    """faust's default HTTP client class is aiohttp's, imported when the app is built; the
    worker makes no HTTP request, and asking for a client says so."""
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    with pytest.raises(RuntimeError, match="no HTTP client"):
        app.http_client  # noqa: B018


def test_no_leader_topic_is_created_or_fetched(tmp_path: Path) -> None:
    """Nothing in the worker runs on the leader only; faust's leader topic was one more topic to
    create before the group join and to fetch with the inputs."""
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    assert app.conf.topic_disable_leader


def test_the_livelock_check_reads_the_monitor_the_consumer_feeds(tmp_path: Path) -> None:
    """faust's livelock check reads `app.monitor.stream_inbound_time`, which the consumer's
    `ack_inputs` fills for the lane (tests/stream/test_consumer.py); the worker's app has that
    monitor, and keeps faust's timeout (raising it would silence the fetch checks too)."""
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    assert app.monitor.stream_inbound_time == {}
    assert app.conf.stream_processing_timeout == 300.0


def test_a_failing_stop_hook_still_runs_the_others_and_fausts_own_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A final checkpoint that fails (the broker away at SIGTERM) skipped faust's own stop: the
    consumer was never stopped nor the producer flushed."""
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    ran: list[str] = []

    async def failing() -> None:
        ran.append("failing")
        raise ConnectionError("broker away")

    async def after() -> None:
        ran.append("after")

    async def faust_stop(self: faust.App) -> None:
        ran.append("faust")

    monkeypatch.setattr(faust.App, "on_stop", faust_stop)
    app.before_stop[:] = [failing, after]
    asyncio.run(app.on_stop())
    assert ran == ["failing", "after", "faust"]
    assert "a step of the worker's shutdown failed" in caplog.text


def test_fausts_own_environment_variables_change_nothing_the_settings_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust reads some eighty variables of its own (`BROKER_URL`, `TOPIC_PARTITIONS`,
    `BROKER_SESSION_TIMEOUT`, `PROCESSING_GUARANTEE`, ...) over what its app was given. Set for
    another program (Celery reads `BROKER_URL`), they sent the worker to another broker, gave its
    changelogs another partition count, or a session the membership lease did not know."""
    fausts = {
        "BROKER_URL": "kafka://elsewhere:9092",
        "TOPIC_PARTITIONS": "9",
        "BROKER_SESSION_TIMEOUT": "8",
        "PROCESSING_GUARANTEE": "exactly_once",
        "APP_DATADIR": str(tmp_path / "other"),
    }
    for name, value in fausts.items():
        monkeypatch.setenv(name, value)
    settings = Settings(app_id="hs-test", data_dir=tmp_path, kafka_bootstrap="127.0.0.1:9092")
    app = create_app(settings, ScoreConfig(), store="memory://")
    assert [str(url) for url in app.conf.broker] == ["kafka://127.0.0.1:9092"]
    assert app.conf.topic_partitions == settings.partitions
    assert app.conf.broker_session_timeout == settings.session_timeout_s
    assert app.conf.processing_guarantee.value == "at_least_once"
    assert Path(app.conf.datadir) == tmp_path


@pytest.mark.parametrize("session_s", [60.0, 90.5, 1800.0])
def test_every_session_timeout_the_settings_allow_gives_a_consumer(tmp_path: Path, session_s: float) -> None:
    """faust refuses a session timeout above its request timeout when it creates the consumer,
    90 s by default: a worker with a session of 91 s ended there in a traceback."""
    settings = Settings(
        app_id="hs-test", data_dir=tmp_path, session_timeout_s=session_s, heartbeat_interval_s=3
    )
    app = create_app(settings, ScoreConfig(), store="memory://")

    async def consumer() -> object:
        return app.consumer._thread._create_worker_consumer(app.transport)

    assert asyncio.run(consumer()) is not None


def test_a_table_recovery_that_ends_after_the_next_rebalance_began_does_not_end_it(tmp_path: Path) -> None:
    """faust's recovery checks its generation, then awaits the seek of the input partitions
    before it ends the rebalance: one that began meanwhile was taken as over before its own
    recovery ran, and the scorer read tables still missing accounts."""
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    app.consumer_generation_id = recovery._generation_id = 1  # generation 1's recovery runs
    app.on_rebalance_start()  # the next rebalance begins: generation 1's partitions are revoked
    app.on_rebalance_end()  # generation 1's recovery ends after its seek
    assert app.rebalancing

    # Generation 2's assignment: the table manager asks for its recovery.
    app.consumer_generation_id = recovery._generation_id = 2
    recovery.signal_recovery_start.set()
    app.assignment_made()
    app.on_rebalance_end()  # generation 1's recovery, still
    assert app.rebalancing

    recovery.signal_recovery_start.clear()  # generation 2's recovery starts, and ends
    app.on_rebalance_end()
    assert not app.rebalancing


def test_the_table_manager_tells_the_app_once_it_asked_for_the_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the same step as faust's, not in a receiver of the assignment signal: receivers run in
    no set order, and one that waited (the scorer's) left a recovery ending meanwhile ignored."""
    app = create_app(Settings(app_id="hs-test", data_dir=tmp_path), ScoreConfig(), store="memory://")
    asked: list[int] = []

    async def fausts(self: Any, assigned: Any, revoked: Any, newly: Any, generation_id: int = 0) -> None:
        asked.append(generation_id)
        assert app.awaiting_assignment  # not before faust asked

    monkeypatch.setattr(faust.tables.TableManager, "on_rebalance", fausts)
    app.on_rebalance_start()
    asyncio.run(app.tables.on_rebalance(set(), set(), set(), 3))
    assert asked == [3] and not app.awaiting_assignment
