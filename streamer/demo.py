"""`streamer demo`: the whole product on the local stack with a simulated portfolio, in one command.

Starts Kafka and Redis (`streamer local up`), a worker and the HTTP view, and streams a
simulated portfolio at a watchable pace while printing alerts as they arrive. Ctrl-C stops the
worker, the view and the stream; the local stack keeps running (`streamer local down` stops it).

Every run uses the same names (topic prefix `demo.`, app id `healthstream-demo`, state and logs
in `.local/demo/`) and first deletes what the previous run left there: its topics, its Redis
keys and its worker state. So the last run stays inspectable and nothing piles up. One demo
runs per stack at a time (a lock in the stack's folder): a second would delete the first's
topics under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from streamer.cli_options import FloatRange
from streamer.jsonbytes import kept_json
from streamer.settings import Settings
from streamer.stream.broker import BrokerUnavailable
from streamer.stream.replay import publish
from streamer.stream.tail import NoAlertsTopic, format_alert, tail
from streamer.stream.topics import TopicsUnusable, ensure_topics

if TYPE_CHECKING:
    from streamer.local.proc import HeldLock
    from streamer.local.settings import StackSettings

PREFIX = "demo."
APP_ID = "healthstream-demo"
HOME = Path(".local/demo")
LEGACY_TOPIC = re.compile(r"demo\d{14}\.")  # earlier demos made a new set per run: demo20240131120000.


async def _delete_topics(bootstrap: str, prefixes: tuple[str, ...], timeout_s: float = 60.0) -> list[str]:
    """Delete the topics whose names start with one of `prefixes`; return once they are gone."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        doomed = [
            name
            for name in await admin.list_topics()
            if name.startswith(prefixes) or LEGACY_TOPIC.match(name)
        ]
        if doomed:
            await admin.delete_topics(doomed)
        deadline = time.monotonic() + timeout_s
        while set(doomed) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise click.ClickException(f"topics {doomed} were not deleted within {timeout_s:.0f} s")
            await asyncio.sleep(0.5)
        return doomed
    finally:
        await admin.close()


def _clean_previous_run(settings: Settings, redis_url: str, state: Path) -> str:
    """Remove the previous demo's topics, Redis keys and worker state; say what went."""
    import shutil

    import redis

    topics = asyncio.run(_delete_topics(settings.kafka_bootstrap, (PREFIX, f"{APP_ID}-")))
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{APP_ID}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()
    had_state = state.exists()
    shutil.rmtree(state, ignore_errors=True)
    removed = [f"{len(topics)} topics"] if topics else []
    removed += [f"{len(keys)} Redis keys"] if keys else []
    removed += [f"its worker state ({state})"] if had_state else []
    if not removed:
        return "nothing left by a previous demo run"
    return "removed what the previous demo run left: " + ", ".join(removed)


def _lines(accounts: int, months: int, seed: int) -> list[bytes]:
    from streamer.sim import SimulationConfig, generate_events

    config = SimulationConfig(accounts=accounts, months=months, seed=seed)
    return [kept_json(event) for event in generate_events(config)]


