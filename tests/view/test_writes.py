"""The view's writes: a person's profile, override and clearing become one validated input event
each, published (here to a fake publisher) to the input topic; the view keeps nothing. The
accounts written to are in a real Redis's projection: a write to any other id is refused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from projection.scored import scored

from streamer.contract.decode import decode_event
from streamer.core.portfolio import PeriodSums
from streamer.projection.redis_writer import RedisProjection, connect
from streamer.settings import Settings
from streamer.view import app as view_app
from streamer.view.app import create_app
from streamer.view.errors import Unavailable
from streamer.view.settings import ViewSettings
from tests.fixtures import RedisServer

from .test_http import META

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KNOWN = ("acct-0007", "acme")  # the accounts the projection has
Sent = list[tuple[str, bytes, bytes]]


async def project_accounts(url: str, prefix: str, account_ids: tuple[str, ...]) -> None:
    """A projection that has these accounts (a scored snapshot under each id)."""
    writer = RedisProjection(connect(url), prefix, META, min_interval_s=0.0)
    template = scored().snapshots[-1]
    for account_id in account_ids:
        writer.snapshot({**template, "account_id": account_id})
    assert await writer.drain()
    await writer.close()


async def client_for(
    sent: Sent,
    redis_url: str = "redis://127.0.0.1:1/0",
    prefix: str = "writes",
    token: str | None = TOKEN,
    fail: bool = False,
    pool: int = 50,
) -> TestClient[Any, Any]:
    async def publish(topic: str, key: bytes, value: bytes) -> None:
        if fail:
            raise Unavailable("the broker at 127.0.0.1:1 did not take the event; nothing was published")
        sent.append((topic, key, value))

    settings = Settings(redis_url=redis_url, app_id=prefix, kafka_bootstrap="127.0.0.1:1")
    view = ViewSettings(token=token, kafka_check=False, redis_pool_size=pool)
    client = TestClient(TestServer(create_app(settings, view, publish=publish)))
    await client.start_server()
    return client


@pytest.fixture
async def sent() -> Sent:
    return []


@pytest.fixture
async def known(redis_server: RedisServer, prefix: str) -> tuple[str, str]:
    await project_accounts(redis_server.url, prefix, KNOWN)
    return redis_server.url, prefix


@pytest.fixture
async def view(sent: Sent, known: tuple[str, str]) -> AsyncIterator[TestClient[Any, Any]]:
    client = await client_for(sent, *known)
    yield client
    await client.close()


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def test_an_override_is_published_to_the_subscriptions_topic_keyed_by_account(
    view: TestClient[Any, Any], sent: Sent
) -> None:
    body = {
        "band": "red",
        "reason": "exec sponsor left",
        "author": "ana@example.com",
        "expires_at": in_days(30),
    }
    before = datetime.now(UTC) - timedelta(seconds=1)
    response = await view.post("/api/accounts/acct-0007/override", json=body, headers=AUTH)
    assert response.status == 202
    answer = await response.json()
    [(topic, key, value)] = sent
    assert (topic, key) == ("cs.subscriptions", b"acct-0007")
    event = decode_event(value, key=key, family="subscriptions")
    assert event.event_type == "health.override" and event.event_id == answer["event_id"]
    assert event.event_id.startswith("view-") and answer["topic"] == "cs.subscriptions"
    assert before <= event.occurred_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert orjson.loads(value)["reason"] == "exec sponsor left"


async def test_a_profile_and_a_clearing_by_delete_or_by_body(view: TestClient[Any, Any], sent: Sent) -> None:
    profile = {
        "name": "Acme Corp",
        "owner": "ana@example.com",
        "segment": "enterprise",
        "attributes": {"r": "x"},
    }
    assert (await view.post("/api/accounts/acme/profile", json=profile, headers=AUTH)).status == 202
    clear = {"author": "bo@example.com"}
    assert (await view.delete("/api/accounts/acme/override", json=clear, headers=AUTH)).status == 202
    assert (
        await view.post("/api/accounts/acme/override", json=clear | {"clear": True}, headers=AUTH)
    ).status == 202
    types = [orjson.loads(value)["event_type"] for _, _, value in sent]
    assert types == ["account.updated", "health.override_cleared", "health.override_cleared"]
    assert orjson.loads(sent[0][2])["owner"] == "ana@example.com"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"band": "purple", "reason": "r", "author": "a", "expires_at": "2999-01-01T00:00:00Z"},
            "field 'band'",
        ),
        ({"band": "red", "score": 20, "reason": "r", "author": "a"}, "field 'expires_at'"),
        (
            {"band": "red", "reason": "r", "author": "a", "expires_at": "2000-01-01T00:00:00Z"},
            "must be after",
        ),
        (
            {"band": "red", "reason": "r", "author": "a", "expires_at": "2999-01-01T00:00:00Z"},
            "max_override_days",
        ),
        ({"event_id": "mine", "band": "red"}, "event_id are set by the view"),
        ({"clear": True, "author": "a", "occurred_at": "yesterday"}, "field 'occurred_at'"),
        ({"clear": True, "author": "a", "occurred_at": "2100-01-01T00:00:00Z"}, "input.max_skew_hours"),
        # within the producers' 24 h of skew, yet later than now: later writes dated now lost to it
        ({"clear": True, "author": "a", "occurred_at": in_days(0.5)}, "a person's write is dated at most"),
        ({"clear": "yes", "author": "a"}, "'clear' must be true or false"),
        # a clearing with a band dropped the band without a word
        (
            {"clear": True, "author": "a", "band": "red"},
            "'band': not a field of health.override_cleared (its fields: author, occurred_at, reason)",
        ),
        (
            {"band": "red", "author": "a", "reason": "r", "expires_at": in_days(30), "colour": "red"},
            "'colour': not a field of health.override",
        ),
    ],
)
async def test_a_bad_body_is_a_400_with_the_contract_reason_and_nothing_is_published(
    view: TestClient[Any, Any], sent: Sent, body: dict[str, Any], expected: str
) -> None:
    response = await view.post("/api/accounts/acme/override", json=body, headers=AUTH)
    assert response.status == 400
    assert expected in (await response.json())["error"]
    assert sent == []


async def test_a_body_that_is_not_a_json_object_is_a_400(view: TestClient[Any, Any], sent: Sent) -> None:
    for data in (b"[1]", b"{oops"):
        response = await view.post("/api/accounts/acme/profile", data=data, headers=AUTH)
        assert response.status == 400
    assert sent == []


async def test_an_empty_profile_body_is_a_400_and_an_empty_object_clears_the_profile(
    view: TestClient[Any, Any], sent: Sent
) -> None:
    """A profile is replaced whole, and an empty body was taken as `{}`: it cleared the profile."""
    for data in (b"", b"  \n"):
        response = await view.post("/api/accounts/acme/profile", data=data, headers=AUTH)
        assert response.status == 400
        assert "the body is empty: send the whole profile" in (await response.json())["error"]
    assert sent == []
    assert (await view.post("/api/accounts/acme/profile", data=b"{}", headers=AUTH)).status == 202
    assert len(sent) == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_not_in_its_content_encoding_is_a_400_not_an_error(
    view: TestClient[Any, Any], sent: Sent, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    """aiohttp raises RequestPayloadError for it: it was a 500 and two error tracebacks, on
    /healthz too, which needs no token."""
    headers = {**AUTH, "Content-Encoding": encoding}
    for path in ("/api/accounts/acme/profile", "/healthz"):
        response = await view.request(
            "GET" if path == "/healthz" else "POST", path, data=b"not compressed", headers=headers
        )
        assert response.status == 400, path
        assert "the request body cannot be read" in (await response.json())["error"]
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert sent == []


async def test_writes_need_the_token_and_a_view_without_one_refuses_them(
    sent: Sent, known: tuple[str, str]
) -> None:
    secured = await client_for(sent, *known)
    try:
        response = await secured.post("/api/accounts/acme/profile", json={"name": "Acme"})
        assert response.status == 401
        wrong = await secured.post(
            "/api/accounts/acme/profile", json={}, headers={"Authorization": "Bearer no"}
        )
        assert wrong.status == 401
    finally:
        await secured.close()
    open_view = await client_for(sent, *known, token=None)
    try:
        response = await open_view.post("/api/accounts/acme/profile", json={"name": "Acme"})
        assert response.status == 403
        assert "HEALTHSTREAM_VIEW_TOKEN" in (await response.json())["error"]
    finally:
        await open_view.close()
    assert sent == []


async def test_a_broker_that_does_not_acknowledge_is_a_503(sent: Sent, known: tuple[str, str]) -> None:
    client = await client_for(sent, *known, fail=True)
    try:
        response = await client.post("/api/accounts/acme/profile", json={"name": "Acme"}, headers=AUTH)
        assert response.status == 503
        assert "nothing was published" in (await response.json())["error"]
    finally:
        await client.close()


async def test_reading_an_account_whose_id_ends_like_a_write_route_is_still_a_read(
    view: TestClient[Any, Any],
) -> None:
    response = await view.get("/api/accounts/acme/profile", headers=AUTH)
    assert response.status == 404  # a read of account 'acme/profile', not a write
    assert "'acme/profile'" in (await response.json())["error"]


@pytest.mark.parametrize("account_id", ["acct-9999", "acme%2F..%2F..%2Fx", "acct-0007/history"])
async def test_a_write_to_an_account_the_projection_does_not_have_is_a_404_and_publishes_nothing(
    view: TestClient[Any, Any], sent: Sent, account_id: str
) -> None:
    profile = {"name": "Ghost Ltd"}
    response = await view.post(f"/api/accounts/{account_id}/profile", json=profile, headers=AUTH)
    assert response.status == 404
    error = (await response.json())["error"]
    assert "in the projection" in error and "account.updated" in error
    clear = {"author": "bo@example.com"}
    assert (await view.delete(f"/api/accounts/{account_id}/override", json=clear, headers=AUTH)).status == 404
    assert sent == []


async def test_a_write_is_a_503_when_the_projection_cannot_say_whether_the_account_exists(
    sent: Sent,
) -> None:
    client = await client_for(sent)  # its Redis does not answer
    try:
        response = await client.post("/api/accounts/acme/profile", json={"name": "Acme"}, headers=AUTH)
        assert response.status == 503
    finally:
        await client.close()
    assert sent == []


async def _stall_in_body(port: int, account_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that sends a write's headers and 4 of its 100 body bytes, then waits."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /api/accounts/{account_id}/profile HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        'Content-Length: 100\r\n\r\n{"na'.encode()
    )
    await writer.drain()
    return reader, writer


async def test_clients_stalled_in_their_bodies_hold_no_slot_and_time_out_with_a_408(
    sent: Sent, known: tuple[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(view_app, "BODY_TIMEOUT_S", 2.0)

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        sent.append((topic, key, value))

    redis_url, prefix = known
    settings = Settings(redis_url=redis_url, app_id=prefix, kafka_bootstrap="127.0.0.1:1")
    view = ViewSettings(token=TOKEN, kafka_check=False, redis_pool_size=2)
    # Served as `streamer view` serves it (a test server cancels a handler whose client is gone)
    runner = web.AppRunner(create_app(settings, view, publish=publish), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stalled = [await _stall_in_body(port, "acme") for _ in range(4)]  # twice the slots
    try:
        async with ClientSession(f"http://127.0.0.1:{port}", headers=AUTH) as client:
            async with asyncio.timeout(10):  # bounds a hang: they answer at once when no slot is held
                assert (await client.get("/healthz")).status in (200, 503)
                assert (await client.get("/api/accounts/acme")).status == 200
                stalled[1][1].transport.abort()  # gone mid-body: a 400, not an unexpected error
                status_line = await stalled[0][0].readline()
            assert b" 408 " in status_line
            metrics = await (await client.get("/metrics")).text()
            assert 'status="400"' in metrics and 'status="500"' not in metrics, metrics
            profile = await client.post("/api/accounts/acme/profile", json={"name": "Acme"})
            assert profile.status == 202
    finally:
        for _, writer in stalled:
            writer.close()
        await runner.cleanup()
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert len(sent) == 1


# -- a replayed history: writes dated now would move its partitions to today ---------------------

DAY = timedelta(days=1)


async def project_stream_times(url: str, prefix: str, times: dict[int, datetime]) -> None:
    writer = RedisProjection(connect(url), prefix, META, min_interval_s=0.0)
    for partition, at in times.items():
        writer.partition(partition, PeriodSums(), [], int(at.timestamp() * 1000))
    assert await writer.drain()
    await writer.close()


CLEAR = {"clear": True, "author": "ana@example.com"}


@contextlib.asynccontextmanager
async def view_at(
    sent: Sent, known: tuple[str, str], times: dict[int, datetime]
) -> AsyncIterator[TestClient[Any, Any]]:
    """A view over the `known` projection whose partitions' stream times are `times`."""
    await project_stream_times(*known, times)
    client = await client_for(sent, *known)
    try:
        yield client
    finally:
        await client.close()


