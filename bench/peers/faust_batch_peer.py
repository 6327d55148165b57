"""faust peer: the framework's batch idiom with a small per-account state, for comparison.

`take_events` batches of the four input topics; per batch and account one table write (event
count and latest event time, RocksDB with a changelog) and one output record. Runs until killed;
the benchmark watches its consumer group's commits. The same work as the Quix Streams peer, with
the faust version healthstream runs on.

    python faust_batch_peer.py --bootstrap 127.0.0.1:9092 --group G --out OUT --state-dir DIR IN...
"""

from __future__ import annotations

import weakref
from typing import Any

import orjson
from common import faust_peer, peer_arguments
from faust.streams import _current_event


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0])
    peer = faust_peer(args)
    app, table, out = peer.app, peer.table, peer.out

    @app.agent(peer.source)
    async def count(stream: Any) -> None:
        async for events in stream.take_events(4000, within=0.25):
            latest: dict[str, tuple[Any, int, str]] = {}  # account -> (an event of it, count, latest)
            for event in events:
                value = orjson.loads(event.value)
                account = str(value["account_id"])
                _, n, at = latest.get(account, (event, 0, ""))
                latest[account] = (event, n + 1, max(at, str(value["occurred_at"])))
            for account, (event, n, at) in latest.items():
                token = _current_event.set(weakref.ref(event))  # route the write to its partition
                try:
                    old = table.get(account)
                    total = n + (orjson.loads(old)["events"] if old else 0)
                    record = orjson.dumps({"account_id": account, "events": total, "latest": at})
                    table[account] = record
                finally:
                    _current_event.reset(token)
                await out.send(key=account.encode(), value=record)

    del count
    peer.run()


if __name__ == "__main__":
    main()
