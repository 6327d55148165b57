"""The project-managed local stack: idempotent up, status, Kafka and Redis round-trips, kcat."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner

from streamer.local.cli import local
from streamer.local.errors import MissingToolError
from streamer.local.kcat import ensure_kcat
from streamer.local.settings import StackSettings
from streamer.local.stack import StackInfo, ensure_up, status

pytestmark = pytest.mark.integration


def test_up_is_idempotent(stack: StackInfo) -> None:
    messages: list[str] = []
    again = ensure_up(StackSettings.from_env(), echo=messages.append)
    assert again.started == ()
    assert (again.kafka_pid, again.redis_pid) == (stack.kafka_pid, stack.redis_pid)
    assert again.bootstrap == stack.bootstrap and again.redis_url == stack.redis_url
    assert not any(line.startswith("started") for line in messages)


def test_cli_up_on_a_running_stack_says_so(stack: StackInfo) -> None:
    result = CliRunner().invoke(local, ["up"])
    assert result.exit_code == 0, result.output
    assert "already running" in result.stderr
    assert f"HEALTHSTREAM_KAFKA_BOOTSTRAP={stack.bootstrap}" in result.stdout
    # where it lives too: `eval` of this output and `down` finds a stack started with --stack-dir
    settings = StackSettings.from_env()
    assert f"export HEALTHSTREAM_STACK_DIR={settings.stack_dir.resolve()}\n" in result.stdout
    assert f"export HEALTHSTREAM_REDIS_PORT={settings.redis_port}\n" in result.stdout


def test_status_reports_both_up(stack: StackInfo) -> None:
    current = status()
    assert current.all_up
    assert current["kafka"].pid == stack.kafka_pid
    assert current["kafka"].address == stack.bootstrap
    assert current["redis"].pid == stack.redis_pid

    result = CliRunner().invoke(local, ["status"])
    assert result.exit_code == 0, result.output
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["kafka", "up"],
        ["redis", "up"],
    ]


def test_cli_status_exits_3_when_down(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        local, ["status", "--stack-dir", str(tmp_path), "--kafka-port", "1", "--redis-port", "2"]
    )
    assert result.exit_code == 3
    assert "down" in result.stdout


def test_up_help_names_the_knobs() -> None:
    result = CliRunner().invoke(local, ["up", "--help"])
    assert result.exit_code == 0
    for word in ("HEALTHSTREAM_KAFKA_PORT", "HEALTHSTREAM_REDIS_PORT", "--stack-dir", "--timeout"):
        assert word in result.output


async def test_kafka_produce_consume_round_trip(stack: StackInfo) -> None:
    topic = f"it-local-stack-{uuid.uuid4().hex[:8]}"  # auto-created on first produce
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"hello": "kafka"}', key=b"acct-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.bootstrap,
        group_id=f"it-{topic}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"acct-1", b'{"hello": "kafka"}')


def test_redis_ping_set_get(stack: StackInfo) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    try:
        assert client.ping()
        key = f"it:local-stack:{uuid.uuid4().hex}"
        client.set(key, "ok", ex=60)
        assert client.get(key) == b"ok"
    finally:
        client.close()


def test_kcat_sees_the_broker(stack: StackInfo) -> None:
    kcat = ensure_kcat()
    listing = subprocess.run(
        [kcat, "-b", stack.bootstrap, "-L", "-m", "10"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "1 brokers" in listing.stdout


def test_missing_java_is_named_with_its_package(tmp_path: Path) -> None:
    real = StackSettings.from_env()  # jars already cached there: only java is needed
    settings = StackSettings.from_env(stack_dir=tmp_path / "stack", cache_dir=real.cache_dir)
    with pytest.raises(MissingToolError) as error:
        ensure_up(settings, which=lambda command: None if command == "java" else "/usr/bin/x")
    message = str(error.value)
    assert "java" in message and "mvn" not in message
    assert "apt-get install openjdk-17-jre-headless" in message
    assert not (tmp_path / "stack").exists()  # failed before touching anything


def test_missing_java_and_maven_before_the_first_download(tmp_path: Path) -> None:
    settings = StackSettings.from_env(stack_dir=tmp_path / "stack", cache_dir=tmp_path / "cache")
    with pytest.raises(MissingToolError) as error:
        ensure_up(settings, which=lambda command: None)
    message = str(error.value)
    assert "java" in message and "mvn" in message
    assert "apt-get install openjdk-17-jre-headless maven" in message
