"""Staging keeps the newest value per key, also when a failed write is merged back; staged alerts
are bounded to the ones Redis would keep (checked against a model of the `ALERT` script)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.projection.staging import AlertLimits, PartitionState, Staged


def snap(account: str, as_of: int, score: float) -> tuple[int, dict[str, object]]:
    return as_of, {"account_id": account, "score": score}


def test_an_older_snapshot_does_not_replace_a_newer_one() -> None:
    staged = Staged()
    staged.snapshot(*snap("a", 200, 50.0))
    staged.snapshot(*snap("a", 100, 10.0))
    assert orjson.loads(staged.snapshots["a"][1])["score"] == 50.0
    staged.snapshot(*snap("a", 200, 60.0))  # same instant, later batch: replaces
    assert orjson.loads(staged.snapshots["a"][1])["score"] == 60.0


def test_a_re_derived_snapshot_never_replaces_a_published_one_of_its_instant() -> None:
    """A recovery evaluates an account again at its last scoring instant, on state that may hold
    usage folded in since: staged over what was published then, it changed the account's row."""
    staged = Staged()
    staged.snapshot(*snap("a", 200, 50.0))
    staged.encoded("a", 200, orjson.dumps({"account_id": "a", "score": 51.0}), restaged=True)
    assert orjson.loads(staged.snapshots["a"][1])["score"] == 50.0 and not staged.restaged
    staged.encoded("b", 200, orjson.dumps({"account_id": "b", "score": 1.0}), restaged=True)
    staged.snapshot(*snap("b", 200, 2.0))  # published at the same instant: wins
    assert orjson.loads(staged.snapshots["b"][1])["score"] == 2.0 and not staged.restaged
    staged.encoded("a", 300, orjson.dumps({"account_id": "a", "score": 9.0}), restaged=True)  # later
    assert orjson.loads(staged.snapshots["a"][1])["score"] == 9.0 and staged.restaged == {"a"}
    staged.point("a", 200, b"published")
    staged.point("a", 200, b"re-derived", restaged=True)
    assert staged.points["a"][0] == (200, b"published") and not staged.restaged_points
    failed = Staged()
    failed.absorb(staged)  # a failed write merged back keeps what each value is
    assert failed.restaged == {"a"} and orjson.loads(failed.snapshots["a"][1])["score"] == 9.0


def test_partition_state_keeps_the_latest_stream_time() -> None:
    staged = Staged()
    staged.partition(0, PartitionState(200, b"new", b"[]"))
    staged.partition(0, PartitionState(100, b"old", b"[]"))
    assert staged.partitions[0].sums == b"new"


def test_absorb_puts_newer_values_over_a_failed_batch() -> None:
    failed = Staged()
    failed.snapshot(*snap("a", 100, 1.0))
    failed.snapshot(*snap("b", 300, 2.0))
    failed.alert("x", "a", 100, {"alert_id": "x"})
    failed.workers["w"] = {"processed": 1.0}
    later = Staged()
    later.snapshot(*snap("a", 200, 3.0))
    later.snapshot(*snap("b", 250, 4.0))
    later.workers["w"] = {"processed": 5.0}
    failed.absorb(later)
    assert orjson.loads(failed.snapshots["a"][1])["score"] == 3.0
    assert orjson.loads(failed.snapshots["b"][1])["score"] == 2.0
    assert failed.workers["w"] == {"processed": 5.0}
    assert len(failed) == 4


# -- staged alerts bounded to what Redis keeps ----------------------------------------------------

Alert = tuple[str, str, int, dict[str, Any]]  # alert id, account id, raised_at ms, the alert


class AlertScript:
    """A model of `scripts.ALERT`, written one alert at a time: ZADD to the overall and the
    account's set, trim each to its newest (the lowest (score, member) pairs go), and drop an
    alert's data once it is in neither set."""

    def __init__(self, limits: AlertLimits) -> None:
        self.limits = limits
        self.recent: dict[str, int] = {}
        self.mine: dict[str, dict[str, int]] = {}
        self.data: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, str] = {}

    @staticmethod
    def _oldest(zset: dict[str, int], keep: int) -> list[str]:
        ordered = sorted(zset, key=lambda member: (zset[member], member.encode()))
        return ordered[: max(0, len(ordered) - keep)]

    def write(self, alert_id: str, account_id: str, raised_at: int, alert: dict[str, Any]) -> None:
        self.data[alert_id] = alert
        self.owners[alert_id] = account_id
        self.recent[alert_id] = raised_at
        mine = self.mine.setdefault(account_id, {})
        mine[alert_id] = raised_at
        for gone in self._oldest(mine, self.limits.per_account):
            del mine[gone]
            if gone not in self.recent:
                del self.data[gone], self.owners[gone]
        for gone in self._oldest(self.recent, self.limits.overall):
            del self.recent[gone]
            if gone not in self.mine[self.owners[gone]]:
                del self.data[gone], self.owners[gone]


def kept_by_redis(limits: AlertLimits, alerts: Iterable[Alert]) -> dict[str, dict[str, Any]]:
    """The alerts (id -> alert) Redis holds after `alerts` were written one by one."""
    script = AlertScript(limits)
    for alert in alerts:
        script.write(*alert)
    return script.data


def staged_alerts(staged: Staged) -> list[Alert]:
    return [(alert_id, s.account_id, s.raised_at, s.alert) for alert_id, s in staged.alerts.items()]


