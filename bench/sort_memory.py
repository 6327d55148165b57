"""Memory of `--sort`: a file's lines put in event-time order in memory, and in runs on disk.

`streamer offline --sort` and `streamer backtest` order a file's lines by event time before
scoring them. Held as one sorted list, the lines cost about 375 bytes each on top of their own
bytes, so a backfill of years of history needed memory in proportion to its length. Sorted in
runs of `RUN_BYTES` that are written to disk and merged, the memory stays bounded.

Each method runs in a process of its own over the same file, reading it, ordering it with the
same key `--sort` uses and reading every line back in order; the table gives each one's peak
resident memory, CPU seconds and wall time, the ratio against the in-memory sort measured in the
same run, and whether both gave the same order (a SHA-256 of the ordered lines). Alternating,
`--rounds` times; medians.

    .venv/bin/python bench/sort_memory.py                          # wide portfolio, 20,000 x 12
    .venv/bin/python bench/sort_memory.py --events FILE --run-mb 64
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import parser, print_checkouts
from wide_portfolio import portfolio

CHILD = """
import hashlib, sys
from streamer.offline import external_sort
from streamer.offline.runner import bounded_order_key, open_events, publication_ms, time_window
from streamer.core.config import ScoreConfig
method, path, run_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
key = bounded_order_key(time_window(ScoreConfig(), publication_ms(None)))
digest, count = hashlib.sha256(), 0
with open_events(__import__("pathlib").Path(path)) as source:
    if method == "memory":
        ordered = (line for _, line in sorted(enumerate(source), key=key))
        for line in ordered:
            digest.update(line); count += 1
    else:
        with external_sort.SortedLines(source, key, run_bytes=run_mb << 20) as runs:
            for _, line in runs:
                digest.update(line); count += 1
print(count, digest.hexdigest())
"""


def measure(method: str, events: Path, run_mb: int) -> dict[str, float | str]:
    """One method in a child process: its peak RSS, CPU and wall seconds, lines and digest."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, method, str(events), str(run_mb)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the {method} sort failed ({child.returncode})")
    lines, digest = output.split()
    return {
        "rss": usage.ru_maxrss * 1024,
        "cpu": usage.ru_utime + usage.ru_stime,
        "wall": time.perf_counter() - started,
        "lines": float(lines),
        "digest": digest,
    }


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--events", type=Path, help="a file of events (default: the wide portfolio)")
    args.add_argument("--accounts", type=int, default=20_000, help="wide portfolio accounts (20,000)")
    args.add_argument("--months", type=int, default=12, help="wide portfolio months (12)")
    args.add_argument("--run-mb", type=int, default=128, help="MB of lines per run (128: the default)")
    args.add_argument("--rounds", type=int, default=2)
    options = args.parse_args()
    events = options.events or portfolio(options.accounts, options.months, 7)[0]
    print_checkouts(None)
    size = events.stat().st_size
    print(f"{events} ({size / 1e6:,.1f} MB on disk), runs of {options.run_mb} MB, {options.rounds} rounds")
    results: dict[str, list[dict[str, float | str]]] = {"memory": [], "runs": []}
    for _ in range(options.rounds):
        for method in results:
            results[method].append(measure(method, events, options.run_mb))

    def median(method: str, key: str) -> float:
        return statistics.median(float(run[key]) for run in results[method])

    lines = median("memory", "lines")
    same = {str(run["digest"]) for runs in results.values() for run in runs}
    print()
    print("| method | peak RSS | RSS bytes per line | CPU s | wall s | vs in memory (RSS, CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for method, label in (("memory", "one sorted list (before)"), ("runs", "runs on disk, merged")):
        rss, cpu, wall = median(method, "rss"), median(method, "cpu"), median(method, "wall")
        ratios = f"{rss / median('memory', 'rss'):.2f}x, {cpu / median('memory', 'cpu'):.2f}x"
        memory = f"{rss / 2**20:,.0f} MiB | {rss / lines:,.0f}"
        print(f"| {label} | {memory} | {cpu:.1f} | {wall:.1f} | {ratios} |")
    print()
    print(f"{lines:,.0f} lines; the same order from both: {'yes' if len(same) == 1 else 'NO'}")


if __name__ == "__main__":
    main()
