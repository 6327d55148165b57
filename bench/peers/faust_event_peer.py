"""faust peer: the framework's per-event idiom with the same small per-account state.

An agent iterating its stream event by event: per event one table read and write (event count
and latest event time, RocksDB with a changelog) and one output record. What a faust app does
without batching; compare with faust_batch_peer.py. Runs until killed.

    python faust_event_peer.py --bootstrap 127.0.0.1:9092 --group G --out OUT --state-dir DIR IN...
"""

from __future__ import annotations

from typing import Any

import faust
import orjson
from common import peer_arguments


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0])
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
    source = app.topic(
        *args.inputs, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    out = app.topic(args.out, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(source)
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
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
