"""What the peers share: the command line every peer takes (the benchmark starts them all the
same way) and the faust peers' app, table and topics.

    python PEER.py --bootstrap 127.0.0.1:9092 --group G --out OUT_TOPIC --state-dir DIR IN_TOPIC...

Imported by the peers as a sibling module (their folder is on `sys.path` when run as scripts),
so importing it needs nothing beyond the standard library: the Quix Streams peer runs in its own
venv without faust, which `faust_peer` imports only when called.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any


def peer_arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--group", required=True, help="consumer group (and app id)")
    parser.add_argument("--out", required=True, help="output topic")
    parser.add_argument("--state-dir", required=True, help="where the peer keeps its state (RocksDB)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the topics")
    parser.add_argument("--commit-interval", type=float, default=1.0, help="seconds between commits")
    parser.add_argument("inputs", nargs="+", help="input topics")
    return parser.parse_args()


@dataclass
class FaustPeer:
    """A faust app over the input topics with the per-account table (RocksDB with a changelog)
    and the output topic, all raw bytes; the peer adds its agent, then calls `run`."""

    app: Any
    table: Any
    source: Any
    out: Any

    def run(self) -> None:
        """Run the worker until killed (the benchmark watches the group's commits)."""
        import faust

        faust.Worker(self.app, loglevel="warning", quiet=True).execute_from_commandline()


def faust_peer(args: argparse.Namespace) -> FaustPeer:
    import faust  # here, not at the top: the Quix Streams peer imports this module without faust

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="rocksdb://",
        datadir=args.state_dir,
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        broker_commit_interval=args.commit_interval,
    )
    schema: Any = faust.Schema(key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw")
    table = app.Table("accounts", schema=schema, key_type=str, value_type=bytes, partitions=args.partitions)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    return FaustPeer(app, table, app.topic(*args.inputs, **raw), app.topic(args.out, **raw))
