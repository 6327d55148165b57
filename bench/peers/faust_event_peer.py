"""faust peer: the framework's per-event idiom with the same small per-account state.

An agent iterating its stream event by event: per event one table read and write (event count
and latest event time, RocksDB with a changelog) and one output record. What a faust app does
without batching; compare with faust_batch_peer.py. Runs until killed.

    python faust_event_peer.py --bootstrap 127.0.0.1:9092 --group G --out OUT --state-dir DIR IN...
"""

from __future__ import annotations

from typing import Any

import orjson
from common import faust_peer, peer_arguments


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0])
    peer = faust_peer(args)
    app, table, out = peer.app, peer.table, peer.out

    @app.agent(peer.source)
    async def count(stream: Any) -> None:
        async for value in stream:
            event = orjson.loads(value)
            account = str(event["account_id"])
            old = table.get(account)
            state = orjson.loads(old) if old else {"events": 0, "latest": ""}
            latest = max(state["latest"], str(event["occurred_at"]))
            record = orjson.dumps({"account_id": account, "events": state["events"] + 1, "latest": latest})
            table[account] = record
            await out.send(key=account.encode(), value=record)

    del count
    peer.run()


if __name__ == "__main__":
    main()