async def _run(settings: Settings, lines: list[bytes], rate: float) -> None:
    """Publish `lines` and print the alerts until Ctrl-C or SIGTERM, which cancel this task: the
    producer and the alerts consumer then close in order (a KeyboardInterrupt raised wherever
    the signal lands would leave them open, with asyncio's complaints on the terminal)."""
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, main.cancel)
    alerts = 0

    def show(alert: dict[str, object]) -> None:
        nonlocal alerts
        alerts += 1
        click.echo(format_alert(alert))

    watcher: asyncio.Task[int] | None = None
    try:
        await ensure_topics(settings)
        # the topics were just made: the broker's metadata may not show them for a moment
        watcher = asyncio.create_task(tail(settings, show, from_beginning=True, topic_wait_s=30))
        summary = await publish(lines, settings, rate=rate)
        click.echo(
            f"-- all {summary.total:,} events published; still watching alerts (Ctrl-C to stop)", err=True
        )
        await watcher
    except asyncio.CancelledError:
        click.echo("\n-- stopping", err=True)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        click.echo(f"-- {alerts:,} alerts seen", err=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command("demo")
@click.option(
    "--accounts", default=60, show_default=True, type=click.IntRange(1, 5000), help="Simulated accounts."
)
@click.option("--months", default=6, show_default=True, type=click.IntRange(1, 36), help="Simulated months.")
@click.option(
    "--seed",
    default=1,
    show_default=True,
    type=click.IntRange(0, 2**64 - 1),  # as simulate: refused before the stack starts and the topics go
    help="Simulation seed.",
)
@click.option(
    "--rate",
    default=400.0,
    show_default=True,
    type=FloatRange(min=1),
    help="Events published per second.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port of the dashboard (default HEALTHSTREAM_VIEW_PORT, 8000).",
)
def demo(accounts: int, months: int, seed: int, rate: float, port: int | None) -> None:
    """Run the local stack, a worker, the dashboard and a simulated event stream; print alerts.

    The stack's ports follow HEALTHSTREAM_KAFKA_PORT, HEALTHSTREAM_KAFKA_CONTROLLER_PORT,
    HEALTHSTREAM_REDIS_PORT and the dashboard's HEALTHSTREAM_VIEW_PORT (or --port). Each run first
    deletes what the previous one left (topics `demo.*`, Redis keys of `healthstream-demo`,
    `.local/demo/worker`), so one demo runs per stack at a time: a second is refused.
    """
    from streamer.local.errors import StackError
    from streamer.local.proc import Held, held_lock
    from streamer.local.settings import StackSettings

    try:
        stack_settings = StackSettings.from_env()
        with held_lock(stack_settings.stack_dir / "demo.lock") as lock:
            _demo(stack_settings, accounts, months, seed, rate, port, lock)
    except StackError as error:  # a bad HEALTHSTREAM_* variable of the stack, a service that did not start
        raise click.ClickException(str(error)) from None
    except Held as holder:
        raise click.ClickException(
            f"another streamer demo ({holder}) is running on this stack: a second one would delete "
            "its topics and Redis keys under it; stop that one first (Ctrl-C in its terminal)"
        ) from None


def _demo(
    stack_settings: StackSettings,
    accounts: int,
    months: int,
    seed: int,
    rate: float,
    port: int | None,
    lock: HeldLock,
) -> None:
    """The demo, while this process is the only one running it on the stack. Its worker and view
    inherit the lock: killed (SIGKILL), the demo leaves them running, and they hold it on until
    they stop, so that a second demo cannot delete the topics under them."""
    from streamer.local.stack import ensure_up
    from streamer.view.settings import ViewSettings

    view_settings = ViewSettings()
    port = view_settings.port if port is None else port
    if port == 0:  # a port the system picks: the banner could not name it
        raise click.UsageError(
            "HEALTHSTREAM_VIEW_PORT=0: the demo's dashboard needs a port of its own (or --port)"
        )
    # The view runs in a child whose errors go to its log: a port in use left the demo printing a
    # dashboard address that served another deployment's view, or nothing.
    problem = _dashboard_unavailable(view_settings.host, port)
    if problem is not None:
        raise click.ClickException(f"the dashboard cannot listen on port {port}: {problem}")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # fresh topics: harmless leader retries
    stack = ensure_up(stack_settings)
    state = HOME / "worker"
    env = {
        **os.environ,
        **stack.env(),
        "HEALTHSTREAM_TOPIC_PREFIX": PREFIX,
        "HEALTHSTREAM_APP_ID": APP_ID,
        "HEALTHSTREAM_DATA_DIR": str(state),
        "HEALTHSTREAM_VIEW_PORT": str(port),
        "HEALTHSTREAM_PROJECTION": "redis",  # the dashboard reads it (`off` in the shell emptied it)
    }
    settings = Settings(kafka_bootstrap=stack.bootstrap, topic_prefix=PREFIX, app_id=APP_ID)
    click.echo(_clean_previous_run(settings, stack.redis_url, state), err=True)
    click.echo(f"simulating {accounts} accounts over {months} months (seed {seed}) ...", err=True)
    lines = _lines(accounts, months, seed)
    HOME.mkdir(parents=True, exist_ok=True)
    exports = " ".join(
        f"{name}={env[name]}"
        for name in (
            "HEALTHSTREAM_KAFKA_BOOTSTRAP",
            "HEALTHSTREAM_REDIS_URL",
            "HEALTHSTREAM_TOPIC_PREFIX",
            "HEALTHSTREAM_APP_ID",
        )
    )
    # A token in the shell's HEALTHSTREAM_VIEW_TOKEN reaches the view too: the bare address answered 401.
    token_hint = "?access_token=<HEALTHSTREAM_VIEW_TOKEN>" if view_settings.secret else ""
    click.echo(
        f"\nhealthstream demo\n"
        f"  dashboard  http://127.0.0.1:{port}/{token_hint}  (API under /api, described at /openapi.json)\n"
        f"  Kafka {settings.kafka_bootstrap}, Redis {stack.redis_url}\n"
        f"  topics {PREFIX}{{subscriptions,usage,tickets,surveys}} -> {PREFIX}{{alerts,health,deadletter}}\n"
        f"  logs {HOME}/worker.log, {HOME}/view.log; worker state {state}\n"
        f"  in another terminal:\n"
        f"    export {exports}\n"
        f"    streamer alerts tail --from-beginning\n"
        f"  publishing {len(lines):,} events at {rate:,.0f}/s; alerts follow. Ctrl-C stops.\n",
        err=True,
    )
    processes = [
        _start(command, env, HOME / f"{command}.log", truncate=True, keep_fd=lock.fd)
        for command in ("worker", "view")
    ]
    lock.name(os.getpid(), *(process.pid for process in processes))
    # Stop cleanly when terminated, like Ctrl-C; and on Ctrl-C even when started with SIGINT
    # ignored (a background job of a non-interactive shell inherits that, and the demo then
    # ran on after SIGINT while its worker kept the consumer group). `_run` handles both in its
    # event loop; these cover the instants before the loop starts.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        asyncio.run(_run(settings, lines, rate))
    except KeyboardInterrupt:
        click.echo("\n-- stopping", err=True)
    except (BrokerUnavailable, TopicsUnusable, NoAlertsTopic) as error:
        click.echo(f"streamer demo: {error}", err=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # the worker and view get their time to stop
            signal.signal(signum, signal.SIG_IGN)
        _stop(processes)
        click.echo(
            "-- worker and view stopped; the local stack keeps running (`streamer local down` stops it)",
            err=True,
        )


def _dashboard_unavailable(host: str, port: int) -> str | None:
    """Why the demo's view could not listen on `host`:`port` (as `streamer view` says it), or None."""
    import socket

    from streamer.view.cli import bind_problem

    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the view's server does
            probe.bind(address)
    except (OSError, ValueError) as error:
        return bind_problem(error)
    return None


def _start(
    command: str, env: dict[str, str], log_path: Path, *, truncate: bool = False, keep_fd: int | None = None
) -> subprocess.Popen[bytes]:
    with log_path.open("wb" if truncate else "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", command],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
            pass_fds=() if keep_fd is None else (keep_fd,),
        )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in processes:
        if process.poll() is None:
            process.kill()
