"""What the benchmarks share: their command line, the checkouts they compare, the CPU seconds and
memory of a child process, and the header and table of their report.

Imported as a sibling module (bench/ is on `sys.path` when a benchmark runs as a script), like
`machine.py` (load and revision), which it builds on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from machine import git_revision, load

BENCH_DIR = Path(__file__).resolve().parent
THIS_CHECKOUT = BENCH_DIR.parent

# A report's row: its label, the key of the figure in each column's results, its format.
Row = tuple[str, str, str]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's argument parser: its module docstring, kept as written, is the help."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_portfolio(parser: argparse.ArgumentParser, *, accounts: int, months: int, seed: int) -> None:
    """`--accounts`, `--months` and `--seed` of the portfolio a benchmark generates, with its defaults."""
    parser.add_argument("--accounts", type=int, default=accounts)
    parser.add_argument("--months", type=int, default=months)
    parser.add_argument("--seed", type=int, default=seed)


def add_baseline(parser: argparse.ArgumentParser) -> None:
    """`--baseline DIR`: a checkout of other code (e.g. a `git worktree`) measured in the same run."""
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")


def add_json(parser: argparse.ArgumentParser) -> None:
    """`--json FILE`: the figures of the report, for `scale_table.py` (which reads them)."""
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE")


def write_json(path: Path | None, figures: Mapping[str, Any]) -> None:
    """Write `figures` with the revision and the load when `--json` asked for them (a figure
    not measured, NaN, is written as null)."""
    if path is not None:
        record = {"revision": git_revision(), "load_end": load(), **figures}
        path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2, default=str))


def checkouts(baseline: Path | None) -> dict[str, Path]:
    """The source trees to measure by column name: the baseline first (when given), then this one."""
    this = {"this checkout": THIS_CHECKOUT}
    return {"baseline": baseline, **this} if baseline else this


def revision(source: Path) -> str:
    """The revision of the checkout at `source`: short hash and subject (its path if not a checkout)."""
    done = subprocess.run(
        ["git", "log", "-1", "--format=%h %s"], cwd=source, capture_output=True, text=True, check=False
    )
    return done.stdout.strip()[:72] or str(source)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process, all its threads (Linux /proc); None once
    it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine spent busy since boot (Linux /proc/stat: user, nice,
    system, irq and softirq; idle, iowait and time stolen by a hypervisor left out)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class CoreUse:
    """Cores used over a phase (CPU seconds per wall second): the whole machine, the broker (when
    its pid is known) and this process; whatever else ran is the rest."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid
        self.started = time.perf_counter()
        self.machine = machine_busy_seconds()
        self.broker = cpu_seconds(broker_pid) if broker_pid is not None else None
        self.own = time.process_time()

    def cores(self) -> dict[str, float | None]:
        """{"machine", "broker", "bench"}: cores each used since this was created."""
        wall = max(time.perf_counter() - self.started, 1e-9)
        broker_now = cpu_seconds(self.broker_pid) if self.broker_pid is not None else None
        broker = None if broker_now is None or self.broker is None else (broker_now - self.broker) / wall
        return {
            "machine": (machine_busy_seconds() - self.machine) / wall,
            "broker": broker,
            "bench": (time.process_time() - self.own) / wall,
        }


def rss(pid: int | str = "self") -> int:
    """Resident set size of a process in bytes (this one by default; 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def print_checkouts(baseline: Path | None) -> None:
    """The report's header: the revisions measured, the load and the cores, then a blank line."""
    against = f"; baseline: {revision(baseline)}" if baseline else ""
    print(f"this checkout: {git_revision()}{against}")
    print(f"load {load()}, {os.cpu_count()} cores")
    print()


def print_table(results: Mapping[str, Mapping[str, Any]], rows: Iterable[Row], label_width: int) -> None:
    """A markdown table: one row per figure, one column per checkout (right-aligned)."""
    names = list(results)
    print(f"| {'':{label_width}} | " + " | ".join(f"{name:>13}" for name in names) + " |")
    print("|" + "---|" * (len(names) + 1))
    for label, key, form in rows:
        cells = [form.format(results[name][key]) for name in names]
        print(f"| {label:{label_width}} | " + " | ".join(f"{cell:>13}" for cell in cells) + " |")
