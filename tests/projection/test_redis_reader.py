"""Reading list entries from the projection: every value the workers write decodes as it was
written; a value they never write (planted by anyone who may write Redis) is left out of the rows,
counted and logged naming its key and field, never raised (it made a whole list a 503)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from streamer.core.totals import FIELDS
from streamer.projection import history
from streamer.projection.codec import summary
from streamer.projection.keys import Keys
from streamer.projection.redis_reader import (
    UNREADABLE,
    Entries,
    ProjectionReader,
    Range,
    Unreadable,
    alert_row,
    snapshot_row,
    summary_row,
)
from tests.fixtures import RedisServer

from .scored import scored

ROW = summary(next(iter(scored().last.values())))
ALERT = scored().alerts[0]

BAD_ROWS = [
    b"notjson",
    b"[1, 2]",
    b"null",
    orjson.dumps({**ROW, "mrr": "abc"}),
    orjson.dumps({**ROW, "mrr": "NaN"}),
    orjson.dumps({**ROW, "mrr": 12}),
    orjson.dumps({**ROW, "score": "high"}),
    orjson.dumps({k: v for k, v in ROW.items() if k != "band"}),
    orjson.dumps({**ROW, "renewal_at": "soon"}),
    orjson.dumps({**ROW, "reasons": 3}),
    orjson.dumps({**ROW, "override": "yes"}),
]
BAD_ALERTS = [
    b"{",
    b'"text"',
    orjson.dumps({k: v for k, v in ALERT.items() if k != "alert_id"}),
    orjson.dumps({**ALERT, "reasons": None}),
    orjson.dumps({**ALERT, "profile": [1]}),
]


def test_every_row_and_alert_the_workers_write_decodes_as_written() -> None:
    for snapshot in scored().snapshots:
        row = summary(snapshot)
        assert summary_row(orjson.dumps(row)) == orjson.loads(orjson.dumps(row))
        assert snapshot_row(orjson.dumps(snapshot)) == orjson.loads(orjson.dumps(snapshot))
    for alert in scored().alerts:
        assert alert_row(orjson.dumps(alert)) == orjson.loads(orjson.dumps(alert))


@pytest.mark.parametrize("raw", BAD_ROWS)
def test_a_row_the_workers_never_write_is_unreadable(raw: bytes) -> None:
    with pytest.raises(UNREADABLE):
        summary_row(raw)


@pytest.mark.parametrize("raw", BAD_ALERTS)
def test_an_alert_the_workers_never_write_is_unreadable(raw: bytes) -> None:
    with pytest.raises(UNREADABLE):
        alert_row(raw)


def test_entries_keep_the_order_and_count_what_they_leave_out() -> None:
    entries = Entries([{"a": 1}, None, {"b": 2}, None])
    assert entries.rows == [{"a": 1}, {"b": 2}]
    assert entries.unreadable == 2
    assert Entries([]).rows == [] and Entries([]).unreadable == 0


@pytest.fixture
async def reader(redis_server: RedisServer, prefix: str) -> AsyncIterator[ProjectionReader]:
    redis = Redis.from_url(redis_server.url)
    yield ProjectionReader(redis, prefix)
    await redis.aclose()


def row(account_id: str) -> dict[str, Any]:
    return {**ROW, "account_id": account_id}


async def test_summaries_leave_out_an_unreadable_row_and_log_its_key(
    reader: ProjectionReader, caplog: pytest.LogCaptureFixture
) -> None:
    summaries = Keys(reader.keys.prefix).summaries
    await reader.redis.hset(
        summaries,
        mapping={"a": orjson.dumps(row("a")), "b": b"notjson", "c": orjson.dumps(row("c"))},
    )
    with caplog.at_level(logging.ERROR, "streamer.projection.redis_reader"):
        found = await reader.summaries(["c", "b", "missing", "a"])
    # the missing id is counted too: a row deleted or evicted by hand vanished from the list silently
    assert found.values == [row("c"), None, None, row("a")]
    assert found.rows == [row("c"), row("a")] and found.unreadable == 2
    (record, gone) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "cannot read" in record.getMessage()
    assert "listed has no value" in gone.getMessage() and (gone.key, gone.field) == (summaries, "missing")
    assert (record.key, record.field, record.remove_with) == (summaries, "b", f"HDEL {summaries} b")
    assert record.error.startswith("JSONDecodeError")


async def test_alerts_leave_out_an_unreadable_alert(reader: ProjectionReader) -> None:
    keys = reader.keys
    alerts = [{**ALERT, "alert_id": f"al-{n}"} for n in range(3)]
    await reader.redis.zadd(keys.alerts, {alert["alert_id"]: n for n, alert in enumerate(alerts)})
    await reader.redis.hset(keys.alert_data, mapping={a["alert_id"]: orjson.dumps(a) for a in alerts})
    await reader.redis.hset(keys.alert_data, "al-1", b"[1")
    found = await reader.alerts(10)
    assert [a["alert_id"] for a in found.entries.rows] == ["al-2", "al-0"] and found.entries.unreadable == 1
    assert found.total == 3
    newest = (await reader.alerts(1, offset=1)).entries
    assert newest.rows == [] and newest.unreadable == 1


def test_an_unreadable_value_is_logged_once_per_five_minutes_not_at_every_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dashboard refreshing every 5 s logged the same planted value several times a refresh."""
    now = [0.0]
    unreadable = Unreadable(clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, "streamer.projection.redis_reader"):
        for step in range(10):
            now[0] = step * 30.0  # 0 s .. 270 s
            assert unreadable.decoded("k", "f", b"notjson", summary_row) is None
            assert unreadable.decoded("k", "g", b"notjson", summary_row) is None
        now[0] = 300.0
        unreadable.decoded("k", "f", b"notjson", summary_row)
    logged = [(r.key, r.field) for r in caplog.records if r.levelno == logging.ERROR]
    assert logged == [("k", "f"), ("k", "g"), ("k", "f")]


