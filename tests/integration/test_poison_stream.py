"""The poison corpus interleaved in a live stream, through the real broker: the worker keeps
running, every bad message is in the dead-letter topic with its reason, only bad ones are there,
and the final snapshots and alert ids equal offline's over the valid events alone."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from test_stream import PARTITIONS, Deployment, History, assert_same_as_offline, deploy, history, short

from streamer.contract.events import EVENT_FAMILY
from streamer.contract.outputs import DeadLetter
from streamer.partitioning import partition_of
from tests.poison import POISONS, Poison, occurred_at, reused_id, started, usage
from tests.stream.test_bounded_batches import batch, forged

pytestmark = pytest.mark.integration

__all__ = ["deploy", "history"]  # fixtures used here

# (topic, value, key, partition or None for the producer's choice, the poison or None, headers)
Outgoing = tuple[str, bytes | None, bytes | None, int | None, Poison | None, list[tuple[str, bytes]]]


def plan(deployment: Deployment, events: History) -> list[Outgoing]:
    """The valid history in file order, each poison twice in between (dated like its neighbour),
    a reused event id every 400 lines, some closing events sent keyless, with an empty key or to
    another partition (re-routed by the worker, not dead-lettered), and every 300th line with a
    forged re-routing origin, one per account's partition (different messages under one origin:
    each is applied)."""
    lines = events.lines
    closing = {orjson.loads(line)["account_id"]: line for line in lines if b"-closing" in line}
    every = max(1, (len(lines) - len(closing)) // (2 * len(POISONS) + 1))
    out: list[Outgoing] = []
    placed = 0
    rerouted = 0
    for number, line in enumerate(lines, start=1):
        record = orjson.loads(line)
        topic = deployment.topic(EVENT_FAMILY[record["event_type"]])
        account = record["account_id"]
        if line in closing.values() and rerouted < 6:
            # Keyless, keyed by the account on a partition another partitioner chose, or with an
            # empty key (many producers' "no key"; it was dead-lettered as disagreeing).
            home = partition_of(account, PARTITIONS)
            if rerouted % 3 == 1:
                out.append((topic, line, account.encode(), (home + 1) % PARTITIONS, None, []))
            elif rerouted % 3 == 2:
                out.append((topic, line, b"", (home + 3) % PARTITIONS, None, []))
            else:
                out.append((topic, line, None, (home + 2) % PARTITIONS, None, []))
            rerouted += 1
            continue
        forged = [
            ("healthstream-origin", f"{(partition_of(account, PARTITIONS) + 1) % PARTITIONS}:7:0".encode())
        ]
        out.append((topic, line, account.encode(), None, None, forged if number % 300 == 150 else []))
        if number % 400 == 200 and b"-closing" not in line:
            when = datetime.fromisoformat(record["occurred_at"]) + timedelta(minutes=1)
            duplicate = reused_id(record, when.strftime("%Y-%m-%dT%H:%M:%SZ"))
            out.append((deployment.topic("usage"), duplicate, account.encode(), None, None, []))
        if number % every == 0 and placed < 2 * len(POISONS) and b"-closing" not in line:
            poison = POISONS[placed % len(POISONS)]
            value = poison.value(occurred_at(line))
            out.append((deployment.topic(poison.family), value, poison.message_key(), None, poison, []))
            placed += 1
    assert placed == 2 * len(POISONS) and rerouted == 6
    forged_origins = Counter(tuple(headers) for *_, headers in out if headers)
    assert max(forged_origins.values()) > 1, forged_origins  # two messages under one origin
    return out


async def publish(bootstrap: str, outgoing: list[Outgoing]) -> list[tuple[int, int]]:
    """Send in order (no linger, as `streamer replay`); return each message's (partition, offset)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=0,
        acks="all",
        enable_idempotence=True,
        max_request_size=2 * 1024 * 1024,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, partition=partition, headers=headers or None)
            for topic, value, key, partition, _, headers in outgoing
        ]
        await producer.flush()
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(meta.partition, meta.offset) for meta in metadata]


def group_state(deployment: Deployment) -> tuple[str, int] | None:
    """The consumer group's state and size; None while the broker has no coordinator yet."""
    try:
        return deployment.bus.group(deployment.app_id)
    except Exception:
        return None


