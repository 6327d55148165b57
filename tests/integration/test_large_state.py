"""An account whose state outgrows the broker's default record limit, through the real broker.

1,000 survey answers of one account, each with a respondent id and an event id of 128 4-byte
characters, and their comments, make its record about 1.2 MB: over the 1 MiB a topic takes by
default. The broker refused the changelog record and the worker exited, at every restart. Now
the changelog takes it, and a worker that lost its local store recovers the account from it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from test_stream import Deployment, assert_same_as_offline, deploy, run_offline

from streamer.stream.topics import changelog_topic

__all__ = ["deploy"]  # a fixture used here

BIG = "acct-big"
WIDE = "\U0001f600"  # 4 bytes in UTF-8
ANSWERS = 1_000


def wide(tag: str, number: int) -> str:
    head = f"{tag}{number}-"
    return head + WIDE * (128 - len(head))


def event(event_type: str, account: str, when: str, event_id: str, **fields: object) -> bytes:
    record = {"event_id": event_id, "event_type": event_type, "account_id": account, "occurred_at": when}
    return orjson.dumps(record | fields)


def started(account: str, when: str) -> bytes:
    fields = {"subscription_id": f"{account}-s", "plan": "pro", "amount": "500.00", "currency": "USD"}
    return event("subscription.started", account, when, f"{account}-start", interval="month", **fields)


def answers(first: int, count: int, day: int) -> list[bytes]:
    return [
        event(
            "survey.answered",
            BIG,
            f"2025-03-{day:02d}T{(n // 60) % 24:02d}:{n % 60:02d}:00Z",
            wide("e", n),
            survey="nps",
            respondent_id=wide("r", n),
            score=n % 11,
            comment=WIDE * 4000 if n % 200 == 0 else None,
        )
        for n in range(first, first + count)
    ]


def largest_record(deployment: Deployment) -> int:
    topic = changelog_topic(deployment.settings(), "accounts")
    return max(len(record.value or b"") for record in deployment.bus.poll(topic))


def test_an_account_over_a_megabyte_is_stored_and_recovered_by_a_worker_that_lost_its_store(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    before = [started(BIG, "2025-03-01T00:00:00Z"), started("acct-small", "2025-03-01T00:00:00Z")]
    before += answers(0, ANSWERS, 2)
    after = [
        *answers(ANSWERS, 5, 3),
        event("usage.recorded", "acct-small", "2025-03-03T12:00:00Z", "u1", user_id="u"),
    ]
    first_part, second_part, whole = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "all.jsonl"
    first_part.write_bytes(b"\n".join(before) + b"\n")
    second_part.write_bytes(b"\n".join(after) + b"\n")
    whole.write_bytes(first_part.read_bytes() + second_part.read_bytes())
    offline = run_offline(whole, tmp_path / "offline")

    deployment = deploy(
        worker_env={"HEALTHSTREAM_SESSION_TIMEOUT_S": "8", "HEALTHSTREAM_HEARTBEAT_INTERVAL_S": "1"}
    )
    first = deployment.start_worker("w1")
    deployment.replay(first_part)
    deployment.settle(first)  # fails at once if the worker exits
    assert largest_record(deployment) > 1024 * 1024
    first.kill()

    second = deployment.start_worker("w2", data_dir=tmp_path / "fresh")  # its local store lost
    deployment.replay(second_part)
    deployment.settle(second)
    assert_same_as_offline(deployment, offline)  # acct-big's answers came from the changelog
    assert "MessageSizeTooLarge" not in first.text() + second.text()
