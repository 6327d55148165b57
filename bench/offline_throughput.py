"""Offline scoring throughput: how fast one process gets through a file of ~1M events.

Stages, each over the same simulated file (gzip JSON lines, cached in bench/out/):

  a. read + JSON parse     orjson.loads per line (the baseline every ratio refers to)
  b. read + validate       streamer.contract.decode.decode_event per line
  c. offline scorer        OfflineRun.feed with no-op writers (decode + partition engines)
  d. `streamer offline`    the command end to end in a subprocess, writing all its outputs, once
                           per `--jobs` value (default 1 and 2: one process, then two children)

The issue's target is "1M events in 20 s" (>= 50,000 events/s) for (d). CPU seconds of (d)
include the children's.

    .venv/bin/python bench/offline_throughput.py                 # 530 accounts x 12 months
    .venv/bin/python bench/offline_throughput.py --accounts 100  # quick run (~0.2M events)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from common import add_json, write_json
from machine import git_revision, load

from streamer.contract.decode import Rejected, decode_event
from streamer.offline.runner import OfflineRun, open_events
from streamer.settings import Settings, load_score_config

BENCH_DIR = Path(__file__).resolve().parent
TARGET_EVENTS, TARGET_SECONDS = 1_000_000, 20.0


@dataclass
class Result:
    stage: str
    events: int
    seconds: float
    cpu: float  # CPU seconds (user + system) of the process doing the work
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def streamer_command() -> list[str]:
    """The `streamer` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("streamer")
    if script.exists():
        return [str(script)]
    found = shutil.which("streamer")
    if found:
        return [found]
    return [sys.executable, "-c", "from streamer.cli import main; main()"]


async def ensure_events(args: argparse.Namespace) -> Path:
    """The cached simulation file, made with `streamer simulate` when missing."""
    if args.events:
        return Path(args.events)
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"sim-{args.accounts}x{args.months}-seed{args.seed}.jsonl.gz"
    if path.exists():
        print(f"reusing {path}")
        return path
    print(f"simulating {args.accounts} accounts x {args.months} months (seed {args.seed}) -> {path}")
    partial = path.with_name(f"partial-{os.getpid()}-{path.name}")
    command = [
        *streamer_command(),
        "simulate",
        "--accounts",
        str(args.accounts),
        "--months",
        str(args.months),
        "--seed",
        str(args.seed),
        "--out",
        str(partial),
        "--truth",
        str(cache / path.name.replace(".jsonl.gz", ".truth.json")),
        "--quiet",
    ]
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"`{' '.join(command)}` failed ({process.returncode}):\n{output.decode()}")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    partial.rename(path)
    return path


# -- stages -----------------------------------------------------------------------------------------


def parse_stage(path: Path) -> Result:
    events = 0
    started, cpu = time.perf_counter(), time.process_time()
    with open_events(path) as source:
        for line in source:
            orjson.loads(line)
            events += 1
    return Result(
        "a. read + JSON parse (orjson)", events, time.perf_counter() - started, time.process_time() - cpu
    )


def validate_stage(path: Path) -> Result:
    events = rejected = 0
    started, cpu = time.perf_counter(), time.process_time()
    with open_events(path) as source:
        for line in source:
            events += 1
            try:
                decode_event(line)
            except Rejected:
                rejected += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Result("b. read + validate (decode_event)", events, seconds, cpu, f"{rejected:,} rejected")


def scorer_stage(path: Path, partitions: int) -> Result:
    settings = Settings()
    run = OfflineRun(load_score_config(settings.score_config), partitions, settings.topic_prefix)

    def discard(_record: object) -> None:
        pass

    started, cpu = time.perf_counter(), time.process_time()
    with open_events(path) as source:
        summary = run.feed(iter(source), on_snapshot=discard, on_alert=discard, on_dead_letter=discard)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    note = f"{sum(summary.alerts.values()):,} alerts, {summary.snapshots:,} snapshots"
    return Result("c. offline scorer (OfflineRun.feed)", summary.lines, seconds, cpu, note)


async def cli_stage(
    path: Path, partitions: int, events: int, keep: Path | None, jobs: int, scratch: Path
) -> Result:
    out = keep or Path(tempfile.mkdtemp(prefix="offline-", dir=scratch))
    command = [*streamer_command(), "offline", str(path), "--out", str(out), "--quiet"]
    command += ["--partitions", str(partitions), "--jobs", str(jobs)]
    started, cpu = time.perf_counter(), children_cpu()
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if keep is None:
            shutil.rmtree(out, ignore_errors=True)
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed ({process.returncode}):\n{text}")
    found = re.search(r"^([\d,]+) lines in ([\d.]+) s", text, re.MULTILINE)
    note = f"scoring loop {float(found.group(2)):.1f} s" if found else ""
    children = re.search(r"processes: CPU ([\d.,+ ]+) s", text)
    if children:  # the slowest child's CPU seconds bound the wall time on idle cores
        note += f"; children's CPU s: {children.group(1)}"
    lines = int(found.group(1).replace(",", "")) if found else events
    return Result(f"d. `streamer offline --jobs {jobs}`", lines, seconds, cpu, note)


