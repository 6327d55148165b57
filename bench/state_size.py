"""Where the bytes of worker state go: bytes per account by part, pickle vs the state codec.

Feeds a simulated portfolio through one partition engine per partition (as a worker does) in
batches of the worker's size, and records every account the batch writes back (the table's
write pattern: one changelog record per touched account per batch). Prints:

  1. bytes per account of the final state, by part, pickled and encoded;
  2. the changelog: records written per 1,000 events and bytes per record (pickle vs codec);
  3. resident Python memory of the decoded accounts (what a worker keeps cached), per account
     (tracemalloc; and the growth of the process's RSS the first time they are decoded), and
     where it goes: a `sys.getsizeof` walk of each part, objects reached from more than
     one account (interned words, shared days and scores) left out; and what the partition
     engine keeps beside them: each account's last snapshot, compressed.

    .venv/bin/python bench/state_size.py                        # 500 accounts x 2 months
    .venv/bin/python bench/state_size.py --accounts 200 --months 12
"""

from __future__ import annotations

import gc
import gzip
import pickle
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
from common import add_json, add_portfolio, parser, rss, write_json
from machine import git_revision, load
from write_log import WriteLog, realistic_offsets, written_back

from streamer.contract.decode import Rejected, decode_event
from streamer.core.account import Account
from streamer.core.config import ScoreConfig
from streamer.core.engine import PartitionEngine
from streamer.partitioning import partition_of
from streamer.state import codec

BENCH_DIR = Path(__file__).resolve().parent
BATCH = 4000  # the worker's batch size (streamer/stream/app.py BATCH_MAX)
PARTITIONS = 4


def portfolio(accounts: int, months: int, seed: int) -> Path:
    out = BENCH_DIR / "out" / f"state-{accounts}x{months}-s{seed}.jsonl.gz"
    if not out.exists():
        out.parent.mkdir(exist_ok=True)
        command = ["streamer", "simulate", "--accounts", str(accounts), "--months", str(months)]
        command += ["--seed", str(seed), "--out", str(out)]
        subprocess.run([str(Path(sys.executable).parent / command[0]), *command[1:]], check=True)
    return out


def events(path: Path) -> Iterator[Any]:
    with gzip.open(path) as lines:
        for line in lines:
            try:
                yield decode_event(line)
            except Rejected:
                continue


def parts(account: Account) -> dict[str, tuple[Any, Callable[[], Any]]]:
    """Each part: (the object pickle sees, the codec's array for it)."""
    ids = codec._Ids(account.account_id)
    usage = codec._encode_usage(account.usage, ids)
    return {
        "dedupe ids (seen)": (account.seen, lambda: codec._encode_seen(account.seen)),
        "usage: per-user activity": (user_parts(account), lambda: usage[1:4]),
        "usage: day buckets": (day_parts(account), lambda: usage[4:7]),
        "usage: features, window sums": (account.usage.features, lambda: [usage[0], *usage[7:]]),
        "tickets (support)": (account.support, lambda: codec._encode_support(account.support, ids)),
        "surveys (sentiment)": (account.sentiment, lambda: codec._encode_sentiment(account.sentiment, ids)),
        "subscriptions (revenue)": (account.revenue, lambda: codec._encode_revenue(account.revenue, ids)),
        "alert memory": (account.alerts, lambda: codec._encode_alerts(account.alerts)),
    }


def user_parts(account: Account) -> tuple[Any, ...]:
    usage = account.usage
    return (usage.user_keys, usage.user_last, usage.user_masks)


def day_parts(account: Account) -> tuple[Any, ...]:
    usage = account.usage
    return (
        usage.bucket_days,
        usage.bucket_activity,
        usage.bucket_users,
        usage.last_days,
        usage.last_day_users,
    )


def walk(roots: tuple[Any, ...], seen: set[int], shared: set[int]) -> int:
    """Bytes of the objects reachable from `roots` (not counting the tuple holding them) not in
    `seen` or `shared` (adds them to `seen`)."""
    total, stack = 0, list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or id(obj) in shared:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            stack += obj
        else:
            # A compiled (mypyc) class has no `__slots__`; its dataclass fields name its attributes.
            names = getattr(obj, "__dataclass_fields__", None) or getattr(obj, "__slots__", ())
            stack += [getattr(obj, name) for name in names if hasattr(obj, name)]
    return total


RESIDENT_PARTS: tuple[tuple[str, Callable[[Account], tuple[Any, ...]]], ...] = (
    ("dedupe ids (seen)", lambda a: (a.seen,)),
    ("usage: per-user activity", user_parts),
    ("usage: day buckets", day_parts),
    (
        "usage: per-feature day counters",
        lambda a: (a.usage.feature_names, a.usage.feature_pairs, a.usage.feature_ends),
    ),
    ("usage: features, window sums", lambda a: (a.usage.features, a.usage._sums)),
    ("tickets (support)", lambda a: (a.support,)),
    ("surveys (sentiment)", lambda a: (a.sentiment,)),
    ("subscriptions (revenue)", lambda a: (a.revenue,)),
    ("alert memory", lambda a: (a.alerts,)),
    ("the rest (shells, id, terms)", lambda a: (a,)),
)


