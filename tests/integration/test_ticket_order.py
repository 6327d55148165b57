"""Ticket events in a hostile arrival order, through the real broker: the worker's final
snapshot is that of the same events in event-time order (`streamer offline --sort`).

Each arrival below once changed what the worker published: a reopen ahead of the opening it
follows left an open urgent ticket uncounted for good; a producer's retry of an opening with a
lower priority replaced the first opening's; an earlier opening arriving after the resolution
left the resolution time counted from the later one (24 h where it is 48 h).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from test_stream import Deployment, deploy, run_offline, snapshot_differences

__all__ = ["deploy"]  # a fixture used here

ACCOUNT = "acct-tickets"


def event(event_type: str, when: str, event_id: str, **fields: object) -> bytes:
    record = {"event_id": event_id, "event_type": event_type, "account_id": ACCOUNT, "occurred_at": when}
    return orjson.dumps(record | fields)


START = event(
    "subscription.started",
    "2025-03-01T00:00:00Z",
    "start",
    subscription_id="s1",
    plan="pro",
    amount="500.00",
    currency="USD",
    interval="month",
)
# Published in two parts, the worker settling in between: within one batch the worker applies a
# partition's events in event-time order, so only a later batch can bring an earlier event late.
FIRST = [
    START,
    event("ticket.reopened", "2025-03-07T10:00:00Z", "t1-reopen", ticket_id="t1"),
    event("ticket.opened", "2025-03-08T08:00:00Z", "t2-open", ticket_id="t2", priority="urgent"),
    event("ticket.opened", "2025-03-10T12:00:00Z", "t3-open", ticket_id="t3", priority="normal"),
    event("ticket.resolved", "2025-03-11T12:00:00Z", "t3-resolve", ticket_id="t3", contacts=2),
]
LATE = [
    # t1: its resolution and its opening after the reopen: open, urgent, resolved in 25 h
    event("ticket.resolved", "2025-03-06T10:00:00Z", "t1-resolve", ticket_id="t1", contacts=1),
    event("ticket.opened", "2025-03-05T09:00:00Z", "t1-open", ticket_id="t1", priority="urgent"),
    # t2: a producer's retry an hour after the opening says low: still urgent
    event("ticket.opened", "2025-03-08T09:00:00Z", "t2-retry", ticket_id="t2", priority="low"),
    # t3: an earlier opening after the resolution: resolved 48 h after it was opened
    event("ticket.opened", "2025-03-09T12:00:00Z", "t3-open-earlier", ticket_id="t3", priority="normal"),
]


def test_ticket_events_out_of_order_give_offlines_snapshot(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    first, late, whole = tmp_path / "first.jsonl", tmp_path / "late.jsonl", tmp_path / "all.jsonl"
    first.write_bytes(b"\n".join(FIRST) + b"\n")
    late.write_bytes(b"\n".join(LATE) + b"\n")
    whole.write_bytes(first.read_bytes() + late.read_bytes())
    offline = run_offline(whole, tmp_path / "offline")
    metrics = offline.accounts[ACCOUNT]["metrics"]
    assert metrics["open_tickets"] == 2  # t1 (reopened) and t2
    assert metrics["open_tickets_by_priority"]["urgent"] == 2
    assert metrics["art_hours_90d"] == (25 + 48) / 2
    assert metrics["fcr_90d"] == 0.5

    deployment = deploy()
    worker = deployment.start_worker()
    deployment.replay(first)
    deployment.settle(worker)
    deployment.replay(late)
    deployment.settle(worker)
    # The state, and so the snapshot, is the same in any order within the allowed lateness; the
    # alerts are not (README, *State, event time and delivery*): a late event is scored at the
    # account's latest scoring, so its support_backlog is raised then, not at the tick it crossed.
    streamed = deployment.final_snapshots()[ACCOUNT]
    assert streamed == offline.accounts[ACCOUNT], snapshot_differences(streamed, offline.accounts[ACCOUNT])
