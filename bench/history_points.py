"""What the projection's history costs a worker in process: the engine's hour finals, staging
their points and formatting the ones kept, against the same engine without them.

The worker hands the projection every snapshot it publishes and, since the history no longer
depends on where batches end, every scoring that became the last of its hour before a snapshot
was taken (`PartitionEngine.take_hour_finals`). This bench feeds a simulated portfolio (the
issue's stream by default: 100 accounts x 12 months) through one engine per partition as a
worker would, taking the snapshots every `--batch` events and writing what is staged every
`--flush` events (thinned and formatted as `RedisProjection` does, without Redis), and prints
the CPU seconds of both, alternating `--rounds` times, with their ratio and how many points
would be written.

    .venv/bin/python bench/history_points.py
    .venv/bin/python bench/history_points.py --rounds 3 --batch 4000
"""

from __future__ import annotations

import statistics
import time

import orjson
from common import add_json, add_portfolio, parser, print_checkouts, write_json

from streamer.contract.decode import decode_event
from streamer.contract.events import Event
from streamer.core.config import ScoreConfig
from streamer.core.engine import PartitionEngine
from streamer.partitioning import partition_of
from streamer.projection import history
from streamer.projection.codec import epoch_ms
from streamer.projection.staging import Staged
from streamer.sim.config import SimulationConfig
from streamer.sim.generate import generate_events


def feed(
    events: list[tuple[int, Event]], partitions: int, batch: int, flush: int, hour_finals: bool
) -> tuple[float, int, int]:
    """CPU seconds, hour finals taken and points written for one pass."""
    engines = [PartitionEngine(ScoreConfig(), {}, keep_hour_finals=hour_finals) for _ in range(partitions)]
    staged, finals, written = Staged(), 0, 0
    started = time.process_time()
    for number, (partition, event) in enumerate(events, start=1):
        engines[partition].process(event)
        if number % batch == 0 or number == len(events):
            for engine in engines:
                for account, figures in engine.take_hour_finals():
                    staged.point(account, figures[0], figures)
                    finals += 1
                for account in engine.take_dirty():
                    snapshot = engine.snapshot(account)
                    staged.point(account, epoch_ms(snapshot["as_of"]), history.point(snapshot))
        if number % flush == 0 or number == len(events):
            for points in staged.points.values():
                kept = history.thin(points)
                written += len(kept)
                for _, point in kept.values():
                    history.as_written(point)
            staged = Staged()
    return time.process_time() - started, finals, written


def main() -> None:
    args = parser(__doc__)
    add_portfolio(args, accounts=100, months=12, seed=11)
    args.add_argument("--partitions", type=int, default=4)
    args.add_argument("--batch", type=int, default=2000, help="events between two snapshot takings (2000)")
    args.add_argument("--flush", type=int, default=8000, help="events between two writes (8000)")
    args.add_argument("--rounds", type=int, default=2)
    add_json(args)
    options = args.parse_args()
    config = SimulationConfig(accounts=options.accounts, months=options.months, seed=options.seed)
    events = [
        (partition_of(event.account_id, options.partitions), event)
        for event in (decode_event(orjson.dumps(raw)) for raw in generate_events(config))
    ]
    print_checkouts(None)
    print(
        f"{len(events):,} events, {options.accounts} accounts x {options.months} months (seed {options.seed})"
    )
    cpu: dict[bool, list[float]] = {False: [], True: []}
    counts: dict[bool, tuple[int, int]] = {}
    for _ in range(options.rounds):
        for hour_finals in (False, True):
            seconds, finals, written = feed(
                events, options.partitions, options.batch, options.flush, hour_finals
            )
            cpu[hour_finals].append(seconds)
            counts[hour_finals] = (finals, written)
    print()
    print("| engine | CPU s (median) | runs | hour finals | points written | ratio |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(cpu[False])
    for hour_finals, label in ((False, "snapshots only (baseline)"), (True, "with hour finals")):
        median = statistics.median(cpu[hour_finals])
        runs = ", ".join(f"{seconds:.2f}" for seconds in cpu[hour_finals])
        finals, written = counts[hour_finals]
        print(f"| {label} | {median:.2f} | {runs} | {finals:,} | {written:,} | {median / base:.3f}x |")
    write_json(
        options.json,
        {
            "cpu_s": {str(key): value for key, value in cpu.items()},
            "counts": {str(k): v for k, v in counts.items()},
        },
    )


if __name__ == "__main__":
    main()
