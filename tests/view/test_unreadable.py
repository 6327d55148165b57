"""A value in Redis the view cannot read (anyone who may write Redis may have put it there) is a
503 naming the error where the answer needs it, never a 500 with a traceback; `/healthz` and
`/metrics` still answer. A list leaves such an entry out, answers with the rest and says how many
it left out (`unreadable`): one planted row took every account or alert list down for everyone."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from projection.scored import scored
from redis.asyncio import Redis

from streamer.projection.codec import summary
from streamer.projection.keys import Keys
from tests.fixtures import RedisServer
from tests.view.test_http import get, project, reference, start

# An account at risk (yellow, paying), with alerts: on every list the tests read.
BAD = "acct-0016"


@pytest.fixture
async def view(redis_server: RedisServer, prefix: str) -> AsyncIterator[TestClient[Any, Any]]:
    await project(redis_server.url, prefix, scored())
    client = await start(redis_server.url, prefix)
    yield client
    await client.close()


async def plant(url: str, command: str, *args: str | bytes) -> None:
    redis = Redis.from_url(url)
    try:
        await redis.execute_command(command, *args)
    finally:
        await redis.aclose()


@pytest.mark.parametrize(
    ("command", "key", "rest", "routes"),
    [
        ("SADD", "partitions", ("abc",), ("/api/accounts", "/api/portfolio", "/api/months")),
        (
            "HSET",
            "account",
            ("snapshot", "notjson"),
            (f"/api/accounts/{BAD}", f"/api/accounts/{BAD}/timeline"),
        ),
    ],
)
async def test_a_value_the_view_cannot_read_is_a_503_naming_the_error(
    view: TestClient[Any, Any],
    redis_server: RedisServer,
    prefix: str,
    command: str,
    key: str,
    rest: tuple[str, ...],
    routes: tuple[str, ...],
) -> None:
    """`SADD <prefix>:partitions abc` made these routes answer 500 and log a traceback, for as long
    as the value stayed; an account whose snapshot is unreadable cannot be shown."""
    named = getattr(Keys(prefix), key)
    await plant(redis_server.url, command, named(BAD) if callable(named) else named, *rest)
    for route in routes:
        response = await view.get(route)
        body = await response.json()
        assert response.status == 503, (route, body)
        assert body["error"].startswith("the projection holds a value the view cannot read ("), body
    health = await view.get("/healthz")
    body = await health.json()
    assert health.status == 200 and body["redis"]["reachable"], body  # Redis answers: degraded at worst
    if key == "partitions":  # one /healthz reads: it names the problem
        assert any(
            p.startswith("the projection holds a value the view cannot read") for p in body["problems"]
        )
    assert (await view.get("/metrics")).status == 200


def bad_rows() -> list[bytes]:
    """Values of the bad account's list row the workers never write."""
    row = summary(scored().last[BAD])
    return [
        b"notjson",
        orjson.dumps([row]),
        orjson.dumps({**row, "mrr": "abc"}),
        orjson.dumps({**row, "score": "high"}),
        orjson.dumps({**row, "renewal_at": "soon"}),
    ]


# From a sorted set page by page (the first three), or filtered row by row in the view (the
# rest): then it cannot tell whether the unreadable row passes the filters and counts it all the same.
LISTS = [
    {"limit": "500"},
    {"at_risk": "true", "sort": "-mrr"},
    {"band": "yellow", "sort": "-score"},
    {"at_risk": "true", "sort": "score"},
    {"stage": "adopted", "min_mrr": "50"},
    {"band": "red,yellow", "sort": "-mrr"},
]


@pytest.mark.parametrize("raw", bad_rows())
async def test_an_unreadable_row_is_left_out_of_the_account_lists_and_counted(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, raw: bytes
) -> None:
    await plant(redis_server.url, "HSET", Keys(prefix).summaries, BAD, raw)
    for query in LISTS:
        answer = await get(view, "/api/accounts", params=query)
        total, ids = reference(query, scored())
        assert BAD in ids, query  # it would be listed: the list says it left it out
        assert answer["items"] == [summary(scored().last[i]) for i in ids if i != BAD], query
        assert (answer["total"], answer["unreadable"]) == (total, 1), query
    csv = await get(view, "/api/accounts", params={"limit": "500", "format": "csv"})
    assert len(csv.splitlines()) == 1 + len(scored().last) - 1 and BAD not in csv
    assert (await get(view, f"/api/accounts/{BAD}"))["account_id"] == BAD  # its snapshot is fine


