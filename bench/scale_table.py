"""Issue 11's targets measured in one run: the table of the README's performance section.

Runs the benchmarks below one after the other, each in a process of its own with `--json`, and
prints one markdown table: each target, the figure measured (the median of `--rounds` runs, with
their range), what it is compared with in the same run, and whether it is met. Nothing else
should run on the machine meanwhile: the load average at the start and the end is printed.

  stream   stream_throughput.py --latency-seconds 30 --no-two
           (the issue's stream: 100 accounts x 12 months on 4 partitions, the bench's defaults;
           the Quix Streams and faust peers in the first round only)
  two4     stream_throughput.py --peers '' --latency-seconds 0     (two processes, the issue's stream)
  two      stream_throughput.py --accounts 100 --partitions 16 --peers '' --latency-seconds 0
  offline  offline_throughput.py --stages acd --jobs 1,2          (about 1M simulated events)
  wide     wide_portfolio.py --accounts 2000 --months 3            (usage-light accounts)
  wide-coarse  the same with --score-config bench/coarse_idle.toml    (weekly idle re-scoring)
  state    state_size.py --accounts 500 --months 2                 (usage-heavy accounts)
  recovery recovery.py --clone 2000 --accounts 100000 --history 6 --settle 60

Needs the local stack (`streamer local up`, then export the HEALTHSTREAM_* lines it prints).

    .venv/bin/python bench/scale_table.py                    # about 40 minutes on 2 idle cores
    .venv/bin/python bench/scale_table.py --rounds 1 --only stream,offline
    .venv/bin/python bench/scale_table.py --baseline DIR     # wide and recovery also measure DIR

Each benchmark's own report goes to `bench/out/scale-<time>/<name>-<round>.log` with its JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from common import BENCH_DIR, revision
from machine import git_revision, load


@dataclass(frozen=True)
class Bench:
    """One benchmark of the run: its script and arguments (`first` replaces them in round 1)."""

    script: str
    args: tuple[str, ...]
    first: tuple[str, ...] | None = None
    baseline: bool = False  # takes `--baseline DIR`


BENCHES: dict[str, Bench] = {
    "stream": Bench(
        "stream_throughput.py",
        ("--latency-seconds", "30", "--no-two", "--peers", ""),
        first=("--latency-seconds", "30", "--no-two"),
    ),
    "two4": Bench("stream_throughput.py", ("--peers", "", "--latency-seconds", "0")),
    "two": Bench(
        "stream_throughput.py",
        ("--accounts", "100", "--partitions", "16", "--peers", "", "--latency-seconds", "0"),
    ),
    "offline": Bench("offline_throughput.py", ("--stages", "acd", "--jobs", "1,2")),
    "wide": Bench("wide_portfolio.py", ("--accounts", "2000", "--months", "3"), baseline=True),
    "wide-coarse": Bench(
        "wide_portfolio.py",
        ("--accounts", "2000", "--months", "3", "--score-config", str(BENCH_DIR / "coarse_idle.toml")),
    ),
    "state": Bench("state_size.py", ("--accounts", "500", "--months", "2")),
    "recovery": Bench(
        "recovery.py",
        ("--clone", "2000", "--accounts", "100000", "--history", "6", "--settle", "60"),
        baseline=True,
    ),
}


def run_benches(args: argparse.Namespace, out: Path) -> dict[str, list[dict[str, Any]]]:
    """Each chosen benchmark `--rounds` times, one at a time: name -> the JSON of each round."""
    results: dict[str, list[dict[str, Any]]] = {}
    for name in args.only:
        bench = BENCHES[name]
        for number in range(1, args.rounds + 1):
            extra = bench.first if number == 1 and bench.first is not None else bench.args
            figures = out / f"{name}-{number}.json"
            command = [sys.executable, str(BENCH_DIR / bench.script), *extra, "--json", str(figures)]
            if bench.baseline and args.baseline is not None:
                command += ["--baseline", str(args.baseline)]
            log = out / f"{name}-{number}.log"
            print(f"  {name} {number}/{args.rounds}: {' '.join(command[1:])}", flush=True)
            started = time.perf_counter()
            with log.open("wb") as sink:
                done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=False)
            seconds = time.perf_counter() - started
            if done.returncode != 0 or not figures.exists():
                print(f"    failed ({done.returncode}) after {seconds:.0f} s; see {log}", flush=True)
                continue
            print(f"    {seconds:.0f} s, load {load()}", flush=True)
            results.setdefault(name, []).append(json.loads(figures.read_text()))
    return results


# -- the table ----------------------------------------------------------------------------------


def values(runs: Sequence[dict[str, Any]], pick: Callable[[dict[str, Any]], float | None]) -> list[float]:
    found = []
    for run in runs:
        try:
            value = pick(run)
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        if value is not None:
            found.append(float(value))
    return found


def shown(found: Sequence[float], form: str = "{:,.0f}") -> str:
    """The median, and the range when there were several runs."""
    if not found:
        return "not measured"
    middle = form.format(statistics.median(found))
    low, high = form.format(min(found)), form.format(max(found))
    if len(found) == 1:
        return middle
    if low == high:
        return f"{middle} ({len(found)} runs)"
    return f"{middle} ({low}-{high}, {len(found)} runs)"


def verdict(found: Sequence[float], met: Callable[[float], bool]) -> str:
    if not found:
        return "-"
    return "yes" if met(statistics.median(found)) else "**no**"


def peer(run: dict[str, Any], start: str) -> float | None:
    """A peer's events per CPU second in a stream run (its row's label starts with `start`)."""
    found = [figures for key, figures in run["rows"].items() if key.startswith(start)]
    return found[0]["events_per_cpu_s"] if found else None


def bytes_row(
    target: str, light: Sequence[float], heavy: Sequence[float], limit: int
) -> tuple[str, str, str, str]:
    """A bytes-per-account target: usage-light (wide) and usage-heavy (state) accounts, both under it."""
    return (
        target,
        f"usage-light {shown(light, '{:,.0f} B')}; usage-heavy {shown(heavy, '{:,.0f} B')}",
        "-",
        verdict([max(a, b) for a, b in zip(light, heavy, strict=False)], lambda v: v <= limit),
    )


def cores_of(run: dict[str, Any], key: str) -> float:
    """Cores the workers of a row used while catching up (events/s over events per CPU s when the
    run predates the bench's core accounting)."""
    measured = run.get("cores", {}).get(key, {}).get("workers")
    if measured is not None:
        return float(measured)
    row = run["rows"][key]
    return float(row["events_per_s"] / row["events_per_cpu_s"])


def two_row(target: str, two: Sequence[dict[str, Any]]) -> tuple[str, str, str, str]:
    """Two worker processes against one, in the same runs: the speed-up, what the partitions and
    the group's split allow, and the cores each party used."""
    scale = values(two, lambda run: run["rows"]["two"]["events_per_s"] / run["rows"]["one"]["events_per_s"])
    bound = values(two, lambda run: run["two_bound"])
    efficiency = values(
        two, lambda run: run["rows"]["two"]["events_per_cpu_s"] / run["rows"]["one"]["events_per_cpu_s"]
    )
    used = {key: values(two, partial(cores_of, key=key)) for key in ("one", "two")}
    broker = values(two, lambda run: run["cores"]["two"]["broker"])
    busier = values(two, lambda run: run["two_busier_share"])
    return (
        target,
        shown(scale, "{:.2f}x"),
        f"one process in the same run; the partitions allow at most {shown(bound, '{:.2f}x')}"
        + (
            ", the split the group made (the busier worker had "
            f"{shown([b * 100 for b in busier], '{:.0f}%')} of the events) at most "
            f"{shown([1 / b for b in busier], '{:.2f}x')}"
            if busier
            else ""
        )
        + "; "
        f"the two workers used {shown(used['two'], '{:.2f}')} cores (one: {shown(used['one'], '{:.2f}')})"
        + (f", the broker {shown(broker, '{:.2f}')}" if broker else "")
        + f", and ran at {shown(efficiency, '{:.2f}x')} one's events per CPU second",
        verdict(scale, lambda v: v >= 1.6),
    )


def rows(results: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, str, str]]:
    """(target, measured, compared with in the same run, met?) for every target of issue 11."""
    stream, two = results.get("stream", []), results.get("two", [])
    offline, wide = results.get("offline", []), results.get("wide", [])
    state, recovery = results.get("state", []), results.get("recovery", [])
    table = []

    def row(key: str, field: str) -> Callable[[dict[str, Any]], float]:
        return lambda run: run["rows"][key][field]

    cpu = values(stream, row("one", "events_per_cpu_s"))
    steady = values(stream, row("one-steady", "events_per_cpu_s"))
    relay = values(stream, row("raw", "events_per_cpu_s"))
    peers = {
        label: values(stream, partial(peer, start=start))
        for label, start in (
            ("Quix Streams", "p. Quix Streams"),
            ("faust batches", "p. faust take_events"),
            ("faust per event", "p. faust per event"),
        )
    }
    others = "; ".join(f"{label} {shown(found)}" for label, found in peers.items() if found)
    table.append(
        (
            "worker ≥ 15,000 events per CPU second (start to caught up; 100 accounts x 12 months)",
            f"{shown(cpu)}; {shown(steady)} from the first commit on",
            f"plain aiokafka relay {shown(relay)}" + (f"; {others}" if others else ""),
            verdict(cpu, lambda v: v >= 15_000),
        )
    )
    rate = values(stream, row("one", "events_per_s"))
    relay_rate = values(stream, row("raw", "events_per_s"))
    table.append(
        (
            "worker ≥ 10,000 events/s, one process",
            shown(rate),
            f"plain aiokafka relay {shown(relay_rate)}",
            verdict(rate, lambda v: v >= 10_000),
        )
    )
    table.append(
        two_row("two processes ≥ 1.6x one (the issue's stream: 4 partitions)", results.get("two4", []))
    )
    table.append(two_row("two processes ≥ 1.6x one (100 accounts, 16 partitions)", two))
    p99 = values(stream, lambda run: run["latency"]["worker_p99_ms"])
    relay_p99 = values(stream, lambda run: run["latency"]["relay_p99_ms"])
    table.append(
        (
            "publish → alert p99 ≤ 300 ms at 2,000 events/s",
            shown(p99, "{:,.0f} ms"),
            f"plain relay p99 {shown(relay_p99, '{:,.0f} ms')}",
            verdict(p99, lambda v: v <= 300),
        )
    )
    jobs2 = values(offline, lambda run: run["stages"]["d. `streamer offline --jobs 2`"]["events_per_s"])
    jobs1 = values(offline, lambda run: run["stages"]["d. `streamer offline --jobs 1`"]["events_per_s"])
    parse = values(offline, lambda run: run["stages"]["a. read + JSON parse (orjson)"]["events_per_s"])
    table.append(
        (
            "`streamer offline` ≥ 50,000 events/s (1M events in 20 s)",
            f"{shown(jobs2)} with `--jobs 2`, {shown(jobs1)} with `--jobs 1`",
            f"reading and parsing the file alone {shown(parse)}",
            verdict(jobs2, lambda v: v >= 50_000),
        )
    )
    light = values(wide, lambda run: run["columns"]["this checkout"]["events_per_cpu_s"])
    # The same portfolio at 100k accounts and 12 months: its events per account-month times 1.2M,
    # at the CPU cost per event measured, on two cores each busy all the time (the best case).
    events = values(wide, lambda run: 1_200_000 * run["events"] / run["accounts"] / run["months"])
    minutes = [n / value / 2 / 60 for n, value in zip(events, light, strict=False)]
    base_light = values(wide, lambda run: run["columns"]["baseline"]["events_per_cpu_s"])
    coarse = results.get("wide-coarse", [])
    coarse_light = values(coarse, lambda run: run["columns"]["this checkout"]["events_per_cpu_s"])
    coarse_minutes = [n / value / 2 / 60 for n, value in zip(events, coarse_light, strict=False)]
    coarse_alerts = values(coarse, lambda run: run["columns"]["this checkout"]["alerts"])
    default_alerts = values(wide, lambda run: run["columns"]["this checkout"]["alerts"])
    table.append(
        (
            "100k accounts x 12 months usage-light offline ≤ 10 min",
            f"{shown(light)} events per CPU second (2,000 x 3 months): about "
            f"{shown(minutes, '{:,.0f} min')} for the {max(events, default=0) / 1e6:.1f}M events on two "
            "idle cores (extrapolated)",
            (f"baseline checkout {shown(base_light)}; " if base_light else "")
            + (
                f"with `bench/coarse_idle.toml` (weekly idle re-scoring and peer grid) {shown(coarse_light)} "
                f"events per CPU second, about {shown(coarse_minutes, '{:,.0f} min')}; alerts "
                f"{shown(coarse_alerts)} against {shown(default_alerts)}"
                if coarse_light
                else ""
            )
            or "-",
            verdict(minutes, lambda v: v <= 10),
        )
    )
    light_rss = values(wide, lambda run: run["columns"]["this checkout"]["rss_per_account"])
    heavy_rss = values(state, lambda run: run["rss_bytes_per_account"])
    table.append(bytes_row("≤ 8 KB resident per account", light_rss, heavy_rss, 8192))
    light_log = values(wide, lambda run: run["columns"]["this checkout"]["changelog_per_update"])
    heavy_log = values(state, lambda run: run["changelog_bytes_per_record"])
    table.append(bytes_row("≤ 2 KB to the changelog per account update", light_log, heavy_log, 2048))
    cold = values(recovery, lambda run: run["columns"]["this checkout"]["recovery_s_per_100k"])
    failover = values(recovery, lambda run: run["columns"]["this checkout"]["failover_s"])
    base_cold = values(recovery, lambda run: run["columns"]["baseline"]["recovery_s_per_100k"])
    table.append(
        (
            "recovery of 100k accounts ≤ 60 s",
            f"{shown(cold, '{:,.1f} s')} with the store lost; {shown(failover, '{:,.1f} s')} from a "
            "SIGKILL to every partition ready on a new worker",
            f"baseline checkout {shown(base_cold, '{:,.1f} s')}" if base_cold else "-",
            verdict(cold, lambda v: v <= 60),
        )
    )
    return table


