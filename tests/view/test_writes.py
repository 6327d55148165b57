"""The view's writes: a person's profile, override and clearing become one validated input event
each, published (here to a fake publisher) to the input topic; the view keeps nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streamer.contract.decode import decode_event
from streamer.settings import Settings
from streamer.view.app import create_app
from streamer.view.errors import Unavailable
from streamer.view.settings import ViewSettings

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Sent = list[tuple[str, bytes, bytes]]


async def client_for(sent: Sent, token: str | None = TOKEN, fail: bool = False) -> TestClient[Any, Any]:
    async def publish(topic: str, key: bytes, value: bytes) -> None:
        if fail:
            raise Unavailable("the broker at 127.0.0.1:1 did not take the event; nothing was published")
        sent.append((topic, key, value))

    settings = Settings(redis_url="redis://127.0.0.1:1/0", app_id="writes", kafka_bootstrap="127.0.0.1:1")
    app = create_app(settings, ViewSettings(token=token, kafka_check=False), publish=publish)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def sent() -> Sent:
    return []


@pytest.fixture
async def view(sent: Sent) -> AsyncIterator[TestClient[Any, Any]]:
    client = await client_for(sent)
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
        ({"clear": "yes", "author": "a"}, "'clear' must be true or false"),
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


async def test_writes_need_the_token_and_a_view_without_one_refuses_them(sent: Sent) -> None:
    secured = await client_for(sent)
    try:
        response = await secured.post("/api/accounts/acme/profile", json={"name": "Acme"})
        assert response.status == 401
        wrong = await secured.post(
            "/api/accounts/acme/profile", json={}, headers={"Authorization": "Bearer no"}
        )
        assert wrong.status == 401
    finally:
        await secured.close()
    open_view = await client_for(sent, token=None)
    try:
        response = await open_view.post("/api/accounts/acme/profile", json={"name": "Acme"})
        assert response.status == 403
        assert "HEALTHSTREAM_VIEW_TOKEN" in (await response.json())["error"]
    finally:
        await open_view.close()
    assert sent == []


async def test_a_broker_that_does_not_acknowledge_is_a_503(sent: Sent) -> None:
    client = await client_for(sent, fail=True)
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
    assert response.status == 503  # a read of account 'acme/profile' (no Redis here), not a write
