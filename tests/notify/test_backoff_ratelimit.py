"""Backoff schedule and the per-destination token bucket."""

from __future__ import annotations

import pytest

from streamer.notify.backoff import delay, schedule
from streamer.notify.config import Retry
from streamer.notify.ratelimit import TokenBucket

from .fakes import FakeClock


def test_backoff_doubles_up_to_the_cap() -> None:
    retry = Retry(initial_seconds=1, multiplier=2, max_seconds=10)
    assert schedule(retry, 6) == [1, 2, 4, 8, 10, 10]
    assert delay(retry, 10_000) == 10  # no overflow however long the outage


def test_jitter_stays_within_its_fraction() -> None:
    retry = Retry(initial_seconds=4, jitter=0.25)
    assert (delay(retry, 1, 0.0), delay(retry, 1, 0.5), delay(retry, 1, 1.0)) == (3.0, 4.0, 5.0)
    with pytest.raises(ValueError, match="start at 1"):
        delay(retry, 0)


async def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_second=2, burst=3, clock=clock, sleep=clock.sleep)
    waits = [await bucket.take() for _ in range(5)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert clock.now == pytest.approx(1.0)


async def test_bucket_refills_while_idle_but_not_beyond_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_second=1, burst=2, clock=clock, sleep=clock.sleep)
    assert bucket.try_take() and bucket.try_take() and not bucket.try_take()
    clock.now += 100
    assert bucket.try_take() and bucket.try_take() and not bucket.try_take()
