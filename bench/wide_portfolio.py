"""Wide portfolios: many accounts, little usage each. Throughput, memory, changelog, recovery.

Generates a usage-light portfolio (cached in bench/out/): every account pays from before the
start, uses the product on some days (0.05-0.6 active days a day, one usage event each), opens a
ticket now and then, answers a survey rarely; a fifth go silent and a twentieth cancel. Then,
for the code of this checkout and for a baseline checkout (`--baseline DIR`, e.g. a
`git worktree` of the previous release), each in its own process:

  offline       the scoring core over the file, sorted, in one process (4 partitions), without
                the changelog encoding below: wall time and events/s, CPU seconds, the alerts
                raised (with a digest of their ids and raised_at, compared between the columns),
                scorings (evaluations) and snapshots per event
  changelog     the accounts a worker writes back after each batch of 4,000 events (its table
                write pattern: one record per touched account per batch), encoded with the state
                codec: records and bytes per account, bytes per record (per account update)
  state         the final encoded state per account (what a recovery reads)
  recovery      a fresh process reads the final records (and the stored peer references, where
                the code stores them), decodes them and rebuilds the partitions' engines
                (portfolio sums, peer references, timers): seconds and CPU seconds, and the
                resident memory it adds per account (what a worker holds with all accounts cached)

    .venv/bin/python bench/wide_portfolio.py --accounts 2000 --months 2           # smoke
    .venv/bin/python bench/wide_portfolio.py --accounts 100000 --months 12        # the issue's setting
    git worktree add /tmp/base <rev> && .venv/bin/python bench/wide_portfolio.py --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import gc
import gzip
import hashlib
import heapq
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import add_json, revision, rss, write_json

BENCH_DIR = Path(__file__).resolve().parent
START = datetime(2024, 1, 1, tzinfo=UTC)
BATCH = 4000  # the worker's batch (streamer/stream/app.py BATCH_MAX)
PARTITIONS = 4
PLANS = (("starter", "49.00", 3), ("pro", "299.00", 10), ("enterprise", "1990.00", 50))
FEATURES = ("dashboards", "reports", "api", "integrations", "alerts", "export")
TARGETS = {  # issue 11
    "events_per_s": ">= 50,000",
    "rss_per_account": "<= 8 KB",
    "changelog_per_update": "<= 2 KB",
    "recovery_per_100k": "<= 60 s",
}


# -- the portfolio --------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def generate(path: Path, accounts: int, months: int, seed: int) -> int:
    """Write the portfolio in event-time order; return the number of events."""
    rng = random.Random(seed)
    days = round(months * 30.4)
    # day -> [(second of the day, line)], filled as accounts schedule their next events
    pending: dict[int, list[tuple[int, bytes]]] = {}
    active_next: list[tuple[int, int]] = []  # (day, account) of each account's next usage day
    rate: list[float] = []
    quiet_from: list[int] = []
    users: list[int] = []
    serial = 0

    def emit(day: int, second: int, record: dict[str, Any]) -> None:
        nonlocal serial
        serial += 1
        record["event_id"] = f"e{serial}"
        record["occurred_at"] = iso(START + timedelta(days=day, seconds=second))
        pending.setdefault(day, []).append((second, json.dumps(record, separators=(",", ":")).encode()))

    for index in range(accounts):
        account = f"acct-{index:06d}"
        plan, amount, seats = PLANS[rng.choices((0, 1, 2), (6, 3, 1))[0]]
        joined = -rng.randrange(1, 30)
        emit(
            joined,
            rng.randrange(86_400),
            {
                "event_type": "subscription.started",
                "account_id": account,
                "subscription_id": f"{account}-s1",
                "plan": plan,
                "amount": amount,
                "currency": "USD",
                "interval": "month",
                "seats": seats,
                "term_end": iso(START + timedelta(days=joined + 365)),
            },
        )
        rate.append(rng.choice((0.05, 0.1, 0.2, 0.3, 0.45, 0.6)))
        quiet_from.append(rng.randrange(days) if rng.random() < 0.2 else days)
        users.append(rng.randrange(1, 6))
        if rng.random() < 0.05:
            emit(
                rng.randrange(days),
                rng.randrange(86_400),
                {
                    "event_type": "subscription.canceled",
                    "account_id": account,
                    "subscription_id": f"{account}-s1",
                },
            )
        active_next.append((_skip(rng, 0, rate[index]), index))
    heapq.heapify(active_next)

    count = 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        for day in range(-30, days):
            while active_next and active_next[0][0] == day:
                _, index = heapq.heappop(active_next)
                account = f"acct-{index:06d}"
                if day < quiet_from[index]:
                    emit(
                        day,
                        rng.randrange(86_400),
                        {
                            "event_type": "usage.recorded",
                            "account_id": account,
                            "user_id": f"u{rng.randrange(users[index])}",
                            "feature": rng.choice(FEATURES),
                            "count": rng.randrange(1, 20),
                        },
                    )
                    if rng.random() < 0.03:
                        ticket, second = f"{account}-t{day}", rng.randrange(86_400)
                        emit(
                            day,
                            second,
                            {
                                "event_type": "ticket.opened",
                                "account_id": account,
                                "ticket_id": ticket,
                                "priority": rng.choice(("low", "normal", "normal", "high", "urgent")),
                            },
                        )
                        emit(
                            day + rng.randrange(1, 6),
                            second,
                            {
                                "event_type": "ticket.resolved",
                                "account_id": account,
                                "ticket_id": ticket,
                                "contacts": rng.randrange(1, 4),
                            },
                        )
                    if rng.random() < 0.01:
                        emit(
                            day,
                            rng.randrange(86_400),
                            {
                                "event_type": "survey.answered",
                                "account_id": account,
                                "survey": "nps",
                                "respondent_id": f"u{rng.randrange(users[index])}",
                                "score": rng.randrange(11),
                            },
                        )
                heapq.heappush(active_next, (_skip(rng, day, rate[index]), index))
            for _, line in sorted(pending.pop(day, [])):
                out.write(line + b"\n")
                count += 1
    return count


def _skip(rng: random.Random, day: int, rate: float) -> int:
    """The next active day after `day` for an account active on `rate` of its days."""
    step = 1
    while rng.random() >= rate:
        step += 1
    return day + step


def portfolio(accounts: int, months: int, seed: int) -> tuple[Path, int]:
    out = BENCH_DIR / "out" / f"wide-v2-{accounts}x{months}-s{seed}.jsonl.gz"  # v2: resolved tickets valid
    count_file = out.with_suffix(".count")
    if not out.exists() or not count_file.exists():
        out.parent.mkdir(exist_ok=True)
        started = time.perf_counter()
        count = generate(out, accounts, months, seed)
        count_file.write_text(str(count))
        seconds = time.perf_counter() - started
        print(f"generated {out.name}: {count:,} events in {seconds:.0f} s", file=sys.stderr)
    return out, int(count_file.read_text())


def idle_days(path: Path) -> dict[str, float]:
    """What moves an account's own inputs on the days it has no usage (the portfolio's, not the code's).

    Of the account-days without usage after an account's first one: the share on which its
    recency is still on the sloping part of its default curve (30 days or less since the last
    use), and the share on which a day with usage leaves one of the usage windows the score
    reads (7, 28, 30, 7 + 28 and 28 + 28 days). A due rule that waits for the next input change
    can skip at most the days with neither.
    """
    windows = (7, 28, 30, 35, 56)
    active: dict[str, set[int]] = {}
    with gzip.open(path, "rb") as lines:
        for line in lines:
            if b'"usage.recorded"' not in line:
                continue
            record = json.loads(line)
            moment = datetime.fromisoformat(record["occurred_at"].replace("Z", "+00:00"))
            active.setdefault(record["account_id"], set()).add(int(moment.timestamp()) // 86_400)
    if not active:
        return {"idle_days": 0, "recency_moving": 0.0, "window_edge": 0.0, "either": 0.0}
    last_day = max(max(days) for days in active.values())
    total = recency = edge = either = 0
    for days in active.values():
        ordered = sorted(days)
        latest = ordered[0]
        for day in range(ordered[0] + 1, last_day + 1):
            if day in days:
                latest = day
                continue
            total += 1
            moving = day - latest <= 30
            leaving = any(day - width in days for width in windows)
            recency += moving
            edge += leaving
            either += moving or leaving
    return {
        "idle_days": total,
        "recency_moving": recency / total,
        "window_edge": edge / total,
        "either": either / total,
    }


# -- one measurement, in a process of its own ----------------------------------------------------


SCORE_CONFIG_ENV = "WIDE_PORTFOLIO_SCORE_CONFIG"  # how --score-config reaches the children


def score_config() -> Any:
    """The default score configuration, or the file `--score-config` named (as `--config` reads it)."""
    from streamer.settings import load_score_config

    path = os.environ.get(SCORE_CONFIG_ENV)
    return load_score_config(Path(path) if path else None)


def measure(path: Path, records_path: Path, batch_size: int) -> dict[str, Any]:
    """Offline run with the worker's write-back pattern; the final records go to `records_path`."""
    from write_log import WriteLog, realistic_offsets, written_back

    from streamer.core.engine import PartitionEngine
    from streamer.offline.runner import OfflineRun
    from streamer.state import codec

    config = score_config()
    run = OfflineRun(config, PARTITIONS, published_ms=int(time.time() * 1000))
    stores = [WriteLog() for _ in range(PARTITIONS)]
    run.stores = stores  # type: ignore[assignment]
    scorings = idle = idle_same_score = idle_band_changed = 0

    class Counting(PartitionEngine):
        """Counts the evaluations (`_score`), the cost the timer queue and the due rule cut, and
        of the re-scorings of idle accounts (no event: no trigger) those that left the score or
        the band as they were."""

        def _score(self, account: Any, now: int, trigger: Any) -> Any:
            nonlocal scorings, idle, idle_same_score, idle_band_changed
            scorings += 1
            before = (account.score, account.band)
            alerts = PartitionEngine._score(self, account, now, trigger)
            if trigger is None and before[0] is not None:
                idle += 1
                idle_same_score += account.score == before[0]
                idle_band_changed += account.band != before[1]
            return alerts

    run.engines = [Counting(config, store) for store in stores]
    offsets = realistic_offsets()
    records = written_bytes = 0
    encoding = encoding_cpu = 0.0

    def write_back() -> None:
        nonlocal records, written_bytes, encoding, encoding_cpu
        started, started_cpu = time.perf_counter(), time.process_time()
        for _, account in written_back(stores):
            records += 1
            written_bytes += len(codec.encode_account(account, offsets))
        encoding += time.perf_counter() - started
        encoding_cpu += time.process_time() - started_cpu

    def noop(_: dict[str, Any]) -> None:
        pass

    alert_ids = hashlib.sha256()  # every alert's id and raised_at, in the order raised

    def on_alert(alert: dict[str, Any]) -> None:
        alert_ids.update(f"{alert['alert_id']} {alert['raised_at']}\n".encode())

    with gzip.open(path, "rb") as lines:
        batch: list[bytes] = []
        started, started_cpu = time.perf_counter(), time.process_time()
        for line in lines:
            batch.append(line)
            if len(batch) == batch_size:
                run.feed(iter(batch), on_snapshot=noop, on_alert=on_alert, on_dead_letter=noop)
                write_back()
                batch = []
        run.feed(iter(batch), on_snapshot=noop, on_alert=on_alert, on_dead_letter=noop)
        write_back()
        wall = time.perf_counter() - started - encoding
        cpu = time.process_time() - started_cpu - encoding_cpu
    summary = run.summary
    accounts = sum(len(store) for store in stores)
    state_bytes = 0
    with records_path.open("wb") as out:
        for partition, (store, engine) in enumerate(zip(stores, run.engines, strict=True)):
            clock = engine.clock
            out.write(struct.pack("<iqq", partition, clock.stream_time, clock.next_tick))
            for account_id in sorted(store):
                raw = codec.encode_account(store[account_id], offsets)
                state_bytes += len(raw)
                key = account_id.encode()
                out.write(struct.pack("<HI", len(key), len(raw)) + key + raw)
            out.write(struct.pack("<HI", 0, 0))
            # the peer references a worker stores beside the partition record (none before them)
            peers = codec.encode_peers(engine.peers.references) if hasattr(codec, "encode_peers") else b""
            out.write(struct.pack("<I", len(peers)) + peers)
    return {
        "events": summary.lines,
        "accepted": summary.accepted,
        "accounts": accounts,
        "offline_s": wall,
        "events_per_s": summary.lines / wall,
        "offline_cpu_s": cpu,
        "events_per_cpu_s": summary.lines / cpu,
        "alerts": sum(summary.alerts.values()),
        "alert_ids": alert_ids.hexdigest()[:16],
        "scorings": scorings,
        "scorings_per_event": scorings / max(1, summary.lines),
        "idle_scorings_per_event": idle / max(1, summary.lines),
        "idle_same_score": idle_same_score / max(1, idle),
        "idle_band_changed": idle_band_changed / max(1, idle),
        "snapshots": summary.snapshots,
        "snapshots_per_event": summary.snapshots / max(1, summary.lines),
        "changelog_records": records,
        "changelog_bytes": written_bytes,
        "state_bytes": state_bytes,
    }


