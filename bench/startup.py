"""Start-up cost of the command line and of `streamer worker`, in CPU seconds (median of rounds).

  help      `streamer --help`, `streamer worker --help` and `streamer offline --help`: the CPU
            seconds of each whole process (every command pays the command line's imports)
  worker    `streamer worker` on fresh, empty topics of the local broker (a unique topic prefix
            and app id per round), its CPU seconds (/proc) and wall seconds from the spawn to each
            step of its log: the first line (the imports and the configuration done), faust
            starting (the topics ensured, the app built), the partitions assigned, and faust's
            "Ready" (its stores open; the worker consumes from then on); then SIGTERM

With --baseline DIR (a checkout of other code, e.g. `git worktree add bench/out/base main`) the
same is measured for it, the rounds alternating between the two, and the ratio is printed.
Medians because the machine is shared: read the CPU columns, not the wall ones.

    .venv/bin/python bench/startup.py --rounds 5 --baseline bench/out/base
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import add_baseline, checkouts, cpu_seconds, parser, print_checkouts

from streamer.settings import Settings

# (label, text that marks the step in the worker's log). After "Ready" the worker consumes (on
# empty topics its partition engines are built by the projection's one-second timer, not timed).
STEPS = (
    ("first log line (imports, configuration)", '"msg":"core: '),
    ("faust starting (topics ensured)", "JsonLogWorker]: Starting"),
    ("partitions assigned", "Executing _on_partitions_assigned"),
    ('faust "Ready"', "JsonLogWorker]: Ready"),
)
HELP_COMMANDS = (
    ("streamer --help", []),
    ("streamer worker --help", ["worker"]),
    ("streamer offline --help", ["offline"]),
)


def environment(source: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")])),
    }


def command(*args: str) -> list[str]:
    """`streamer ARGS` run from the checkout's folder (`python -c` puts the working directory
    first on the path, ahead of the installed package)."""
    return [sys.executable, "-c", "import sys; from streamer.cli import main; sys.exit(main())", *args]


def help_cpu(source: Path, args: list[str]) -> float:
    """CPU seconds of one `streamer ARGS --help` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        command(*args, "--help"), cwd=source, env=environment(source), check=True, capture_output=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


async def worker_steps(source: Path, settings: Settings, timeout: float) -> dict[str, tuple[float, float]]:
    """(CPU s, wall s) of a starting worker at each of `STEPS`."""
    run = f"bench-startup-{uuid.uuid4().hex[:8]}"
    data_dir = Path(tempfile.mkdtemp(prefix=f"{run}-"))
    env = {
        **environment(source),
        "HEALTHSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HEALTHSTREAM_TOPIC_PREFIX": f"{run}-",
        "HEALTHSTREAM_APP_ID": run,
        "HEALTHSTREAM_DATA_DIR": str(data_dir),
    }
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command("worker"),
        cwd=source,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen: dict[str, tuple[float, float]] = {}
    lines: list[str] = []
    try:
        while len(seen) < len(STEPS):
            raw = await asyncio.wait_for(process.stdout.readline(), timeout)
            if not raw:
                raise RuntimeError("the worker exited:\n" + "".join(lines[-20:]))
            line = raw.decode(errors="replace")
            lines.append(line)
            cpu = cpu_seconds(process.pid) or 0.0
            for label, mark in STEPS:
                if label not in seen and mark in line:
                    seen[label] = (cpu, time.perf_counter() - started)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.communicate(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
        await delete_topics(settings.kafka_bootstrap, run)
    return seen


async def delete_topics(bootstrap: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def main() -> int:
    cli = parser(__doc__)
    cli.add_argument("--rounds", type=int, default=5, help="rounds per checkout (default: %(default)s)")
    cli.add_argument("--no-worker", dest="worker", action="store_false", help="the help rows only")
    cli.add_argument(
        "--timeout", type=float, default=120, help="seconds per worker step (default: %(default)s)"
    )
    add_baseline(cli)
    args = cli.parse_args()
    sources = checkouts(args.baseline)
    settings = Settings()
    print_checkouts(args.baseline)
    help_cpu_s: dict[str, dict[str, list[float]]] = {name: {} for name in sources}
    steps: dict[str, dict[str, list[tuple[float, float]]]] = {name: {} for name in sources}
    for _ in range(args.rounds):
        for name, source in sources.items():
            for label, help_args in HELP_COMMANDS:
                help_cpu_s[name].setdefault(label, []).append(help_cpu(source, help_args))
            if args.worker:
                for label, value in asyncio.run(worker_steps(source, settings, args.timeout)).items():
                    steps[name].setdefault(label, []).append(value)
    names = list(sources)
    header = (
        "| "
        + " | ".join([f"CPU s (median of {args.rounds})", *names])
        + (" | ratio |" if len(names) == 2 else " |")
    )
    print(header)
    print("|---" * (len(names) + 1 + (len(names) == 2)) + "|")

    def row(label: str, values: list[float], unit: str = "") -> None:
        cells = [f"{value:.3f}{unit}" for value in values]
        ratio = [f"{values[1] / values[0]:.2f}" if values[0] else "-"] if len(values) == 2 else []
        print("| " + " | ".join([label, *cells, *ratio]) + " |")

    for label, _ in HELP_COMMANDS:
        row(label, [statistics.median(help_cpu_s[name][label]) for name in names])
    if args.worker:
        for label, _ in STEPS:
            row(f"worker: {label}", [statistics.median(v[0] for v in steps[name][label]) for name in names])
        print()
        print("| wall s (median) | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for label, _ in STEPS:
            cells = [f"{statistics.median(v[1] for v in steps[name][label]):.2f}" for name in names]
            print("| " + " | ".join([f"worker: {label}", *cells]) + " |")
    print(f"\nload now {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
