"""The command line every peer takes (the benchmark starts them all the same way).

    python PEER.py --bootstrap 127.0.0.1:9092 --group G --out OUT_TOPIC --state-dir DIR IN_TOPIC...

Imported by the peers as a sibling module (their folder is on `sys.path` when run as scripts),
so it needs nothing beyond the standard library: the Quix Streams peer runs in its own venv.
"""

from __future__ import annotations

import argparse


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