def resident_parts(accounts: list[Account]) -> dict[str, float]:
    """Bytes per account of each part (see `walk`), the rest last."""
    reached: dict[int, int] = {}
    for account in accounts:
        seen: set[int] = set()
        walk((account,), seen, set())
        for key in seen:
            reached[key] = reached.get(key, 0) + 1
    shared = {key for key, count in reached.items() if count > 1}
    totals = dict.fromkeys((name for name, _ in RESIDENT_PARTS), 0)
    for account in accounts:
        seen = set()
        for name, part in RESIDENT_PARTS:
            totals[name] += walk(part(account), seen, shared)
    return {name: total / max(1, len(accounts)) for name, total in totals.items()}


def decoded_rss(raw: list[bytes]) -> int:
    """Bytes of RSS a fresh process adds when it decodes these records and keeps the accounts
    (as a recovering worker does; a fresh process, so no freed memory of this one is reused)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "records.msgpack"
        path.write_bytes(msgpack.packb(raw, use_bin_type=True))
        done = subprocess.run(
            [sys.executable, __file__, "--decoded-rss", str(path)], capture_output=True, text=True
        )
    if done.returncode:
        raise SystemExit(f"decoding in a child failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.split()[0])


def child_decoded_rss(path: Path) -> None:
    raw = msgpack.unpackb(path.read_bytes(), raw=False)
    codec.decode_account(raw[0])  # one-off costs (lazy imports, caches) are not per account
    gc.collect()
    before = rss()
    decoded = [codec.decode_account(r) for r in raw]
    gc.collect()
    print(rss() - before, f"({len(decoded)} accounts)")


def kept_snapshots(engines: list[PartitionEngine]) -> int:
    """Bytes the engines keep per account once every snapshot is taken, as a worker publishes
    them (each account's last one, compressed, in place of its evaluation; tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    for engine in engines:
        for account_id in engine.take_dirty():
            engine.snapshot(account_id)
    gc.collect()
    kept, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return kept


def main() -> None:
    if sys.argv[1:2] == ["--decoded-rss"]:
        child_decoded_rss(Path(sys.argv[2]))
        return
    options = parser(__doc__)
    add_portfolio(options, accounts=500, months=2, seed=7)
    add_json(options)
    args = options.parse_args()

    path = portfolio(args.accounts, args.months, args.seed)
    config = ScoreConfig()
    stores = [WriteLog() for _ in range(PARTITIONS)]
    engines = [PartitionEngine(config, store) for store in stores]
    records = pickled = encoded = count = 0
    offsets = realistic_offsets()

    def write_back() -> None:
        nonlocal records, pickled, encoded
        for _, account in written_back(stores):
            records += 1
            pickled += len(pickle.dumps((1, account), protocol=pickle.HIGHEST_PROTOCOL))
            encoded += len(codec.encode_account(account, offsets))

    for event in events(path):
        engines[partition_of(event.account_id, PARTITIONS)].process(event)
        count += 1
        if count % BATCH == 0:
            write_back()
    write_back()

    accounts = [account for store in stores for account in store.values()]
    n = len(accounts)
    kept = kept_snapshots(engines) / n
    print(f"state_size: {path.name}: {count:,} events, {n} accounts")
    print(f"revision {git_revision()}, load {load()}")
    print()
    print(f"{'bytes per account (final state)':32} {'pickle':>9} {'codec':>9}")
    totals: dict[str, list[int]] = {}
    for account in accounts:
        for name, (obj, array) in parts(account).items():
            sizes = totals.setdefault(name, [0, 0])
            sizes[0] += len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
            sizes[1] += len(msgpack.packb(array(), use_bin_type=True))
    for name, (p, c) in totals.items():
        print(f"{name:32} {p / n:9.0f} {c / n:9.0f}")
    whole_p = sum(len(pickle.dumps((1, a), protocol=pickle.HIGHEST_PROTOCOL)) for a in accounts)
    whole_c = sum(len(codec.encode_account(a, offsets)) for a in accounts)
    print(f"{'whole record':32} {whole_p / n:9.0f} {whole_c / n:9.0f}")
    print()
    print(f"changelog (batches of {BATCH:,} events, {PARTITIONS} partitions):")
    print(f"  records written        {records:,} ({1000 * records / count:.0f} per 1,000 events)")
    print(f"  bytes per record       pickle {pickled / records:,.0f}   codec {encoded / records:,.0f}")
    print(f"  bytes per event        pickle {pickled / count:,.0f}   codec {encoded / count:,.0f}")

    raw = [codec.encode_account(a, offsets) for a in accounts]
    del accounts, engines
    for store in stores:
        store.clear()
    grown = decoded_rss(raw)
    gc.collect()
    tracemalloc.start()
    decoded = [codec.decode_account(r) for r in raw]
    resident, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print()
    print(f"resident Python objects of {len(decoded)} decoded accounts: {resident / n:,.0f} B per account")
    print(f"RSS a fresh process adds decoding them: {grown / n:,.0f} B per account")
    print("where they go (getsizeof walk, objects shared between accounts left out):")
    parts_resident = resident_parts(decoded)
    for name, size in parts_resident.items():
        print(f"  {name:32} {size:9,.0f}")
    print(f"  {'sum':32} {sum(parts_resident.values()):9,.0f}")
    print(f"the partition engine's last snapshot kept per account (compressed): {kept:,.0f} B")
    write_json(
        args.json,
        {
            "accounts": n,
            "events": count,
            "changelog_bytes_per_record": encoded / records,
            "record_bytes_per_account": whole_c / n,
            "tracemalloc_bytes_per_account": resident / n,
            "rss_bytes_per_account": grown / n,
            "kept_snapshot_bytes_per_account": kept,
        },
    )


if __name__ == "__main__":
    main()
