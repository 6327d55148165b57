"""`streamer demo`: the whole product on the local stack with a simulated portfolio, in one command.

Starts Kafka and Redis (`streamer local up`), a worker and the HTTP view, and streams a
simulated portfolio at a watchable pace while printing alerts as they arrive. Ctrl-C stops the
worker, the view and the stream; the local stack keeps running (`streamer local down` stops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import orjson

from streamer.settings import Settings
from streamer.stream.replay import publish
from streamer.stream.tail import format_alert, tail
from streamer.stream.topics import ensure_topics


def _lines(accounts: int, months: int, seed: int) -> list[bytes]:
    from streamer.sim import SimulationConfig, generate_events

    config = SimulationConfig(accounts=accounts, months=months, seed=seed)
    return [orjson.dumps(event) for event in generate_events(config)]


async def _run(settings: Settings, lines: list[bytes], rate: float) -> None:
    await ensure_topics(settings)
    alerts = 0

    def show(alert: dict[str, object]) -> None:
        nonlocal alerts
        alerts += 1
        click.echo(format_alert(alert))

    watcher = asyncio.create_task(tail(settings, show, from_beginning=True))
    try:
        summary = await publish(lines, settings, rate=rate)
        click.echo(
            f"-- all {summary.total:,} events published; still watching alerts (Ctrl-C to stop)", err=True
        )
        await watcher
    finally:
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
@click.option("--seed", default=1, show_default=True, type=int, help="Simulation seed.")
@click.option(
    "--rate",
    default=400.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Events published per second.",
)
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port of the dashboard."
)
def demo(accounts: int, months: int, seed: int, rate: float, port: int) -> None:
    """Run the local stack, a worker, the dashboard and a simulated event stream; print alerts."""
    from streamer.local.settings import StackSettings
    from streamer.local.stack import ensure_up

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # fresh topics: harmless leader retries
    stack = ensure_up(StackSettings.from_env())
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    logs = Path(".local/demo") / stamp
    env = {
        **os.environ,
        **stack.env(),
        "HEALTHSTREAM_TOPIC_PREFIX": f"demo{stamp}.",
        "HEALTHSTREAM_APP_ID": f"healthstream-demo-{stamp}",
        "HEALTHSTREAM_DATA_DIR": str(logs),
        "HEALTHSTREAM_VIEW_PORT": str(port),
    }
    settings = Settings(
        kafka_bootstrap=env["HEALTHSTREAM_KAFKA_BOOTSTRAP"],
        topic_prefix=env["HEALTHSTREAM_TOPIC_PREFIX"],
        app_id=env["HEALTHSTREAM_APP_ID"],
    )
    click.echo(f"simulating {accounts} accounts over {months} months (seed {seed}) ...", err=True)
    lines = _lines(accounts, months, seed)
    logs.mkdir(parents=True, exist_ok=True)
    click.echo(
        f"\nhealthstream demo\n"
        f"  dashboard  http://127.0.0.1:{port}/  (API under /api, described at /openapi.json)\n"
        f"  Kafka {settings.kafka_bootstrap}, Redis {stack.redis_url}\n"
        f"  topics {settings.topic_prefix}{{subscriptions,usage,tickets,surveys}} -> "
        f"{settings.topic_prefix}{{alerts,health,deadletter}}\n"
        f"  logs {logs}/worker.log, {logs}/view.log\n"
        f"  elsewhere: HEALTHSTREAM_TOPIC_PREFIX={settings.topic_prefix} "
        f"streamer alerts tail --from-beginning\n"
        f"  publishing {len(lines):,} events at {rate:,.0f}/s; alerts follow. Ctrl-C stops.\n",
        err=True,
    )
    processes = [_start(command, env, logs / f"{command}.log") for command in ("worker", "view")]
    signal.signal(signal.SIGTERM, _interrupt)  # stop cleanly when terminated, like Ctrl-C
    try:
        asyncio.run(_run(settings, lines, rate))
    except KeyboardInterrupt:
        click.echo("\n-- stopping", err=True)
    finally:
        _stop(processes)
        click.echo(
            "-- worker and view stopped; the local stack keeps running (`streamer local down` stops it)",
            err=True,
        )


def _start(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", command],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
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