async def test_a_write_dated_now_on_a_replayed_history_is_a_409_saying_how_to_date_it(
    sent: Sent, known: tuple[str, str]
) -> None:
    """Posted on a history that ended two years ago (a replayed simulation, a backfill), an
    override dated now moved its partition's stream time to today: every account there was
    re-scored as of today (silence and renewal alerts by the dozen), and the rest of the history
    was refused as too late. Nothing could undo it."""
    ended = datetime(2024, 8, 31, 23, 0, tzinfo=UTC)
    async with view_at(sent, known, {p: ended - p * DAY for p in range(4)}) as client:
        response = await client.post("/api/accounts/acme/override", json=CLEAR, headers=AUTH)
        assert response.status == 409
        error = (await response.json())["error"]
        assert error.startswith("the portfolio's events end at 2024-08-31T23:00:00Z, "), error
        assert 'give the write a time of the history: "occurred_at": "2024-08-31T23:00:00Z"' in error
        assert sent == []

        dated = {**CLEAR, "occurred_at": "2024-08-31T12:00:00Z"}
        response = await client.post("/api/accounts/acme/override", json=dated, headers=AUTH)
        assert response.status == 202, await response.text()
        assert (await response.json())["occurred_at"] == "2024-08-31T12:00:00Z"
        [(_, _, value)] = sent
        assert orjson.loads(value)["occurred_at"] == "2024-08-31T12:00:00Z"