def recover(records_path: Path) -> dict[str, Any]:
    """Decode every account and rebuild the partitions' engines, as a worker does on recovery."""
    from streamer.core.engine import Clock, PartitionEngine
    from streamer.state import codec

    config = score_config()
    gc.collect()
    before = rss()
    started, started_cpu = time.perf_counter(), time.process_time()
    engines = []
    with records_path.open("rb") as source:
        while header := source.read(20):
            _, stream_time, next_tick = struct.unpack("<iqq", header)
            accounts = {}
            while True:
                key_length, length = struct.unpack("<HI", source.read(6))
                if not key_length:
                    break
                key = source.read(key_length).decode()
                accounts[key], _offsets = codec.decode_account_record(source.read(length))
            (length,) = struct.unpack("<I", source.read(4))
            stored = codec.decode_peers(source.read(length)) if length else []
            clock = Clock(stream_time, next_tick)
            engine = (
                PartitionEngine(config, accounts, clock, stored)
                if stored
                else PartitionEngine(config, accounts, clock)
            )
            engines.append(engine)
    seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    gc.collect()
    count = sum(len(engine.accounts) for engine in engines)
    return {"recovery_s": seconds, "recovery_cpu_s": cpu, "rss_bytes": rss() - before, "recovered": count}


# -- the report -----------------------------------------------------------------------------------


