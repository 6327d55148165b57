"""`streamer demo` end to end: stack, worker, view and a simulated stream; Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streamer.local.proc import file_lock, held_lock, is_alive
from streamer.local.stack import StackInfo
from tests.fixtures import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def one_demo_at_a_time(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[None]:
    """The demo's names are fixed and one demo runs per stack: two tests of this file running at
    once under `pytest -n` would have the second refused (before the demo's lock, it deleted the
    first one's topics)."""
    base = tmp_path_factory.getbasetemp()
    with file_lock((base if worker_id == "master" else base.parent) / "demo.lock"):
        yield


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(orjson.loads(response.read()))


def assert_stopped_quietly(stderr: str) -> None:
    """Ctrl-C stops the demo's clients in order: no traceback, no task or client left open."""
    noise = ("Traceback", "Task was destroyed", "Unclosed", "never awaited", "never retrieved")
    found = [line for line in stderr.splitlines() if any(word in line for word in noise)]
    assert not found, "\n".join(found[:10])


def test_demo_streams_a_portfolio_serves_the_dashboard_and_stops_on_ctrl_c(
    stack: StackInfo, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, **stack.env()}
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "demo",
            "--accounts",
            "8",
            "--months",
            "2",
            "--rate",
            "4000",
            "--port",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        portfolio: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                portfolio = get_json(f"http://127.0.0.1:{port}/api/portfolio")
                current = portfolio.get("current")
                if isinstance(current, dict) and current.get("accounts") == 8:
                    break
            except OSError:
                pass
            assert demo.poll() is None, demo.stderr.read().decode() if demo.stderr else ""
            time.sleep(1)
        else:
            pytest.fail(f"the dashboard never showed the 8 simulated accounts: {portfolio}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert b"healthstream" in page.read()
    finally:
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err.decode()
    text = err.decode()
    assert f"dashboard  http://127.0.0.1:{port}/" in text
    assert "worker and view stopped" in text
    assert_stopped_quietly(text)
    assert " score " in out.decode()  # alerts were printed as they arrived
    with pytest.raises(OSError):  # the view is gone
        get_json(f"http://127.0.0.1:{port}/healthz")


def test_demo_honours_the_view_port_variable_prints_the_exports_and_reuses_its_names(
    stack: StackInfo, tmp_path: Path
) -> None:
    """No --port: HEALTHSTREAM_VIEW_PORT moves the dashboard; a run first removes what the run
    before left (the test above ran one), so the broker keeps one set of demo topics, and a second
    run while it streams is refused. Ctrl-C while it publishes (some 19,000 events at 100/s)
    stops it as quietly as when it watches."""
    port = free_port()
    # A shell's projection switched off reached the demo's worker: its dashboard stayed empty.
    env = {**os.environ, **stack.env(), "HEALTHSTREAM_VIEW_PORT": str(port), "HEALTHSTREAM_PROJECTION": "off"}
    options = ["--accounts", "30", "--months", "3", "--rate", "100"]
    argv = [sys.executable, "-m", "streamer.cli", "demo", *options]
    demo = subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                current = get_json(f"http://127.0.0.1:{port}/api/portfolio").get("current")
                if isinstance(current, dict) and current.get("accounts", 0) >= 10:
                    break  # the worker scored a third of the accounts: publishing is under way
            except OSError:  # no dashboard yet, or 503 until the worker wrote the projection
                pass
            assert demo.poll() is None, demo.stderr.read().decode() if demo.stderr else ""
            time.sleep(1)
        else:
            pytest.fail(f"no dashboard on port {port} (HEALTHSTREAM_VIEW_PORT)")
        # A second demo on the same stack (another folder and port) would delete this one's
        # topics and Redis keys under it: it is refused, and this one runs on.
        (tmp_path / "second").mkdir()
        second = subprocess.run(
            [*argv, "--port", str(free_port())],
            env=env,
            cwd=tmp_path / "second",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second.stderr
        assert f"another streamer demo (pids {demo.pid}, " in second.stderr  # and its worker's and view's
        assert ") is running on this stack" in second.stderr
        assert "Traceback" not in second.stderr
        assert get_json(f"http://127.0.0.1:{port}/api/portfolio")["current"]
    finally:
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err.decode()
    text = err.decode()
    assert f"dashboard  http://127.0.0.1:{port}/" in text
    assert "removed what the previous demo run left: " in text and " topics" in text
    assert "events published" not in text, "Ctrl-C came after the publishing"
    assert_stopped_quietly(text)  # the producer closes too
    assert (
        f"export HEALTHSTREAM_KAFKA_BOOTSTRAP={stack.bootstrap} HEALTHSTREAM_REDIS_URL={stack.redis_url} "
        "HEALTHSTREAM_TOPIC_PREFIX=demo. HEALTHSTREAM_APP_ID=healthstream-demo"
    ) in text
    topics = asyncio.run(_topics(stack.bootstrap))
    assert not [name for name in topics if name.startswith("demo") and not name.startswith("demo.")]
    families = ("subscriptions", "usage", "tickets", "surveys", "alerts", "health", "deadletter")
    assert {name for name in topics if name.startswith("demo.")} <= {f"demo.{name}" for name in families}


def test_a_killed_demos_worker_and_view_hold_the_stack_until_they_stop(
    stack: StackInfo, tmp_path: Path
) -> None:
    """SIGKILL stops the demo but not its worker and view (sessions of their own): they hold the
    demo's lock on, so a second demo is refused while they run on its topics, and may start once
    they are gone."""
    port = free_port()
    env = {**os.environ, **stack.env()}
    argv = [sys.executable, "-m", "streamer.cli", "demo", "--accounts", "8", "--months", "2", "--rate", "50"]
    demo = subprocess.Popen(
        [*argv, "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 90  # bounds a hang only
        while True:
            try:
                get_json(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert demo.poll() is None and time.monotonic() < deadline, "the demo's view never answered"
                time.sleep(0.5)
        demo.kill()
        demo.wait(timeout=30)
        second = subprocess.run(
            [*argv, "--port", str(free_port())],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second.stderr
        found = re.search(r"another streamer demo \(pids ([\d, ]+)\)", second.stderr)
        assert found, second.stderr
        pids = [int(pid) for pid in found.group(1).split(", ")]
        assert pids[0] == demo.pid and len(pids) == 3
        children = pids[1:]
        assert all(is_alive(pid) for pid in children)  # the worker and the view run on
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60  # bounds a hang only
        while any(is_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not any(is_alive(pid) for pid in children)
    with held_lock(Path(stack.stack_dir) / "demo.lock"):  # free again
        pass


def test_the_alerts_watcher_waits_for_a_topic_made_after_it_started(stack: StackInfo) -> None:
    """The demo's watcher starts right after the topics are made, and a loaded broker's metadata
    may not show them yet: with `topic_wait_s` it waits for the topic; without, it says at once
    that there is none (as `streamer alerts tail` does)."""
    from streamer.settings import Settings
    from streamer.stream.tail import NoAlertsTopic, tail
    from streamer.stream.topics import ensure_topics

    prefix = f"w{uuid.uuid4().hex[:10]}."
    settings = Settings(kafka_bootstrap=stack.bootstrap, topic_prefix=prefix, app_id=f"{prefix}app")

    async def scenario() -> int:
        with pytest.raises(NoAlertsTopic):
            await tail(settings, lambda alert: None, timeout_s=1)
        watcher = asyncio.create_task(tail(settings, lambda alert: None, timeout_s=2, topic_wait_s=60))
        await asyncio.sleep(1.5)
        assert not watcher.done(), watcher.exception() if watcher.done() else None
        await ensure_topics(settings)
        return await watcher

    assert asyncio.run(scenario()) == 0


async def _topics(bootstrap: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()