async def test_a_write_dated_past_its_partitions_allowed_lateness_is_a_409(
    sent: Sent, known: tuple[str, str]
) -> None:
    """The workers would dead-letter it as too late, after a 202."""
    now = datetime.now(UTC)
    async with view_at(sent, known, dict.fromkeys(range(4), now)) as client:
        dated = {**CLEAR, "occurred_at": (now - 8 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")}
        response = await client.post("/api/accounts/acme/override", json=dated, headers=AUTH)
        assert response.status == 409
        assert "the workers would refuse it as too late" in (await response.json())["error"]
        assert sent == []


async def test_a_write_dated_now_on_a_live_portfolio_is_taken_even_where_its_partition_is_quiet(
    sent: Sent, known: tuple[str, str]
) -> None:
    now = datetime.now(UTC)
    quiet = now - 40 * DAY
    async with view_at(sent, known, {0: now, 1: quiet, 2: quiet, 3: quiet}) as client:
        for account in KNOWN:
            response = await client.post(f"/api/accounts/{account}/override", json=CLEAR, headers=AUTH)
            assert response.status == 202, await response.text()
        assert len(sent) == 2


async def test_a_write_dated_a_minute_ahead_of_the_views_clock_is_taken(
    view: TestClient[Any, Any], sent: Sent
) -> None:
    """A client's clock a little ahead of the view's: within `MAX_AHEAD_MS`."""
    body = {"clear": True, "author": "a", "occurred_at": in_days(1 / 1440)}
    response = await view.post("/api/accounts/acme/override", json=body, headers=AUTH)
    assert response.status == 202, await response.text()
    assert len(sent) == 1
