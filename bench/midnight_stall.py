"""A midnight in a large partition: how long the worker's event loop stands still.

Every active account is due at a midnight, so the first event past one re-scores the whole
partition and sends a snapshot of each account. This runs the worker's `Scorer` (overlapping
checkpoints, as `streamer worker` runs it) over in-memory tables, a sink that encodes every
record as the Kafka sink does, and one partition of `--accounts` accounts that started and used
the product on 2024-01-01; then one event on 2024-01-02 crosses the midnight. A probe task asks
the loop for a 5 ms sleep over and over meanwhile and records how late each wake-up came: the
longest is how long anything else on the loop (the Kafka client's sends and acknowledgements,
Redis writes, a stop) had to wait.

Each checkout runs in a process of its own (`PYTHONPATH`), this one and `--baseline DIR` (a
`git worktree` of another revision) alternating, `--rounds` times; the table gives medians,
the ratio to the baseline, and whether both sent the same records (a digest of them).

    .venv/bin/python bench/midnight_stall.py --accounts 2000 --rounds 1            # smoke
    git worktree add --detach /tmp/base <rev>
    .venv/bin/python bench/midnight_stall.py --accounts 50000 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import add_baseline, checkouts, parser, print_checkouts

PROBE_S = 0.005
ROWS = (  # (key, label) of the report
    ("longest_stall_s", "longest loop stall (s)"),
    ("turns", "loop turns in the midnight"),
    ("midnight_s", "midnight, wall (s)"),
    ("midnight_cpu_s", "midnight, CPU (s)"),
)


# -- one measurement (in the checkout's own process) ----------------------------------------------


class Message:
    def __init__(self, topic: str, offset: int, key: bytes, value: bytes, generation: int) -> None:
        self.topic, self.partition, self.offset = topic, 0, offset
        self.key, self.value = key, value
        self.timestamp, self.generation_id, self.follows = time.time(), generation, None
        self.origin = None  # not a re-routed copy


class Delivery:
    def __init__(self, message: Message) -> None:
        self.message = message

    def ack(self) -> None:
        pass


class Sink:
    """Encodes each record as the Kafka sink does; keeps a digest of them."""

    def __init__(self) -> None:
        from streamer.jsonbytes import kept_json

        self.encode = kept_json
        self.digest = hashlib.sha256()
        self.records = 0

    def _keep(self, record: dict[str, Any]) -> None:
        self.digest.update(self.encode(record))
        self.records += 1

    alert = snapshot = dead_letter = _keep

    def reroute(self, topic: str, key: bytes, value: bytes, partition: int, origin: bytes) -> None:
        raise AssertionError("no event is re-routed here")

    async def flush(self) -> None:
        pass


class Offsets:
    def __init__(self, topics: list[str], generation: int) -> None:
        self.owned = {(topic, 0) for topic in topics}
        self.ends = dict.fromkeys(self.owned, 0)
        self.generation_id = generation

    def generation(self) -> int:
        return self.generation_id

    def settled(self) -> bool:
        return True

    def assigned(self) -> set[tuple[str, int]]:
        return set(self.owned)

    def highwater(self, topic: str, partition: int) -> int | None:
        return self.ends.get((topic, partition))

    async def end_offsets(self, tps: Any) -> dict[tuple[str, int], int]:
        return {tp: self.ends[tp] for tp in tps}

    async def log_ends(self, tps: Any) -> dict[tuple[str, int], int]:
        return await self.end_offsets(tps)

    async def restart_offsets(self, tps: Any) -> dict[tuple[str, int], int]:
        return dict.fromkeys(tps, 0)

    async def start_offsets(self, tps: Any) -> dict[tuple[str, int], int]:
        return dict.fromkeys(tps, 0)

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        raise AssertionError("no offset is skipped here")

    def read_position(self, topic: str, partition: int) -> None:
        return None

    async def created_again(self, topic: str) -> None:
        pass

    def start_over(self, topic: str, partition: int) -> None:
        pass

    def acknowledge_passed(self, topic: str, partition: int, start: int, stop: int) -> None:
        pass


class Changelogs:
    async def written(self) -> None:
        pass


def event(serial: int, account: str, kind: str, when: str, **fields: Any) -> bytes:
    record = {"event_id": f"e{serial}", "event_type": kind, "account_id": account, "occurred_at": when}
    return json.dumps({**record, **fields}).encode()


async def measure(accounts: int) -> dict[str, Any]:
    from streamer.collector import collect_less
    from streamer.core.config import ScoreConfig
    from streamer.settings import Settings
    from streamer.stream.scorer import Scorer

    collect_less()  # as `streamer worker` starts

    settings = Settings(partitions=1)
    topics = settings.input_topics
    subs, usage = topics["subscriptions"], topics["usage"]
    offsets = Offsets(list(topics.values()), generation=1)
    sink = Sink()
    scorer = Scorer(settings, ScoreConfig(), {}, {}, sink, offsets, changelogs=Changelogs(), overlap=True)  # type: ignore[arg-type]
    ids = [f"acct-{n:06d}" for n in range(accounts)]
    day_one: list[tuple[str, bytes]] = []
    for n, account in enumerate(ids):
        day_one.append(
            (
                subs,
                event(
                    4 * n,
                    account,
                    "subscription.started",
                    "2024-01-01T01:00:00Z",
                    subscription_id=f"{account}-s",
                    plan=("starter", "pro")[n % 2],
                    amount="100.00",
                    currency="USD",
                    interval="month",
                    seats=5,
                ),
            )
        )
        for k, feature in enumerate(("reports", "search", "export")):
            day_one.append(
                (
                    usage,
                    event(
                        4 * n + k + 1,
                        account,
                        "usage.recorded",
                        f"2024-01-01T{2 + k * 6 + n % 6:02d}:00:00Z",
                        user_id=f"{account}-u{k % 2}",
                        feature=feature,
                        count=2,
                    ),
                )
            )
    day_one.sort(key=lambda pair: json.loads(pair[1])["occurred_at"])
    next_offset = {subs: 0, usage: 0}
    deliveries = []
    for topic, value in day_one:
        deliveries.append(Delivery(Message(topic, next_offset[topic], b"", value, 1)))
        next_offset[topic] += 1
    for topic, end in next_offset.items():
        offsets.ends[(topic, 0)] = end
    for start in range(0, len(deliveries), 4000):
        await scorer.process(deliveries[start : start + 4000])
    await scorer.settled()
    before = sink.records
    crossing = event(10**9, ids[0], "usage.recorded", "2024-01-02T10:00:00Z", user_id="u", feature="reports")
    offsets.ends[(usage, 0)] = next_offset[usage] + 1
    late: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            asked = time.perf_counter()
            await asyncio.sleep(PROBE_S)
            late.append(time.perf_counter() - asked - PROBE_S)

    probing = asyncio.create_task(probe())
    await asyncio.sleep(PROBE_S * 3)
    late.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    await scorer.process([Delivery(Message(usage, next_offset[usage], b"", crossing, 1))])
    await scorer.settled()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    await probing
    return {
        "accounts": accounts,
        "longest_stall_s": max(late),
        "turns": len(late),
        "midnight_s": wall,
        "midnight_cpu_s": cpu,
        "records": sink.records - before,
        "digest": sink.digest.hexdigest()[:12],
    }


# -- the comparison ------------------------------------------------------------------------------


def run_once(checkout: Path, accounts: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", str(accounts)],
        cwd=checkout,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    command = parser(__doc__)
    command.add_argument("--accounts", type=int, default=20000, help="accounts in the partition")
    command.add_argument("--rounds", type=int, default=3, help="runs per checkout (medians)")
    add_baseline(command)
    command.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = command.parse_args()
    if args.measure is not None:
        print(json.dumps(asyncio.run(measure(args.measure))))
        return
    columns = checkouts(args.baseline.resolve() if args.baseline else None)  # the baseline first
    print_checkouts(args.baseline)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in columns}
    for round_ in range(1, args.rounds + 1):
        for name, checkout in columns.items():
            result = run_once(checkout, args.accounts)
            runs[name].append(result)
            print(
                f"round {round_} {name}: longest stall {result['longest_stall_s']:.3f} s, "
                f"midnight {result['midnight_s']:.2f} s",
                file=sys.stderr,
            )
    names = list(columns)
    pair = len(names) == 2
    print(
        f"One partition of {args.accounts:,} accounts, the first event past a midnight "
        f"(median of {args.rounds}):\n"
    )
    print("| | " + " | ".join(names) + (" | ratio |" if pair else " |"))
    print("|---" * (len(names) + 1 + pair) + "|")
    for key, label in ROWS:
        medians = [statistics.median(r[key] for r in runs[name]) for name in names]
        cells = [f"{m:,.3f}" if isinstance(m, float) else f"{m:,}" for m in medians]
        ratio = [f"{medians[1] / medians[0]:.3f}x" if medians[0] else "-"] if pair else []
        print(f"| {label} | " + " | ".join(cells + ratio) + " |")
    digests = {name: {r["digest"] for r in runs[name]} for name in names}
    records = {name: {r["records"] for r in runs[name]} for name in names}
    cells = [f"{'/'.join(map(str, sorted(records[n])))} ({'/'.join(sorted(digests[n]))})" for n in names]
    same = [("same" if digests[names[0]] == digests[names[1]] else "DIFFERENT")] if pair else []
    print("| records sent at the midnight | " + " | ".join(cells + same) + " |")


if __name__ == "__main__":
    main()