# -- report -----------------------------------------------------------------------------------------


def print_table(results: list[Result], baseline: Result) -> None:
    header = ("stage", "events", "seconds", "events/s", "vs (a)", "cpu s", "events/cpu s", "")
    rows = [
        (
            r.stage,
            f"{r.events:,}",
            f"{r.seconds:.2f}",
            f"{r.rate:,.0f}",
            f"{r.rate / baseline.rate:.3f}" if baseline.rate else "-",
            f"{r.cpu:.2f}",
            f"{r.events / r.cpu:,.0f}" if r.cpu else "-",
            r.note,
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = {1, 2, 3, 4, 5, 6}

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs)

    print()
    print(line(header).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row).rstrip())


def best(runs: int, measure: Callable[[], Result]) -> Result:
    results = [measure() for _ in range(runs)]
    return min(results, key=lambda r: r.seconds)


async def main(args: argparse.Namespace) -> int:
    path = await ensure_events(args)
    partitions = args.partitions or Settings().partitions
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, load {load()}, "
        f"revision {git_revision()}\n"
        f"file {path} ({path.stat().st_size / 1e6:.1f} MB), {partitions} partitions, "
        f"best of {args.repeat}"
    )
    stages = set(args.stages)
    results = [best(args.repeat, lambda: parse_stage(path))]
    baseline = results[0]
    print(f"  {baseline.stage}: {baseline.seconds:.1f} s", flush=True)
    if "b" in stages:
        results.append(best(args.repeat, lambda: validate_stage(path)))
        print(f"  {results[-1].stage}: {results[-1].seconds:.1f} s", flush=True)
    if "c" in stages:
        results.append(best(args.repeat, lambda: scorer_stage(path, partitions)))
        print(f"  {results[-1].stage}: {results[-1].seconds:.1f} s", flush=True)
    cli: Result | None = None
    if "d" in stages:
        for jobs in args.jobs:
            keep = Path(args.keep_output) / f"jobs-{jobs}" if args.keep_output else None
            runs = [
                await cli_stage(path, partitions, baseline.events, keep, jobs, Path(args.cache_dir))
                for _ in range(args.repeat)
            ]
            fastest = min(runs, key=lambda r: r.seconds)
            results.append(fastest)
            print(f"  {fastest.stage}: {fastest.seconds:.1f} s", flush=True)
            cli = fastest if cli is None or fastest.rate > cli.rate else cli
    print_table(results, baseline)
    print(f"load average now {load()} (other work on the machine slows the wall-clock numbers)")
    stages = {
        r.stage: {"events": r.events, "seconds": r.seconds, "events_per_s": r.rate, "cpu_s": r.cpu}
        for r in results
    }
    write_json(args.json, {"file": str(path), "stages": stages})
    if cli is not None:
        needed = TARGET_EVENTS / TARGET_SECONDS
        projected = TARGET_EVENTS / cli.rate if cli.rate else float("inf")
        verdict = "MET" if projected < TARGET_SECONDS else "NOT MET"
        print(
            f"\ntarget: {TARGET_EVENTS:,} events in under {TARGET_SECONDS:.0f} s with {cli.stage[3:]} "
            f"(>= {needed:,.0f} events/s): {verdict} "
            f"({cli.rate:,.0f} events/s, {projected:.1f} s per 1M events)"
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Offline scoring throughput over a simulated file of about 1M events.",
    )
    parser.add_argument(
        "--accounts", type=int, default=530, help="accounts to simulate (default: %(default)s)"
    )
    parser.add_argument("--months", type=int, default=12, help="months to simulate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed (default: %(default)s)")
    parser.add_argument(
        "--events", metavar="FILE", help="use this events file instead of the cached simulation"
    )
    parser.add_argument(
        "--cache-dir",
        default=str(BENCH_DIR / "out"),
        help="where simulated files are kept and reused (default: bench/out)",
    )
    parser.add_argument(
        "--partitions", type=int, help="partitions to simulate (default HEALTHSTREAM_PARTITIONS, 4)"
    )
    parser.add_argument(
        "--stages",
        default="abcd",
        help="which stages to run, any of the letters abcd (default: all; a, the baseline, always runs)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each stage this often, keep the best (default: %(default)s)",
    )
    parser.add_argument(
        "--keep-output",
        metavar="DIR",
        help="write the outputs of (d) here, one folder per --jobs value, and keep them (default: deleted)",
    )
    parser.add_argument(
        "--jobs",
        default="1,2",
        type=lambda text: [int(part) for part in text.split(",")],
        help="comma-separated --jobs values for stage d (default: %(default)s)",
    )
    add_json(parser)
    args = parser.parse_args(argv)
    if not set(args.stages) <= set("abcd"):
        parser.error("--stages takes letters from 'abcd'")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