def child(source: Path, mode: str, *args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(source))
    done = subprocess.run(
        [sys.executable, __file__, f"--{mode}", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"{mode} with {source} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def figures(source: Path, path: Path, batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        records = Path(scratch) / "accounts.bin"
        result = child(source, "measure", str(path), str(records), str(batch))
        result |= child(source, "recover", str(records))
    accounts = result["accounts"]
    result["changelog_per_account"] = result["changelog_bytes"] / accounts
    result["changelog_per_update"] = result["changelog_bytes"] / max(1, result["changelog_records"])
    result["updates_per_account"] = result["changelog_records"] / accounts
    result["state_per_account"] = result["state_bytes"] / accounts
    result["rss_per_account"] = result["rss_bytes"] / accounts
    result["recovery_per_100k"] = result["recovery_s"] * 100_000 / accounts
    result["recovery_cpu_per_100k"] = result["recovery_cpu_s"] * 100_000 / accounts
    return result


ROWS = (
    ("offline: seconds", "offline_s", "{:,.1f}"),
    ("offline: events/s", "events_per_s", "{:,.0f}"),
    ("offline: CPU seconds", "offline_cpu_s", "{:,.1f}"),
    ("offline: events per CPU second", "events_per_cpu_s", "{:,.0f}"),
    ("offline: alerts raised", "alerts", "{:,}"),
    ("offline: scorings per event", "scorings_per_event", "{:,.2f}"),
    ("offline: idle re-scorings per event", "idle_scorings_per_event", "{:,.2f}"),
    ("idle re-scorings: score unchanged", "idle_same_score", "{:.1%}"),
    ("idle re-scorings: band changed", "idle_band_changed", "{:.2%}"),
    ("offline: snapshots per event", "snapshots_per_event", "{:,.2f}"),
    ("resident bytes per account (all cached)", "rss_per_account", "{:,.0f}"),
    ("changelog: records per account", "updates_per_account", "{:,.1f}"),
    ("changelog: bytes per account", "changelog_per_account", "{:,.0f}"),
    ("changelog: bytes per record (update)", "changelog_per_update", "{:,.0f}"),
    ("state: bytes per account", "state_per_account", "{:,.0f}"),
    ("recovery: seconds", "recovery_s", "{:,.2f}"),
    ("recovery: seconds per 100k accounts", "recovery_per_100k", "{:,.1f}"),
    ("recovery: CPU seconds", "recovery_cpu_s", "{:,.2f}"),
    ("recovery: CPU seconds per 100k accounts", "recovery_cpu_per_100k", "{:,.1f}"),
)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--months", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help="events per worker batch: a backfill fills the worker's batches (4,000); a live "
        "stream makes small ones, where every midnight falls in a batch of its own",
    )
    add_json(parser)
    parser.add_argument(
        "--score-config",
        type=Path,
        metavar="TOML",
        help="score with this configuration file (as `streamer offline --config` reads it, e.g. "
        "[time] idle_rescore_days = 7) in every column instead of the defaults",
    )
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--recover", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        events_path, records_path, batch = args.measure
        print(json.dumps(measure(Path(events_path), Path(records_path), int(batch))))
        return
    if args.recover:
        print(json.dumps(recover(args.recover)))
        return

    from machine import git_revision, load

    if args.score_config is not None:
        os.environ[SCORE_CONFIG_ENV] = str(args.score_config.resolve())
        print(f"score configuration: {args.score_config}")
    path, events = portfolio(args.accounts, args.months, args.seed)
    here = BENCH_DIR.parent
    results = {"this checkout": figures(here, path, args.batch)}
    if args.baseline:
        results = {"baseline": figures(args.baseline, path, args.batch), **results}
    first = next(iter(results.values()))
    accounts = first["accounts"]
    print(f"wide_portfolio: {path.name}: {events:,} events, {accounts:,} accounts, {PARTITIONS} partitions")
    print(f"worker batches of {args.batch:,} events")
    baseline = f"; baseline: {revision(args.baseline)}" if args.baseline else ""
    print(f"this checkout: {git_revision()}{baseline}")
    print(f"load {load()}, {os.cpu_count()} cores")
    print()
    names = list(results)
    header = f"| {'':42} | " + " | ".join(f"{name:>13}" for name in names)
    header += " | ratio |" if args.baseline else " |"
    print(header)
    print("|" + "---|" * (len(names) + 1 + bool(args.baseline)))
    for label, key, form in ROWS:
        cells = [form.format(results[name][key]) for name in names]
        line = f"| {label:42} | " + " | ".join(f"{cell:>13}" for cell in cells)
        if args.baseline:
            base, now = results["baseline"][key], results["this checkout"][key]
            line += f" | {now / base:5.2f} |" if base else " |   - |"
        else:
            line += " |"
        print(line)
    print()
    print("targets (issue 11): " + ", ".join(f"{key} {value}" for key, value in TARGETS.items()))
    found = idle_days(path)
    print(
        f"account-days without usage: {found['idle_days']:,}; recency still moving (<= 30 days since the "
        f"last use) on {found['recency_moving']:.1%}, a usage day leaving a window on "
        f"{found['window_edge']:.1%}, either on {found['either']:.1%}"
    )
    same = len({(r["accepted"], r["alerts"], r["alert_ids"]) for r in results.values()}) == 1
    print(f"same accepted events and alerts (ids and raised_at) in every column: {'yes' if same else 'NO'}")
    portfolio_size = {"events": events, "accounts": accounts, "months": args.months}
    write_json(args.json, {"columns": results, "same_outputs": same, "idle": found, **portfolio_size})


if __name__ == "__main__":
    main()
