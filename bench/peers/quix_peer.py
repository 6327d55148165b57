"""Quix Streams peer: the same small per-account work as the faust batch peer, for comparison.

Consumes the four input topics (JSON), keeps a small per-account state (event count and the
latest event time, RocksDB with changelog topics: Quix Streams' defaults) and produces one
output per event. Runs until killed; the benchmark watches its consumer group's commits.

Not a dependency of healthstream: `stream_throughput.py --peers quix` runs it with the Python of
a separate virtualenv where `quixstreams` is installed (made on demand under bench/out/).

    python quix_peer.py --bootstrap 127.0.0.1:9092 --group G --out OUT_TOPIC --state-dir DIR IN_TOPIC...
"""

from __future__ import annotations

from typing import Any

from common import peer_arguments
from quixstreams import Application, State


def update(value: dict[str, Any], state: State) -> dict[str, Any]:
    """Count the account's events and remember its latest event time; one output per event."""
    count = int(state.get("count", 0)) + 1
    latest = max(str(state.get("latest", "")), str(value.get("occurred_at", "")))
    state.set("count", count)
    state.set("latest", latest)
    return {"account_id": value.get("account_id"), "events": count, "latest": latest}


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0])
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        commit_interval=args.commit_interval,
        loglevel="WARNING",
    )
    out = app.topic(args.out, value_serializer="json")
    for name in args.inputs:
        sdf = app.dataframe(app.topic(name, value_deserializer="json", key_deserializer="bytes"))
        sdf.apply(update, stateful=True).to_topic(out)
    app.run()


if __name__ == "__main__":
    main()