def test_a_poisoned_live_stream_dead_letters_the_bad_and_gives_offlines_answers_for_the_rest(
    deploy: Callable[..., Deployment], history: Callable[[int], History]
) -> None:
    events = history(5)
    deployment = deploy()
    worker = deployment.start_worker()
    deployment.wait_for(
        "the worker's group to be stable", lambda: group_state(deployment) == ("Stable", 1), 120
    )
    outgoing = plan(deployment, events)
    places = deployment.bus.run(publish(deployment.bootstrap, outgoing))
    deployment.settle(worker)
    assert worker.alive, worker.tail()

    letters = deployment.dead_letters()
    bad = [
        (topic, place, poison, value)
        for (topic, value, _, _, poison, _), place in zip(outgoing, places, strict=True)
        if poison is not None
    ]
    by_place: dict[tuple[str, int, int], dict[str, Any]] = {}
    for letter in letters:
        DeadLetter.model_validate(letter)
        by_place[(letter["topic"], letter["partition"], letter["offset"])] = letter
    assert len(by_place) == len(letters), "one dead letter per message"
    expected = {(topic, partition, offset): poison for topic, (partition, offset), poison, _ in bad}
    sent = {(topic, partition, offset): value for topic, (partition, offset), _, value in bad}
    unexpected = sorted(set(by_place) - set(expected))
    assert not unexpected, [short(by_place[place]) for place in unexpected[:5]]
    missing = sorted(set(expected) - set(by_place))
    assert not missing, [expected[place].name for place in missing]
    for place, poison in expected.items():
        letter = by_place[place]
        assert poison.reason in letter["error"], (poison.name, letter["error"])
        value = sent[place] or b""  # the message as sent, its line ends included
        assert (letter["original_bytes"], letter["original_sha256"]) == (
            len(value),
            sha256(value).hexdigest(),
        )
        assert len(orjson.dumps(letter)) < 200_000

    assert_same_as_offline(deployment, events)
    # The worker logged no failure and is still consuming (it exits on one).
    assert "the worker exits" not in worker.text()


def applied_live(deployment: Deployment, events: Path) -> None:
    """A worker started, `events` published, and every one of them applied."""
    worker = deployment.start_worker()
    deployment.replay(events)
    deployment.settle(worker)


