"""Latency of the view's read routes over a projected portfolio, against Redis's own round trip.

A simulated portfolio (`streamer simulate`) is scored offline (`streamer offline --sort`), its
last snapshots and alerts are written to a private redis-server by the workers' own projection
writer, and `streamer view`'s app answers each route `--requests` times over HTTP on loopback.
The yardstick, measured in the same run: a Redis PING from the same process. Medians because the
machine is shared.

    .venv/bin/python bench/view_latency.py --accounts 300 --months 6 --requests 50
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientSession, web
from common import add_portfolio, parser, print_checkouts
from redis.asyncio import Redis

from streamer.projection.redis_writer import RedisProjection, connect
from streamer.settings import Settings
from streamer.view.app import create_app
from streamer.view.settings import ViewSettings

STREAMER = str(Path(sys.executable).with_name("streamer"))
PREFIX = "bench-view"
META = {"currency": "USD", "gross_margin": "1.0", "cs_cost_per_month": ""}
ROUTES = (
    "/api/accounts?limit=50",
    "/api/accounts?band=red,yellow&renewal_within_days=60&sort=-mrr&limit=50",
    "/api/accounts?q=acct-00&sort=score&limit=50",
    "/api/accounts?at_risk=true&sort=score&limit=12",  # the dashboard's at-risk list
    "/api/accounts?stage=churned&sort=score&limit=8",  # and its churned list
    "/api/alerts?limit=50",
    "/api/alerts?severity=critical&limit=50",
    "/api/filters",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def portfolio(folder: Path, accounts: int, months: int, seed: int) -> tuple[list[Any], list[Any]]:
    """The last snapshot of each account and every alert of a simulated portfolio, scored offline."""
    events, out = folder / "events.jsonl.gz", folder / "offline"
    simulate = ["--accounts", str(accounts), "--months", str(months), "--seed", str(seed)]
    subprocess.run([STREAMER, "simulate", *simulate, "--out", str(events)], check=True, capture_output=True)
    offline = [STREAMER, "offline", str(events), "--sort", "--quiet", "--out", str(out)]
    subprocess.run(offline, check=True, capture_output=True)
    read = lambda name: [orjson.loads(line) for line in (out / name).read_bytes().splitlines()]  # noqa: E731
    return read("accounts.jsonl"), read("alerts.jsonl")


async def measure(url: str, snapshots: list[Any], alerts: list[Any], requests: int) -> dict[str, float]:
    writer = RedisProjection(connect(url), PREFIX, META, min_interval_s=0.0)
    for snapshot in snapshots:
        writer.snapshot(snapshot)
    for alert in alerts:
        writer.alert(alert)
    assert await writer.drain(timeout_s=120), writer.last_error
    await writer.close()

    app = create_app(Settings(redis_url=url, app_id=PREFIX), ViewSettings(kafka_check=False))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    redis = Redis.from_url(url)
    figures: dict[str, float] = {}
    try:
        pings = []
        for _ in range(requests):
            started = time.perf_counter()
            await redis.ping()
            pings.append(time.perf_counter() - started)
        figures["redis PING (yardstick)"] = statistics.median(pings)
        async with ClientSession(f"http://127.0.0.1:{port}") as client:
            for route in ROUTES:
                timings = []
                for _ in range(requests):
                    started = time.perf_counter()
                    async with client.get(route) as response:
                        await response.read()
                        assert response.status == 200, (route, response.status)
                    timings.append(time.perf_counter() - started)
                figures[route] = statistics.median(timings)
    finally:
        await redis.aclose()
        await runner.cleanup()
    return figures


def main() -> None:
    args = parser(__doc__)
    add_portfolio(args, accounts=300, months=6, seed=3)
    args.add_argument("--requests", type=int, default=50, help="requests per route (50)")
    options = args.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("view_latency: redis-server is not installed (streamer local up installs it)")
    print_checkouts(None)
    with tempfile.TemporaryDirectory(prefix="bench-view-") as scratch:
        folder = Path(scratch)
        snapshots, alerts = portfolio(folder, options.accounts, options.months, options.seed)
        port = free_port()
        redis = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            cwd=folder,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 30
            while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode:
                if time.monotonic() > deadline:
                    sys.exit("view_latency: redis-server did not answer within 30 s")
                time.sleep(0.1)
            figures = asyncio.run(measure(url, snapshots, alerts, options.requests))
        finally:
            redis.terminate()
            redis.wait(timeout=30)
    print(f"{len(snapshots)} accounts, {len(alerts)} alerts; median of {options.requests} requests each")
    print()
    ping = figures["redis PING (yardstick)"]
    width = max(len(route) for route in figures)
    print(f"| {'route':{width}} | median ms | x PING |")
    print(f"|{'-' * (width + 2)}|---:|---:|")
    for route, seconds in figures.items():
        print(f"| {route:{width}} | {seconds * 1000:9.2f} | {seconds / ping:6.1f} |")


if __name__ == "__main__":
    main()