@pytest.mark.parametrize(
    "alert",
    [
        {**ALERT, "reasons": ["text"]},
        {**ALERT, "reasons": [{}]},
        {**ALERT, "reasons": [{"message": None}]},
        {k: v for k, v in ALERT.items() if k != "severity"},
        {**ALERT, "rule": 3},
    ],
)
def test_an_alert_whose_reasons_severity_or_rule_are_not_as_written_is_unreadable(
    alert: dict[str, Any],
) -> None:
    """The timeline and the CSV export read each reason's message, the severity and the rule."""
    with pytest.raises(UNREADABLE):
        alert_row(orjson.dumps(alert))


@pytest.mark.parametrize("reasons", [[{}], [{"message": "usage down"}], [None]])
def test_a_row_whose_reasons_are_not_texts_is_unreadable(reasons: list[Any]) -> None:
    with pytest.raises(UNREADABLE):
        summary_row(orjson.dumps({**ROW, "reasons": reasons}))


async def test_a_snapshot_that_is_no_object_of_its_account_is_unreadable(reader: ProjectionReader) -> None:
    snapshot = next(iter(scored().last.values()))
    key = reader.keys.account(snapshot["account_id"])
    await reader.redis.hset(key, "snapshot", orjson.dumps(snapshot))
    assert await reader.account(snapshot["account_id"]) == snapshot
    for stored in (b"[]", orjson.dumps({**snapshot, "account_id": "someone-else"})):
        await reader.redis.hset(key, "snapshot", stored)
        with pytest.raises(UNREADABLE):
            await reader.account(snapshot["account_id"])


@pytest.mark.parametrize(
    "totals", [b"[1, 2]", b"{}", orjson.dumps([1] * (len(FIELDS) - 1)), orjson.dumps([True] * len(FIELDS))]
)
async def test_a_totals_vector_of_the_wrong_form_is_unreadable(
    reader: ProjectionReader, totals: bytes
) -> None:
    """A short vector added up silently into wrong portfolio totals."""
    keys = reader.keys
    await reader.redis.sadd(keys.partitions, "0")
    await reader.redis.hset(
        keys.partition(0), mapping={"stream_time": "1", "totals": orjson.dumps([1] * len(FIELDS))}
    )
    assert await reader.totals() == [1] * len(FIELDS)
    await reader.redis.hset(keys.partition(0), "totals", totals)
    with pytest.raises(UNREADABLE):
        await reader.totals()


async def test_a_history_point_scored_infinity_is_left_out_and_logged_with_its_removal(
    reader: ProjectionReader, caplog: pytest.LogCaptureFixture
) -> None:
    key = reader.keys.history("a")
    point = history.point(next(iter(scored().last.values())))
    await reader.redis.zadd(key, {point: 1_700_000_000_000, point + b"0": float("inf")})
    with caplog.at_level(logging.ERROR, "streamer.projection.redis_reader"):
        points, unreadable = await reader.history("a")
    assert [p.as_of for p in points] == [1_700_000_000_000] and unreadable == 1
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.remove_with == f"ZREMRANGEBYSCORE {key} inf inf"


async def test_an_id_that_is_not_utf8_is_an_unreadable_entry_of_its_list(reader: ProjectionReader) -> None:
    keys = reader.keys
    await reader.redis.zadd(keys.index("score"), {b"a": 1, b"\xff": 2, b"c": 3})
    await reader.redis.hset(
        keys.summaries, mapping={"a": orjson.dumps(row("a")), "c": orjson.dumps(row("c"))}
    )
    page = await reader.rows_page(keys.index("score"), Range(), 0, 10, descending=False)
    assert (page.entries.values, page.total) == ([row("a"), None, row("c")], 3)
    assert await reader.ids(keys.index("score"), Range(), descending=True) == ["c", None, "a"]
    found = await reader.summaries(["a", None, "c"])
    assert found.rows == [row("a"), row("c")] and found.unreadable == 1
    await reader.redis.zadd(keys.alerts, {b"\xfe": 1})
    alerts = (await reader.alerts(10)).entries
    assert (alerts.rows, alerts.unreadable) == ([], 1)
    await reader.redis.sadd(keys.owner("ann"), b"a", b"\xff")
    assert await reader.members("owner", ["ann"]) == {"a"}


async def test_worker_stats_keep_the_numbers_and_name_what_the_rest_hold(reader: ProjectionReader) -> None:
    """A text or null among a worker's stats made /healthz and /metrics a 500."""
    keys = reader.keys
    now = time.time()
    await reader.redis.zadd(keys.workers, {"w1": now, "w2": now, "w3": now, b"\xff": now})
    await reader.redis.set(keys.worker("w1"), orjson.dumps({"lag": 4, "processed": 10.5}))
    await reader.redis.set(keys.worker("w2"), orjson.dumps({"lag": "x", "stalled_s": None, "alerts": 2}))
    await reader.redis.set(keys.worker("w3"), b"[1]")
    found = await reader.workers(30.0)
    assert found.stats == {"w1": {"lag": 4.0, "processed": 10.5}, "w2": {"alerts": 2.0}, "w3": {}}
    assert found.unreadable == {
        "w2": {"lag": "str", "stalled_s": "NoneType"},
        "w3": {"": "no JSON object"},
        "\ufffd": {"": "an id that is not UTF-8"},
    }