def print_markdown(table: list[tuple[str, str, str, str]]) -> None:
    print("| target | this run | compared with, in the same run | met? |")
    print("|---|---|---|---|")
    for cells in table:
        if cells[-1] != "-":  # a target none of the benchmarks run measured is left out
            print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each benchmark (default: %(default)s)")
    parser.add_argument(
        "--only",
        default=",".join(BENCHES),
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        help="comma-separated benchmarks to run (default: all: %(default)s)",
    )
    parser.add_argument("--baseline", type=Path, help="a checkout that wide and recovery measure too")
    parser.add_argument("--from", dest="source", type=Path, help="print the table of an earlier run's folder")
    args = parser.parse_args(argv)
    unknown = [name for name in args.only if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.source is not None:
        out = args.source
        results: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(out.glob("*-*.json")):
            results.setdefault(path.stem.rsplit("-", 1)[0], []).append(json.loads(path.read_text()))
    else:
        out = BENCH_DIR / "out" / f"scale-{time.strftime('%Y%m%d-%H%M%S')}"
        out.mkdir(parents=True)
        against = f"; baseline {revision(args.baseline)}" if args.baseline else ""
        print(f"revision {git_revision()}{against}; load at the start {load()}; reports in {out}", flush=True)
        results = run_benches(args, out)
        print(f"load at the end {load()}\n", flush=True)
    revisions = sorted({run.get("revision", "?") for runs in results.values() for run in runs})
    print(f"issue 11's targets, one run of revision {', '.join(revisions)} ({out.name}):\n")
    print_markdown(rows(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
