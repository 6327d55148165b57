"""No input can make one account's record larger than its changelog takes.

A record the broker refuses stops the worker, and it stops again at every restart. The largest
record valid input can build under the default `[limits]`: every capped collection full, every
id and text at its contract maximum in 4-byte characters, as many dedupe ids as may be
remembered, and more subscriptions (started, and known only from renewals) and steps than the
limits allow (the extra ones are refused or forgotten), with the numbers and times that take the
most bytes: the largest counts and amounts, usage of every feature on each of the 64 days kept,
and dedupe ids whose event times alternate a week apart at millisecond precision (their times are
stored as differences in arrival order: at time 0 for all, the test once counted 1 byte per id
where real ones take 5, and found 79% of the limit where valid input reached 88%).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from streamer.core.config import ScoreConfig
from streamer.core.keys import key_of
from streamer.core.revenue import MAX_EARLIER, MAX_PAYMENT_FAILURES, MAX_TERM_ENDS
from streamer.core.support import MAX_RESOLUTIONS
from streamer.offline.runner import OfflineRun
from streamer.state.codec import decode_account_record, encode_account
from streamer.stream.topics import CHANGELOG_RECORD_MAX_BYTES

WIDE = "\U0001f600"  # 4 bytes in UTF-8
ACCOUNT = "acct-" + WIDE * 123
START = datetime(2025, 3, 1, tzinfo=UTC)
USAGE_DAYS = 63  # with START's own: the 64 days an account's usage keeps
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


def longest(tag: str, number: int, length: int = 128) -> str:
    head = f"{tag}{number}-"
    return head + WIDE * (length - len(head))


def worst_case(limits: Any, limits_of_input: Any) -> Iterator[bytes]:
    """Events filling every cap of `limits` (and past those that refuse or forget)."""
    second = 0

    def event(event_type: str, **fields: Any) -> bytes:
        nonlocal second
        second += 1
        record = {
            "event_id": longest("e", second),
            "event_type": event_type,
            "account_id": ACCOUNT,
            "occurred_at": (START + timedelta(seconds=second)).isoformat(),
        }
        return orjson.dumps(record | fields)

    # Before the subscriptions: each event costs less while the account has few MRR steps.
    for day in range(USAGE_DAYS, 0, -1):  # every feature on every day kept, before START
        for feature in range(limits.max_features):
            at = START - timedelta(days=day) + timedelta(milliseconds=feature * 7919 % DAY_MS)
            record = {
                "event_id": longest("x", day * limits.max_features + feature),
                "event_type": "usage.recorded",
                "account_id": ACCOUNT,
                "occurred_at": at.isoformat(),
                "user_id": longest("u", feature % limits.max_users),
                "feature": longest("f", feature),
                "count": 1_000_000,
            }
            yield orjson.dumps(record)
    for ticket in range(limits.max_tickets + 10):
        yield event("ticket.opened", ticket_id=longest("t", ticket), priority="high")
    for _ in range(MAX_RESOLUTIONS + 2):  # every ticket kept resolved again and again
        for ticket in range(10, limits.max_tickets + 10):
            yield event("ticket.resolved", ticket_id=longest("t", ticket), contacts=100_000)
    for _ in range(MAX_PAYMENT_FAILURES + 10):  # a charge retried without end
        yield event("subscription.payment_failed", subscription_id=longest("s", 0), attempt=1)
    money = {"currency": "USD", "interval": "month", "seats": 10}
    for sub in range(limits.max_subscriptions + 4):
        yield event(
            "subscription.started",
            subscription_id=longest("s", sub),
            plan=longest("p", sub),
            amount=f"{900_000_000 + sub}.123457",
            **money,
        )
    for term in range(MAX_TERM_ENDS + 2):  # as many more known only from renewals
        for sub in range(limits.max_subscriptions + 4):
            end = (START + timedelta(days=400 + term)).isoformat()
            yield event("subscription.renewed", subscription_id=longest("x", sub), term_end=end)
        if term >= MAX_TERM_ENDS + 1 - MAX_EARLIER:  # the last a day apart: all kept as earlier terms
            second += 86_400
    rounds = limits.max_account_steps // limits.max_subscriptions + 2
    for step in range(rounds):
        for sub in range(limits.max_subscriptions):
            amount = f"{900_000_000 + step}.654321"
            # each with another plan and term end, the last rounds a day apart: each subscription
            # keeps its earlier states and term ends in full (one a day, `MAX_EARLIER`)
            yield event(
                "subscription.changed",
                subscription_id=longest("s", sub),
                plan=longest("p", step),
                amount=amount,
                term_end=(START + timedelta(days=400 + step)).isoformat(),
                **money,
            )
        if step >= rounds - MAX_EARLIER - 1:
            second += 86_400
    for user in range(limits.max_users + 10):
        yield event(
            "usage.recorded",
            user_id=longest("u", user),
            feature=longest("f", user % (limits.max_features + 10)),
        )
    for respondent in range(limits.max_respondents + 10):
        yield event(
            "survey.answered",
            survey="nps",
            respondent_id=longest("r", respondent),
            score=5,
            comment=WIDE * 4000,
        )
    for survey in ("csat", "ces"):
        for answer in range(limits.max_survey_answers + 10):
            score = 5 if survey == "csat" else 7
            yield event(
                "survey.answered",
                survey=survey,
                respondent_id=longest("r", answer),
                score=score,
                comment=WIDE * 4000,
            )
    attributes = {
        longest("a", n, 64): WIDE * limits_of_input.max_attribute_length
        for n in range(limits_of_input.max_attributes)
    }
    yield event(
        "account.updated",
        name=WIDE * 256,
        owner=WIDE * 256,
        segment=WIDE * 128,
        tier=WIDE * 128,
        attributes=attributes,
    )
    expires = (START + timedelta(days=30)).isoformat()
    yield event("health.override", band="red", reason=WIDE * 1000, author=WIDE * 256, expires_at=expires)


@pytest.mark.slow  # half a minute: run first, not alone at the end
def test_the_largest_account_record_valid_input_can_build_fits_its_changelog() -> None:
    config = ScoreConfig()
    limits = config.limits
    run = OfflineRun(config, 1)
    refused: list[dict[str, Any]] = []
    events = worst_case(limits, config.input)
    run.feed(events, on_snapshot=lambda _: None, on_alert=lambda _: None, on_dead_letter=refused.append)
    # the subscriptions past the cap: 4 started, 4 x (MAX_TERM_ENDS + 2) renewals of unknown ids
    assert len(refused) == 4 + 4 * (MAX_TERM_ENDS + 2)
    assert all("limits.max_subscriptions" in r["error"] for r in refused)
    account = run.engines[0].accounts[ACCOUNT]
    revenue = account.revenue
    assert sum(len(sub.points) for sub in revenue.subscriptions.values()) == limits.max_account_steps
    seen = account.seen
    start_ms = int(START.timestamp() * 1000)
    for number in range(limits.max_remembered_ids + 10):  # as many ids as a busy week may leave
        key = key_of(f"id-{number}")
        if key not in seen:  # arriving a week apart in turn, at odd milliseconds: 5 bytes each
            at = start_ms + number % 2 * WEEK_MS + number * 7919 % 1000 + 1
            seen.add(key, at, limits.max_remembered_ids)
    assert len(seen) <= limits.max_remembered_ids
    record = encode_account(account)
    assert len(record) < CHANGELOG_RECORD_MAX_BYTES * 0.8, len(record)  # with room for what grows
    assert encode_account(decode_account_record(record)[0]) == record  # and it reads back