def raised(rng: random.Random, count: int, accounts: int) -> list[Alert]:
    """`count` alerts of `accounts` accounts, most of one busy account (so the others' newest are
    not all among the newest overall), out of order, many raised at the same millisecond, with
    ids whose order as bytes is not their order of staging ("a-10" < "a-9")."""
    alerts: list[Alert] = []
    for number in range(count):
        account = f"acct-{0 if rng.random() < 0.6 else rng.randrange(accounts)}"
        raised_at = 1_700_000_000_000 + rng.randrange(count // 8 + 1)
        alert_id = f"{rng.choice('abc')}-{number}"
        alerts.append(
            (alert_id, account, raised_at, {"alert_id": alert_id, "account_id": account, "n": number})
        )
    return alerts


def test_staged_alerts_are_the_ones_redis_would_keep() -> None:
    limits = AlertLimits(overall=20, per_account=5)
    alerts = raised(random.Random(7), 1500, accounts=6)
    staged = Staged(limits)
    redis = AlertScript(limits)  # every alert written one by one
    prunings = 0
    for seen, alert in enumerate(alerts, start=1):
        dropped = staged.alert(*alert)
        redis.write(*alert)
        expected = redis.data
        if dropped:  # just pruned: exactly the survivors, in the order staged
            prunings += 1
            assert list(staged.alerts) == [a[0] for a in alerts[:seen] if a[0] in expected]
            assert len(staged.alerts) + dropped > 2 * limits.overall
        # at any time, writing what is staged leaves Redis as writing everything one by one did
        assert kept_by_redis(limits, staged_alerts(staged)) == expected
        assert len(staged.alerts) <= 2 * (limits.overall + limits.per_account * 6)
    assert prunings > 20


def test_ties_in_raised_at_keep_the_greater_ids_as_bytes() -> None:
    """All raised at the same millisecond: Redis keeps the greatest members, "a-9" over "a-10"."""
    limits = AlertLimits(overall=3, per_account=2)
    staged = Staged(limits)
    ids = [f"a-{number}" for number in range(8)] + ["a-10", "a-11", "b-1", "a-é", "a-z"]
    alerts = [(alert_id, "acct-1", 5000, {"alert_id": alert_id}) for alert_id in ids]
    alerts.append(("c-0", "acct-2", 4000, {"alert_id": "c-0"}))  # its account's newest
    for alert in alerts:
        staged.alert(*alert)
    staged.alert("a-0", "acct-1", 5000, {"alert_id": "a-0"})  # re-staged: pruned again
    assert set(staged.alerts) == {"a-é", "a-z", "b-1", "c-0"}
    assert set(kept_by_redis(limits, alerts)) == set(staged.alerts)


def test_many_alerts_stay_bounded_and_are_pruned_amortised() -> None:
    """The writer's limits: an outage's alerts (one account flooding, a few others) stay within
    twice what Redis keeps, with a pruning per few thousand alerts, not per alert."""
    limits = AlertLimits(overall=5000, per_account=50)
    staged = Staged(limits)
    largest = prunings = dropped = 0
    for number in range(60_000):
        account = "flood" if number % 10 else f"acct-{number % 7}"
        pruned = staged.alert(f"x{number}", account, number // 3, {"n": number})
        prunings += pruned > 0
        dropped += pruned
        largest = max(largest, len(staged.alerts))
    assert largest <= 2 * (limits.overall + limits.per_account * 8)
    assert prunings <= 60_000 // limits.overall
    assert dropped + len(staged.alerts) == 60_000
    newest = sorted(range(60_000), key=lambda n: (n // 3, f"x{n}"))[-limits.overall :]
    assert {f"x{n}" for n in newest} <= set(staged.alerts)


def test_absorb_keeps_the_alerts_redis_would_keep() -> None:
    """A failed write's pruned alerts, with those pruned while it was tried on top: what stays is
    what Redis would keep of all of them."""
    limits = AlertLimits(overall=15, per_account=4)
    alerts = raised(random.Random(11), 900, accounts=5)
    failed, later = Staged(limits), Staged(limits)
    for alert in alerts[:500]:
        failed.alert(*alert)
    for alert in alerts[500:]:
        later.alert(*alert)
    failed.absorb(later)
    expected = kept_by_redis(limits, alerts)
    assert set(expected) <= set(failed.alerts)
    assert kept_by_redis(limits, staged_alerts(failed)) == expected
    for alert in alerts[:200]:  # re-staged (a partition re-staged from the alerts topic)
        failed.alert(*alert)
    assert kept_by_redis(limits, staged_alerts(failed)) == expected
    assert len(failed.alerts) <= 2 * (limits.overall + limits.per_account * 5)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    count=st.integers(0, 400),
    accounts=st.integers(1, 8),
    overall=st.integers(1, 12),
    per_account=st.integers(1, 6),
    split=st.floats(0, 1),
)
def test_staging_with_absorb_leaves_redis_as_writing_one_by_one(
    seed: int, count: int, accounts: int, overall: int, per_account: int, split: float
) -> None:
    limits = AlertLimits(overall, per_account)
    rng = random.Random(seed)
    alerts = raised(rng, count, accounts)
    alerts += rng.sample(alerts, min(len(alerts), 20))  # some staged again, unchanged
    cut = int(len(alerts) * split)
    failed, later = Staged(limits), Staged(limits)
    for alert in alerts[:cut]:
        failed.alert(*alert)
    for alert in alerts[cut:]:
        later.alert(*alert)
    failed.absorb(later)
    assert kept_by_redis(limits, staged_alerts(failed)) == kept_by_redis(limits, alerts)
    assert len(failed.alerts) <= 2 * (overall + per_account * accounts)


def test_alert_limits_are_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        AlertLimits(overall=0, per_account=50)


def test_without_limits_every_alert_stays_staged() -> None:
    staged = Staged()
    for number in range(100):
        assert staged.alert(f"x{number}", "acct-1", number, {}) == 0
    assert len(staged.alerts) == 100
