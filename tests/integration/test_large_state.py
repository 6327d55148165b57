"""State that outgrows the broker's record limits, through the real broker.

1,000 survey answers of one account, each with a respondent id and an event id of 128 4-byte
characters, and their comments, make its record about 1.2 MB: over the 1 MiB a topic takes by
default. The broker refused the changelog record and the worker exited, at every restart. Now
the changelog takes it, and a worker that lost its local store recovers the account from it.

Accounts that use thousands of long, different feature names made a partition's stored peer
references (one record) over 8 MiB: the same crash loop. A reference now keeps the features most
members used, and the record the newest references that fit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
from test_stream import (
    KILLED_MEMBER_LEAVES_SOON,
    PARTITIONS,
    Deployment,
    Worker,
    assert_same_as_offline,
    deploy,
    run_offline,
)

from streamer.partitioning import partition_of
from streamer.stream.topics import CHANGELOG_RECORD_MAX_BYTES, changelog_topic
from tests.poison import huge_mrr_lines

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

    deployment = deploy(worker_env=KILLED_MEMBER_LEAVES_SOON)
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


def through_a_worker(
    deploy: Callable[..., Deployment], tmp_path: Path, lines: list[bytes]
) -> tuple[Deployment, Worker]:
    """`lines` scored by `streamer offline` (into tmp_path/offline) and by one worker, whose
    final answers must be offline's; fails at once if the worker exits."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    offline = run_offline(events, tmp_path / "offline")
    deployment = deploy()
    worker = deployment.start_worker()
    deployment.replay(events)
    deployment.settle(worker)
    assert_same_as_offline(deployment, offline)
    return deployment, worker


def test_accounts_inventing_thousands_of_long_feature_names_do_not_stop_the_worker(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """24 paying accounts of one partition, each with 256 features of 128 4-byte characters (all
    within the contract and [limits]), then ten days of stream time: ten peer references."""
    home = partition_of("acct-0", PARTITIONS)
    accounts = [a for a in (f"acct-{n}" for n in range(400)) if partition_of(a, PARTITIONS) == home][:24]
    lines = [started(account, "2025-03-01T00:00:00Z") for account in accounts]
    for account in accounts:
        lines += [
            event(
                "usage.recorded",
                account,
                "2025-03-01T01:00:00Z",
                f"{account}-u{n}",
                user_id="u",
                feature=wide(account, n),
            )
            for n in range(256)
        ]
    last = accounts[0]
    for day in range(2, 12):  # every input family moves on, a day at a time
        when = f"2025-03-{day:02d}T12:00:00Z"
        lines += [
            event("usage.recorded", last, when, f"u-{day}", user_id="u", feature="reports"),
            event("account.updated", last, when, f"p-{day}", name=f"day {day}"),
            event("ticket.opened", last, when, f"t-{day}", ticket_id=f"t{day}", priority="low"),
            event("survey.answered", last, when, f"s-{day}", survey="nps", score=9, respondent_id="r"),
        ]
    deployment, worker = through_a_worker(deploy, tmp_path, lines)
    topic = changelog_topic(deployment.settings(), "clocks")
    peers = [r for r in deployment.bus.poll(topic) if (r.key or b"").strip(b'"') == f"peers-{home}".encode()]
    assert peers and max(len(r.value or b"") for r in peers) < CHANGELOG_RECORD_MAX_BYTES // 2
    assert "MessageSizeTooLarge" not in worker.text()


async def projected_mrr(deployment: Deployment) -> str:
    """The portfolio's current MRR as the view computes it from the workers' projection."""
    from redis.asyncio import Redis

    from streamer.projection.redis_reader import ProjectionReader
    from streamer.view import portfolio

    redis = Redis.from_url(deployment.redis_url)
    try:
        reader = ProjectionReader(redis, deployment.app_id)
        return str(portfolio.now(await reader.partitions(), await reader.meta())["current"]["mrr"])
    finally:
        await redis.aclose()


def test_a_partition_whose_sums_pass_64_bits_keeps_the_worker_and_the_view_going(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """240 accounts of 64 subscriptions at a billion GBP a week, each within every bound: a
    partition's sums pass 64 bits of micro-units. The projection could not write them (orjson
    takes 64-bit integers only) and the worker stopped, again at every restart."""
    deployment, worker = through_a_worker(deploy, tmp_path, huge_mrr_lines(240))
    expected = orjson.loads((tmp_path / "offline" / "portfolio.json").read_bytes())["current"]["mrr"]
    deployment.wait_for(
        "the projection's portfolio MRR to be offline's",
        lambda: asyncio.run(projected_mrr(deployment)) == expected,
        120,
    )
    assert "exits with 70" not in worker.text()