async def test_a_filtered_list_counts_an_unreadable_row_it_cannot_tell_about(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    """No readable row matches: the answer still says one row could not be looked at."""
    await plant(redis_server.url, "HSET", Keys(prefix).summaries, BAD, "notjson")
    answer = await get(view, "/api/accounts", params={"q": "no such account"})
    assert (answer["total"], answer["items"], answer["unreadable"]) == (1, [], 1)
    assert (await get(view, "/api/accounts", params={"q": "no such account"}))["unreadable"] == 1


@pytest.mark.parametrize("query", LISTS[1:])
async def test_pages_add_up_to_the_total_with_an_unreadable_row(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, query: dict[str, str]
) -> None:
    """Page by page, `items` plus `unreadable` fill each page; the unreadable row takes its place
    in the order and is counted on its own page only."""
    await plant(redis_server.url, "HSET", Keys(prefix).summaries, BAD, "notjson")
    total, ids = reference(query | {"limit": "500"}, scored())
    seen: list[str] = []
    unreadable = 0
    for offset in range(0, total + 3, 3):
        answer = await get(view, "/api/accounts", params=query | {"limit": "3", "offset": str(offset)})
        assert answer["total"] == total
        assert len(answer["items"]) + answer["unreadable"] == len(ids[offset : offset + 3])
        assert answer["unreadable"] == (BAD in ids[offset : offset + 3])
        seen += [row["account_id"] for row in answer["items"]]
        unreadable += answer["unreadable"]
    assert seen == [i for i in ids if i != BAD] and unreadable == 1


async def test_an_unreadable_alert_is_left_out_of_the_alert_lists_and_counted(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    keys = Keys(prefix)
    own = [a for a in scored().alerts if a["account_id"] == BAD]
    bad = own[0]["alert_id"]
    await plant(redis_server.url, "HSET", keys.alert_data, bad, "{not an alert")
    everyone = await get(view, "/api/alerts", params={"limit": "500"})
    assert everyone["total"] == len(scored().alerts) and everyone["unreadable"] == 1
    assert len(everyone["items"]) == len(scored().alerts) - 1
    assert bad not in {a["alert_id"] for a in everyone["items"]}
    for path, params in [
        ("/api/alerts", {"severity": own[0]["severity"], "limit": "500"}),
        (f"/api/accounts/{BAD}/alerts", {"limit": "500"}),
        (f"/api/accounts/{BAD}/alerts", {"rule": own[0]["rule"], "limit": "500"}),
    ]:
        answer = await get(view, path, params=params)
        assert answer["unreadable"] == 1 and bad not in {a["alert_id"] for a in answer["items"]}, path
        assert answer["total"] == len(answer["items"]) + 1, path
    account = await get(view, f"/api/accounts/{BAD}")  # the account itself is readable
    assert bad not in {a["alert_id"] for a in account["recent_alerts"]}
    timeline = await get(view, f"/api/accounts/{BAD}/timeline")
    assert timeline["account_id"] == BAD


async def test_a_readable_list_says_it_left_nothing_out(view: TestClient[Any, Any]) -> None:
    assert (await get(view, "/api/accounts"))["unreadable"] == 0
    assert (await get(view, "/api/accounts", params={"q": "acct"}))["unreadable"] == 0
    assert (await get(view, "/api/alerts"))["unreadable"] == 0
    assert (await get(view, "/api/alerts", params={"severity": "critical"}))["unreadable"] == 0


async def test_an_unreadable_row_is_logged_by_key_and_health_and_metrics_stay_true(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is hidden silently: the error log names the key and field to remove. `/healthz`
    and `/metrics` read no list row: Redis answers and is reported up, as before."""
    summaries = Keys(prefix).summaries
    await plant(redis_server.url, "HSET", summaries, BAD, "notjson")
    with caplog.at_level(logging.ERROR):
        await get(view, "/api/accounts")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        getattr(r, "key", None) == summaries
        and getattr(r, "field", None) == BAD
        and getattr(r, "remove_with", None) == f"HDEL {summaries} {BAD}"
        for r in errors
    ), [r.__dict__ for r in errors]
    health = await get(view, "/healthz")
    assert health["redis"]["reachable"] and not any("cannot read" in p for p in health["problems"])
    assert "healthstream_redis_up 1.0" in (await get(view, "/metrics")).splitlines()


async def test_a_csv_export_says_in_a_header_how_many_entries_it_left_out(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    """A CSV has no place for the JSON's `unreadable`: the export left the row out and said
    nothing, so a spreadsheet was one account short without a word."""
    keys = Keys(prefix)
    bad_alert = next(a for a in scored().alerts if a["account_id"] == BAD)["alert_id"]
    other = next(a for a in scored().alerts if a["account_id"] != BAD)["account_id"]
    await plant(redis_server.url, "HSET", keys.summaries, BAD, "notjson")
    await plant(redis_server.url, "HSET", keys.alert_data, bad_alert, "{not an alert")
    for path, left_out in [("/api/accounts", BAD), ("/api/alerts", bad_alert)]:
        response = await view.get(path, params={"format": "csv", "limit": "500"})
        assert response.status == 200, path
        assert response.headers.get("X-Healthstream-Unreadable") == "1", path
        assert left_out.encode() not in await response.read(), path
    readable = await view.get(f"/api/accounts/{other}/alerts", params={"format": "csv"})
    assert readable.status == 200 and readable.headers.get("X-Healthstream-Unreadable") == "0"


@pytest.mark.parametrize(
    "raw", [b"abc", b"-1", b"\xff", b"1e400", b"1,200,000.00,,,notanumber", b"70,green,adopted,NaN"]
)
async def test_an_unreadable_history_point_is_left_out_of_the_history_and_timeline(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, raw: bytes
) -> None:
    """One planted point made the account's history and its page's timeline a 503."""
    before = await get(view, f"/api/accounts/{BAD}/history", params={"days": "400"})
    await plant(redis_server.url, "ZADD", Keys(prefix).history(BAD), "1", raw)
    history = await get(view, f"/api/accounts/{BAD}/history", params={"days": "400"})
    assert history["points"] == before["points"] and history["unreadable"] == 1
    assert history["movements"] == before["movements"]
    timeline = await get(view, f"/api/accounts/{BAD}/timeline")
    assert timeline["unreadable"] == 1 and timeline["items"]


async def test_an_unreadable_owner_count_is_left_out_of_the_filters(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    before = await get(view, "/api/filters")
    await plant(redis_server.url, "HSET", Keys(prefix).owners, "mallory@example.com", "lots")
    await plant(redis_server.url, "HSET", Keys(prefix).segments, b"\xff\xfe", "3")
    after = await get(view, "/api/filters")
    assert (after["owners"], after["segments"]) == (before["owners"], before["segments"])
    assert (before["unreadable"], after["unreadable"]) == (0, 2)


async def newest_point(url: str, key: str) -> tuple[list[str], float]:
    """The fields of the newest point of a history, and its score."""
    redis = Redis.from_url(url)
    try:
        [(raw, score)] = await redis.zrevrange(key, 0, 0, withscores=True)
    finally:
        await redis.aclose()
    return raw.decode().split(","), score


@pytest.mark.parametrize("mrr", ["1E+999990", "1E+3", "-5.00", "99999999999999.00", "5.1234567"])
async def test_a_history_point_whose_mrr_no_account_can_have_is_left_out_at_once(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, mrr: str
) -> None:
    """An MRR of '1E+999990' (9 bytes in Redis) took ~31 s to read at every request, and the whole
    view, /healthz included, waited: only a plain decimal an account's MRR can be is read."""
    path = f"/api/accounts/{BAD}/history"
    before = await get(view, path, params={"days": "400"})
    key = Keys(prefix).history(BAD)
    fields, score = await newest_point(redis_server.url, key)
    fields[4] = mrr  # history.FIELDS: as_of, score, band, stage, mrr, ...
    await plant(redis_server.url, "ZADD", key, repr(score + 1), ",".join(fields))
    history = await get(view, path, params={"days": "400"})
    assert (history["points"], history["movements"]) == (before["points"], before["movements"])
    assert history["unreadable"] == 1
    timeline = await get(view, f"/api/accounts/{BAD}/timeline")
    assert timeline["unreadable"] == 1 and timeline["items"]


async def test_a_history_point_scored_infinity_is_left_out_and_counted(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    """Its instant, the score, is no number of milliseconds: the history and the timeline were a
    503 (the score was read before the point, outside the guard)."""
    path = f"/api/accounts/{BAD}/history"
    before = await get(view, path)
    key = Keys(prefix).history(BAD)
    fields, _ = await newest_point(redis_server.url, key)
    fields[1] = "12.5"  # another member than the newest point's, which ZADD would move
    await plant(redis_server.url, "ZADD", key, "+inf", ",".join(fields))
    history = await get(view, path)
    assert (history["points"], history["unreadable"]) == (before["points"], 1)
    assert (await get(view, f"/api/accounts/{BAD}/timeline"))["unreadable"] == 1


def own_alert() -> dict[str, Any]:
    return next(a for a in scored().alerts if a["account_id"] == BAD)


@pytest.mark.parametrize(
    "alert",
    [
        own_alert() | {"reasons": ["text"]},
        own_alert() | {"reasons": [{}]},
        own_alert() | {"reasons": [{"message": 3}]},
        {k: v for k, v in own_alert().items() if k != "severity"},
        {k: v for k, v in own_alert().items() if k != "rule"},
    ],
    ids=["text-reasons", "reason-without-message", "message-no-text", "no-severity", "no-rule"],
)
async def test_an_alert_the_view_cannot_show_is_left_out_of_the_timeline_and_exports_and_counted(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, alert: dict[str, Any]
) -> None:
    """One such alert made the account's whole timeline a 503, and the alert lists' CSV exports
    a 500: it is left out and counted, as any unreadable alert."""
    before = await get(view, f"/api/accounts/{BAD}/timeline")
    await plant(redis_server.url, "HSET", Keys(prefix).alert_data, alert["alert_id"], orjson.dumps(alert))
    timeline = await get(view, f"/api/accounts/{BAD}/timeline")
    assert timeline["unreadable"] == before["unreadable"] + 1
    assert timeline["items"] and alert["raised_at"] not in {
        i["at"] for i in timeline["items"] if i["kind"] == "alerts"
    }
    for path in ("/api/alerts", f"/api/accounts/{BAD}/alerts"):
        answer = await get(view, path, params={"limit": "500"})
        assert answer["unreadable"] == 1 and alert["alert_id"] not in {a["alert_id"] for a in answer["items"]}
        response = await view.get(path, params={"format": "csv"})
        assert response.status == 200, path
        assert response.headers.get("X-Healthstream-Unreadable") == "1", path
        assert alert["alert_id"].encode() not in await response.read(), path


@pytest.mark.parametrize("reasons", [[{}], [{"signal": "x"}], [{"message": "usage down"}], [3]])
async def test_a_row_whose_reasons_are_not_texts_is_left_out_of_the_list_and_its_export(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, reasons: list[Any]
) -> None:
    """A list row's reasons are texts: `[{}]` made the accounts' CSV export a 500."""
    row = summary(scored().last[BAD]) | {"reasons": reasons}
    await plant(redis_server.url, "HSET", Keys(prefix).summaries, BAD, orjson.dumps(row))
    answer = await get(view, "/api/accounts", params={"limit": "500"})
    assert answer["unreadable"] == 1 and BAD not in {r["account_id"] for r in answer["items"]}
    response = await view.get("/api/accounts", params={"format": "csv"})
    assert response.status == 200 and response.headers.get("X-Healthstream-Unreadable") == "1"
    assert BAD.encode() not in await response.read()


WORKER = "w-planted"
PROCESSED, STALLED = "healthstream_events_processed_total", "healthstream_worker_stalled_seconds"


@pytest.mark.parametrize(
    ("stats", "left_out", "unsampled"),
    [
        (
            b'{"lag": "x", "stalled_s": "y", "processed": "z"}',
            "'lag' is str, 'stalled_s' is str, 'processed' is str",
            (PROCESSED, STALLED),
        ),
        (b'{"lag": 1.0, "stalled_s": null}', "'stalled_s' is NoneType", (STALLED,)),
        (b'{"lag": 1.0, "processed": [1]}', "'processed' is list", (PROCESSED,)),
        (b'{"lag": 1.0, "processed": true}', "'processed' is bool", (PROCESSED,)),
        (b'{"lag": 1.0, "processed": -5}', "'processed' is a negative number", (PROCESSED,)),
        (b"[1, 2]", "no JSON object", ("",)),  # "": no sample of that worker at all
        (b"notjson", "no JSON object", ("",)),
    ],
)
async def test_worker_stats_that_are_no_numbers_make_healthz_degraded_and_metrics_leave_them_out(
    view: TestClient[Any, Any],
    redis_server: RedisServer,
    prefix: str,
    stats: bytes,
    left_out: str,
    unsampled: tuple[str, ...],
) -> None:
    """A reporting worker whose stats hold a text or null made /healthz and /metrics a 500 (and
    one that is no JSON object took /metrics' `healthstream_redis_up` to 0)."""
    keys = Keys(prefix)
    await plant(redis_server.url, "SET", keys.worker(WORKER), stats)
    await plant(redis_server.url, "ZADD", keys.workers, repr(time.time()), WORKER)
    health = await view.get("/healthz")
    body = await health.json()
    assert health.status == 200 and body["status"] == "degraded", body
    assert body["problems"] == [
        f"the projection holds a value the view cannot read (the stats of worker {WORKER}: {left_out}); "
        "the workers never write such a value: remove it from Redis"
    ]
    assert (body["workers"], body["consumer_lag"]) == (2, 4 + (b'"lag": 1.0' in stats))
    metrics = await view.get("/metrics")
    assert metrics.status == 200
    lines = (await metrics.text()).splitlines()
    assert "healthstream_redis_up 1.0" in lines and "healthstream_workers 2.0" in lines
    assert f'{PROCESSED}{{worker="w-test"}} 10.0' in lines  # the sound worker's
    planted = [line.split("{")[0] for line in lines if f'worker="{WORKER}"' in line]
    if "" in unsampled:
        assert planted == []
    else:
        assert planted and not set(unsampled) & set(planted), planted


async def test_a_member_that_is_not_utf8_is_left_out_of_its_list_and_counted(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    """No id the workers write is: one such member of the score index or the alert list made the
    whole list a 503; in an owner's set it names no account a list could show."""
    keys = Keys(prefix)
    owner = scored().last[BAD]["profile"]["owner"]
    owned = await get(view, "/api/accounts", params={"owner": owner, "limit": "500"})
    await plant(redis_server.url, "SADD", keys.owner(owner), b"\xff")
    assert await get(view, "/api/accounts", params={"owner": owner, "limit": "500"}) == owned
    await plant(redis_server.url, "ZADD", keys.index("score"), "1", b"\xff\xfe")
    for query in ({"limit": "500"}, {"q": "acct", "limit": "500"}):
        answer = await get(view, "/api/accounts", params=query)
        assert (answer["total"], len(answer["items"]), answer["unreadable"]) == (31, 30, 1), query
    await plant(redis_server.url, "ZADD", keys.alerts, "9e15", b"\xff")
    for query in ({"limit": "500"}, {"severity": "warning,critical,info", "limit": "500"}):
        answer = await get(view, "/api/alerts", params=query)
        count = len(scored().alerts)
        assert (answer["total"], len(answer["items"]), answer["unreadable"]) == (count + 1, count, 1), query


@pytest.mark.parametrize("stored", [b"[]", "other"])
async def test_a_snapshot_that_is_no_object_of_its_account_is_a_503(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, stored: bytes | str
) -> None:
    """A JSON list was served as the account with a 200, and another account's snapshot under its
    key as this account."""
    raw = orjson.dumps(scored().last["acct-0001"]) if stored == "other" else stored
    await plant(redis_server.url, "HSET", Keys(prefix).account(BAD), "snapshot", raw)
    for route in (f"/api/accounts/{BAD}", f"/api/accounts/{BAD}/history", f"/api/accounts/{BAD}/timeline"):
        response = await view.get(route)
        body = await response.json()
        assert response.status == 503, (route, body)
        assert body["error"].startswith("the projection holds a value the view cannot read ("), body


@pytest.mark.parametrize("totals", [b"[1, 2]", b"{}", b"[true]"])
async def test_a_partitions_totals_of_the_wrong_form_make_the_portfolio_a_503(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, totals: bytes
) -> None:
    """A totals vector of two values was added up into silently wrong portfolio totals."""
    await plant(redis_server.url, "HSET", Keys(prefix).partition(0), "totals", totals)
    response = await view.get("/api/portfolio")
    body = await response.json()
    assert response.status == 503, body
    assert body["error"].startswith("the projection holds a value the view cannot read ("), body
    assert "healthstream_redis_up 0.0" in (await get(view, "/metrics")).splitlines()
    health = await get(view, "/healthz")
    assert health["status"] == "degraded" and health["redis"]["reachable"], health
    assert any(p.startswith("the projection holds a value the view cannot read") for p in health["problems"])


async def test_an_unreadable_value_is_logged_once_with_where_it_failed(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A defect of the view's own code raises the same errors as a planted value does: it showed
    only as "remove it from Redis", nothing in the log. Logged once: a dashboard asks every 5 s."""
    await plant(redis_server.url, "SADD", Keys(prefix).partitions, "not-a-partition-number")
    with caplog.at_level(logging.WARNING, logger="streamer.view.service"):
        for _ in range(3):
            assert (await view.get("/api/portfolio")).status == 503
    [record] = [r for r in caplog.records if r.getMessage() == "a read failed on a value of the projection"]
    assert record.exc_info is not None  # the traceback: where it failed


@pytest.mark.parametrize("field", ["stream_time", "totals"])
async def test_an_unreadable_partition_field_is_named_and_reported_down_by_metrics(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, field: str
) -> None:
    """`HSET <prefix>:partition:0 stream_time abc`: the 503 said only "invalid literal for int()",
    with no key to look for, and /metrics kept `healthstream_redis_up 1` (it read only totals),
    though the README says a partition the view cannot read reports 0 there."""
    key = Keys(prefix).partition(0)
    await plant(redis_server.url, "HSET", key, field, "abc")
    for route in ("/api/portfolio", "/api/accounts") if field == "stream_time" else ("/api/portfolio",):
        body = await get(view, route, 503)
        assert f"{key} field '{field}'" in body["error"], body
    health = await get(view, "/healthz")
    assert any(f"{key} field '{field}'" in problem for problem in health["problems"]), health
    assert "healthstream_redis_up 0.0" in (await get(view, "/metrics")).splitlines()


async def test_a_row_or_alert_listed_without_its_value_is_counted_unreadable(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An id in an index whose list row is gone (the summaries hash deleted by hand, an eviction),
    or an alert id whose JSON is: left out of the list with `unreadable: 0`, as if it never was."""
    keys = Keys(prefix)
    await plant(redis_server.url, "HDEL", keys.summaries, BAD)
    alert = next(a["alert_id"] for a in scored().alerts if a["account_id"] == BAD)
    await plant(redis_server.url, "HDEL", keys.alert_data, alert)
    accounts = await get(view, "/api/accounts", params={"limit": "500"})
    assert (accounts["total"], len(accounts["items"]), accounts["unreadable"]) == (
        len(scored().last),
        len(scored().last) - 1,
        1,
    )
    alerts = await get(view, "/api/alerts", params={"limit": "500"})
    assert (alerts["total"], len(alerts["items"]), alerts["unreadable"]) == (
        len(scored().alerts),
        len(scored().alerts) - 1,
        1,
    )
    said = {
        (r.key, r.field) for r in caplog.records if r.getMessage().startswith("an entry listed has no value")
    }  # type: ignore[attr-defined]
    assert said == {(keys.summaries, BAD), (keys.alert_data, alert)}


@pytest.mark.parametrize(
    ("key", "routes"),
    [
        (
            lambda keys: keys.account_alerts(BAD),
            (f"/api/accounts/{BAD}", f"/api/accounts/{BAD}/timeline", f"/api/accounts/{BAD}/alerts"),
        ),
        (lambda keys: keys.history(BAD), (f"/api/accounts/{BAD}/history", f"/api/accounts/{BAD}/timeline")),
        (lambda keys: keys.account(BAD), (f"/api/accounts/{BAD}",)),
        (lambda keys: keys.summaries, ("/api/accounts", "/api/accounts?q=acct")),
        (lambda keys: keys.index("score"), ("/api/accounts", "/api/accounts?q=acct")),
        (lambda keys: keys.risk, ("/api/accounts?at_risk=true&sort=score",)),
        (lambda keys: keys.alerts, ("/api/alerts", "/api/alerts?severity=critical")),
        (lambda keys: keys.owners, ("/api/filters",)),
        (lambda keys: keys.meta, ("/api/portfolio",)),
    ],
    ids=["account-alerts", "history", "account", "summaries", "index", "risk", "alerts", "owners", "meta"],
)
async def test_a_key_of_another_type_is_a_503_naming_it_and_logged_with_its_removal(
    view: TestClient[Any, Any],
    redis_server: RedisServer,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    key: Any,
    routes: tuple[str, ...],
) -> None:
    """`SET <prefix>:account-alerts:acct-0005 x` made the account's pages a 503 "refused the read:
    WRONGTYPE ..." that named no key, with nothing in the log."""
    named = key(Keys(prefix))
    await plant(redis_server.url, "DEL", named)
    await plant(redis_server.url, "SET", named, "planted")
    with caplog.at_level(logging.ERROR, "streamer.projection.redis_reader"):
        for route in routes:
            body = await get(view, route, 503)
            assert body["error"].startswith("the projection holds a value the view cannot read ("), body
            assert f"{named} (" in body["error"] and "a string where the workers write a" in body["error"], (
                body
            )
    logged = [r for r in caplog.records if getattr(r, "key", None) == named]
    assert [getattr(r, "remove_with", None) for r in logged] == [f"DEL {named}"], caplog.records


async def test_healthz_names_a_partitions_key_of_another_type_and_says_redis_answers(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    """It said "the projection store (Redis) is unreachable: WRONGTYPE ..." next to
    `"reachable": true`."""
    partitions = Keys(prefix).partitions
    await plant(redis_server.url, "DEL", partitions)
    await plant(redis_server.url, "SET", partitions, "planted")
    health = await get(view, "/healthz")
    assert health["status"] == "degraded" and health["redis"]["reachable"], health
    assert not any("unreachable" in problem for problem in health["problems"]), health
    assert any(f"{partitions} (" in problem for problem in health["problems"]), health


async def test_a_snapshot_of_the_account_lacking_what_every_snapshot_holds_is_a_503(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str
) -> None:
    """`HSET <prefix>:account:old snapshot '{"account_id":"old","score":5}'` answered a 200 whose
    body the document refuses, and the account page showed "undefined"."""
    whole = scored().last[BAD]
    for account_id, stored in [
        ("old", {"account_id": "old", "score": 5}),
        (BAD, {k: v for k, v in whole.items() if k != "band"}),
        (BAD, {**whole, "mrr": 12}),
        (BAD, {**whole, "components": []}),
        (BAD, {**whole, "reasons": ["a text"]}),
    ]:
        key = Keys(prefix).account(account_id)
        await plant(redis_server.url, "HSET", key, "snapshot", orjson.dumps(stored))
        body = await get(view, f"/api/accounts/{account_id}", 503)
        assert f"{key} field 'snapshot'" in body["error"], body


async def test_a_list_row_of_another_account_than_its_field_is_left_out_and_counted(
    view: TestClient[Any, Any], redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A row of acct-0003 stored under acct-0004's field listed acct-0003 twice; an alert stored
    under another alert's id, twice that alert."""
    keys = Keys(prefix)
    await plant(
        redis_server.url, "HSET", keys.summaries, BAD, orjson.dumps(summary(scored().last["acct-0003"]))
    )
    first, second = scored().alerts[:2]
    await plant(redis_server.url, "HSET", keys.alert_data, second["alert_id"], orjson.dumps(first))
    with caplog.at_level(logging.ERROR, "streamer.projection.redis_reader"):
        accounts = await get(view, "/api/accounts", params={"limit": "500"})
        alerts = await get(view, "/api/alerts", params={"limit": "500"})
    listed = [row["account_id"] for row in accounts["items"]]
    assert sorted(listed) == sorted(set(scored().last) - {BAD}) and accounts["unreadable"] == 1
    shown = [alert["alert_id"] for alert in alerts["items"]]
    assert len(shown) == len(set(shown)) == len(scored().alerts) - 1 and alerts["unreadable"] == 1
    said = {(getattr(r, "key", None), getattr(r, "field", None)) for r in caplog.records}
    assert {(keys.summaries, BAD), (keys.alert_data, second["alert_id"])} <= said