def test_made_up_subscription_ids_never_block_an_accounts_real_subscription(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """Renewals naming 65 subscriptions that never started (one past `limits.max_subscriptions`),
    then a real one: the 65th made-up id is dead-lettered, the real subscription counts."""

    def line(event_type: str, event_id: str, when: str, **fields: object) -> bytes:
        envelope = {"event_id": event_id, "event_type": event_type, "account_id": "acme", "occurred_at": when}
        return orjson.dumps(envelope | fields)

    lines = [
        line(
            "subscription.renewed",
            f"r{n}",
            "2025-03-01T00:00:00Z",
            subscription_id=f"fake-{n}",
            term_end="2026-03-01T00:00:00Z",
        )
        for n in range(65)
    ]
    start = {
        "subscription_id": "real",
        "plan": "pro",
        "amount": "250.00",
        "currency": "USD",
        "interval": "month",
    }
    lines.append(line("subscription.started", "s1", "2025-03-02T00:00:00Z", **start))
    events = tmp_path / "made-up.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    deployment = deploy()
    applied_live(deployment, events)
    [letter] = deployment.dead_letters()
    assert "'fake-64', that never started" in letter["error"], letter["error"]
    assert deployment.final_snapshots()["acme"]["mrr"] == "250.00"


def test_starting_subscriptions_known_from_cancellations_stays_within_the_cap_live(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """Cancel 64 made-up ids, start them, then 64 more: each start named a known id, so no cap
    was checked; repeated, the account's record passed the changelog's 8 MiB and the worker
    stopped at every restart. The 65th started subscription is dead-lettered."""

    def line(event_type: str, event_id: str, sub: str, **fields: object) -> bytes:
        envelope = {"event_id": event_id, "event_type": event_type, "account_id": "acme"}
        return orjson.dumps(
            envelope | {"occurred_at": "2025-03-01T00:00:00Z", "subscription_id": sub} | fields
        )

    start = {"plan": "pro", "amount": "1.00", "currency": "USD", "interval": "month"}
    lines = []
    for cycle in range(2):
        subs = [f"c{cycle}-{n}" for n in range(64)]
        lines += [
            line("subscription.canceled", f"x{sub}", sub, effective_at="2025-04-01T00:00:00Z") for sub in subs
        ]
        lines += [line("subscription.started", f"s{sub}", sub, **start) for sub in subs]
    events = tmp_path / "cycles.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    deployment = deploy()
    applied_live(deployment, events)
    letters = deployment.dead_letters()
    assert len(letters) == 64 and all("limits.max_subscriptions" in d["error"] for d in letters), letters[:2]
    assert deployment.final_snapshots()["acme"]["mrr"] == "64.00"  # 64 at 1.00 until their cancellations


def test_a_subscription_that_never_changed_keeps_its_price_past_the_account_step_cap_live(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """Past limits.max_account_steps the oldest steps go; an annual subscription's only step was
    the oldest, and its price went with it (MRR 1,201 read 201, then a contraction alert)."""
    config = tmp_path / "steps.toml"
    config.write_text("[limits]\nmax_account_steps = 12\n")

    def line(event_type: str, event_id: str, day: int, sub: str, amount: str) -> bytes:
        fields = {
            "subscription_id": sub,
            "plan": "pro",
            "amount": amount,
            "currency": "USD",
            "interval": "month",
        }
        when = f"2025-03-{day:02d}T00:00:00Z"
        envelope = {"event_id": event_id, "event_type": event_type, "account_id": "acme", "occurred_at": when}
        return orjson.dumps(envelope | fields)

    lines = [line("subscription.started", "annual", 1, "annual", "1000.00")]
    lines += [line("subscription.started", f"m{n}", 1, f"metered{n}", "100.00") for n in range(2)]
    lines += [
        line("subscription.changed", f"c{n}", 2 + n, f"metered{n % 2}", f"{100 + n % 2}.00")
        for n in range(26)
    ]
    events = tmp_path / "steps.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    deployment = deploy(worker_env={"HEALTHSTREAM_SCORE_CONFIG": str(config)})
    applied_live(deployment, events)
    assert deployment.dead_letters() == []
    assert deployment.final_snapshots()["acme"]["mrr"] == "1201.00"
    assert [a["rule"] for a in deployment.alerts() if a["rule"] == "mrr_contraction"] == []


def test_a_subscription_past_what_an_account_record_holds_is_dead_lettered_live(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """Reporting in rupiah, a billion dollars a week is 69 trillion a month: 64 such
    subscriptions would not fit the 64 bits of an account's record, and one alone stopped the
    worker at its checkpoint, again at every restart. It is refused; the next event counts."""
    config = tmp_path / "idr.toml"
    config.write_text('[currency]\nreporting = "IDR"\nrates = { USD = "16000" }\n')

    def line(event_id: str, amount: str) -> bytes:
        fields = {"subscription_id": event_id, "plan": "ent", "amount": amount, "currency": "USD"}
        envelope = {"event_id": event_id, "event_type": "subscription.started", "account_id": "acct-idr"}
        return orjson.dumps(envelope | {"occurred_at": "2024-01-02T00:00:00Z", "interval": "week"} | fields)

    events = tmp_path / "idr.jsonl"
    events.write_bytes(line("huge", "1000000000") + b"\n" + line("fine", "1000") + b"\n")
    deployment = deploy(worker_env={"HEALTHSTREAM_SCORE_CONFIG": str(config)})
    worker = deployment.start_worker()
    deployment.replay(events)
    deployment.settle(worker)  # fails at once if the worker exits
    [letter] = deployment.dead_letters()
    assert "is 69333333333333.33 IDR a month, more than the 100000000000.00" in letter["error"], letter
    assert deployment.final_snapshots()["acct-idr"]["mrr"] == "69333333.33"  # the second: 1,000 USD a week


def test_a_cancellation_dated_before_its_start_ends_the_subscription_live(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """ "Signed up by mistake": the cancellation was accepted and ignored, and the account paid
    100 a month for good, in the worker as offline."""
    start = {"subscription_id": "s1", "plan": "team", "amount": "100", "currency": "USD", "interval": "month"}
    lines = [
        {
            "event_id": "c1",
            "event_type": "subscription.started",
            "occurred_at": "2024-03-10T12:00:00Z",
            **start,
        },
        {
            "event_id": "c2",
            "event_type": "subscription.canceled",
            "occurred_at": "2024-03-10T13:00:00Z",
            "subscription_id": "s1",
            "effective_at": "2024-03-09T00:00:00Z",
        },
    ]
    events = tmp_path / "mistake.jsonl"
    events.write_bytes(b"".join(orjson.dumps({"account_id": "acct-cx", **line}) + b"\n" for line in lines))
    deployment = deploy()
    applied_live(deployment, events)
    assert deployment.dead_letters() == []
    snapshot = deployment.final_snapshots()["acct-cx"]
    assert snapshot["mrr"] == "0.00", snapshot  # it never paid: not churned either
    assert snapshot["lifecycle_stage"] == "onboarding", snapshot


def test_an_earlier_start_arriving_last_moves_a_clamped_cancellation_live(
    deploy: Callable[..., Deployment], tmp_path: Path
) -> None:
    """A restart and a cancellation dated before every start, then (within the lateness) the
    first start: the cancellation stayed clamped to the restart, and the worker published the
    account churned where `offline --sort` has it paying 100 a month."""
    sub = {"subscription_id": "s2", "plan": "pro", "currency": "USD"}
    restart = {"event_id": "e-6", "event_type": "subscription.started", "occurred_at": "2026-11-02T12:00:00Z"}
    restart |= sub | {"amount": "1200", "interval": "year"}
    cancel = {
        "event_id": "e-17",
        "event_type": "subscription.canceled",
        "occurred_at": "2026-11-02T12:00:00Z",
    }
    cancel |= {"subscription_id": "s2", "effective_at": "2026-11-01T12:00:00Z"}
    early = {"event_id": "e-18", "event_type": "subscription.started", "occurred_at": "2026-11-02T00:00:00Z"}
    early |= sub | {"amount": "250", "interval": "month"}
    first, last = tmp_path / "first.jsonl", tmp_path / "last.jsonl"
    first.write_bytes(
        b"".join(orjson.dumps({"account_id": "acct-f1", **e}) + b"\n" for e in (restart, cancel))
    )
    last.write_bytes(orjson.dumps({"account_id": "acct-f1", **early}) + b"\n")
    deployment = deploy()
    worker = deployment.start_worker()
    deployment.replay(first)
    deployment.settle(worker)  # applied before the early start is even published
    deployment.replay(last)
    deployment.settle(worker)
    assert deployment.dead_letters() == []
    snapshot = deployment.final_snapshots()["acct-f1"]
    assert (snapshot["mrr"], snapshot["lifecycle_stage"]) == ("100.00", "onboarding"), snapshot


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("[weights]\nadoption = inf\n", "weights.adoption"),  # every score NaN: the projection raised
        ("[time]\nallowed_lateness_days = 1e300\n", "time.allowed_lateness_days"),  # state encoding raised
        ("[portfolio]\ncs_cost_per_month = '1e30'\n", "portfolio.cs_cost_per_month"),  # the view's months
    ],
)
def test_a_config_value_that_breaks_the_arithmetic_stops_the_worker_at_its_start(
    deploy: Callable[..., Deployment], tmp_path: Path, setting: str, key: str
) -> None:
    """Each passed validation, and the worker then exited with 70 at its first snapshot or
    checkpoint, again at every restart. Now it never starts: one line naming the key."""
    config = tmp_path / "hostile.toml"
    config.write_text(setting)
    deployment = deploy(worker_env={"HEALTHSTREAM_SCORE_CONFIG": str(config)})
    worker = deployment.start_worker()
    assert worker.proc.wait(timeout=120) != 0  # bounds a hang only
    assert f"{key}:" in worker.text() and "Traceback" not in worker.text(), worker.tail()
    assert not any(r.get("message") == "partition engine ready" for r in worker.records()), worker.tail()


def test_compressed_batches_that_would_expand_past_the_bound_are_dead_lettered_live(
    deploy: Callable[..., Deployment],
) -> None:
    """A few KB of zstd, gzip, lz4 or snappy that expand past the bound: aiokafka decompressed
    them whole in its fetcher, and a batch of a few hundred MB stopped the worker (MemoryError,
    or the OOM killer) before any check saw it, again at every restart. Each such record is
    dead-lettered with the reason, and the events after it on its partition count."""
    deployment = deploy(worker_env={"HEALTHSTREAM_MAX_BATCH_EXPANDED_MB": "2"})
    worker = deployment.start_worker()
    accounts = {codec: f"acct-{codec}" for codec in ("zstd", "gzip", "lz4", "snappy")}
    for codec, account in accounts.items():
        key = account.encode()
        sent = [
            (deployment.topic("subscriptions"), started(account, "2024-01-02T00:00:00Z", f"{codec}-1")),
            (deployment.topic("usage"), usage(account, "2024-01-02T01:00:00Z", f"{codec}-2", count=5)),
            # an event, then 3 MiB of JSON whitespace: a few KB once compressed
            (deployment.topic("usage"), usage(account, "2024-01-02T02:00:00Z", f"{codec}-bomb", count=900)),
            (deployment.topic("usage"), usage(account, "2024-01-02T03:00:00Z", f"{codec}-3", count=7)),
        ]
        values = [orjson.dumps(record) for _, record in sent]
        values[2] += b" " * (3 * 1024 * 1024)
        asyncio.run(
            publish_compressed(
                deployment.bootstrap,
                codec,
                [(topic, value, key) for (topic, _), value in zip(sent, values, strict=True)],
            )
        )
    deployment.settle(worker)  # fails at once if the worker exits
    letters = deployment.dead_letters()
    assert sorted(letter["topic"] for letter in letters) == [deployment.topic("usage")] * 4
    for codec in accounts:
        [letter] = [letter for letter in letters if f"was not read: {codec} batch" in letter["error"]]
        assert "expands past 2,097,152 bytes" in letter["error"], letter
    snapshots = deployment.final_snapshots()
    assert {snapshots[account]["metrics"]["events_28d"] for account in accounts.values()} == {12}


def test_a_header_name_that_is_not_utf8_is_read_and_its_event_counts_live(
    deploy: Callable[..., Deployment],
) -> None:
    """The broker takes a header name that is not UTF-8 (librdkafka and Go clients can write
    one); aiokafka decoded it strictly, and the worker's fetcher stopped at that record, again at
    every restart. Its event counts, and so do the ones around it, compressed or not."""
    deployment = deploy()
    worker = deployment.start_worker()
    accounts = {codec: f"acct-header-{codec}" for codec in ("none", "gzip")}
    for codec, account in accounts.items():
        key = account.encode()
        start = started(account, "2024-01-02T00:00:00Z", f"{codec}-1")
        asyncio.run(
            publish_compressed(
                deployment.bootstrap, "gzip", [(deployment.topic("subscriptions"), orjson.dumps(start), key)]
            )
        )
        values = [
            orjson.dumps(usage(account, f"2024-01-02T0{n}:00:00Z", f"{codec}-u{n}", count=n))
            for n in (1, 2, 3)
        ]
        raw = batch("none", values, headers={1: [("HDRX", b"v")]}, key=key)
        bad = forged(raw, b"HDRX", b"\xff\xfe\xfd\xfc", codec)
        asyncio.run(
            publish_raw(
                deployment.bootstrap, deployment.topic("usage"), partition_of(account, PARTITIONS), bad
            )
        )
    deployment.settle(worker)  # fails at once if the worker exits
    assert deployment.dead_letters() == []
    snapshots = deployment.final_snapshots()
    assert {snapshots[account]["metrics"]["events_28d"] for account in accounts.values()} == {6}


async def publish_raw(bootstrap: str, topic: str, partition: int, raw: bytes) -> None:
    """A record batch sent as its bytes are (what a client other than aiokafka may write)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        carrier = producer.create_batch()
        carrier.append(timestamp=None, key=None, value=b"-")
        carrier.close()
        carrier._buffer = bytearray(raw)  # what the producer sends as the batch's bytes
        await (await producer.send_batch(carrier, topic, partition=partition))
    finally:
        await producer.stop()


async def publish_compressed(bootstrap: str, codec: str, messages: list[tuple[str, bytes, bytes]]) -> None:
    """Each message in a batch of its own, compressed with `codec`."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", compression_type=codec, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        for topic, value, key in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
