"""HTTP handlers: parse the request, ask the service, answer JSON. No query logic here."""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import orjson
from aiohttp import hdrs, web
from yarl import URL

from streamer.view import actions, export, params
from streamer.view.dashboard import Page
from streamer.view.errors import BadRequest, NotFound, Unavailable
from streamer.view.health import Health
from streamer.view.metrics import CONTENT_TYPE, Metrics
from streamer.view.publisher import Writer
from streamer.view.security import PAGE_PATHS, PAGE_PREFIXES
from streamer.view.service import ViewService

SERVICE = web.AppKey("service", ViewService)
HEALTH = web.AppKey("health", Health)
METRICS = web.AppKey("metrics", Metrics)
PAGE = web.AppKey("page", Page)
WRITER = web.AppKey("writer", Writer)
ACCOUNT_PAGE = web.AppKey("account_page", Page)
MISSING_PAGE = web.AppKey("missing_page", Page)  # an unknown account's, its message in place
DENIED_PAGE = web.AppKey("denied_page", Page)  # a page asked for by a browser without the token
MAX_ACCOUNT_ID = 256


def json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


UNREADABLE_HEADER = "X-Healthstream-Unreadable"  # a CSV list's entries left out, as `unreadable` in JSON


def csv(body: bytes, name: str, unreadable: int | None = None) -> web.Response:
    headers = {"Content-Disposition": f'attachment; filename="{name}.csv"'}
    if unreadable is not None:
        headers[UNREADABLE_HEADER] = str(unreadable)
    return web.Response(body=body, content_type="text/csv", charset="utf-8", headers=headers)


def listing(
    request: web.Request,
    answer: dict[str, Any],
    rows: str,
    to_csv: Callable[[Sequence[dict[str, Any]]], bytes],
    name: str,
) -> web.Response:
    """The answer as JSON, or with `format=csv` its `rows` list as the CSV download `name`.csv
    (with the count of entries left out unreadable in a header: a CSV has no place for it)."""
    if params.wants_csv(request.query):
        return csv(to_csv(answer[rows]), name, answer.get("unreadable"))
    return json(answer)


def _account_id(request: web.Request) -> str:
    account_id = request.match_info["account_id"]
    if not 1 <= len(account_id) <= MAX_ACCOUNT_ID:
        raise BadRequest(f"an account id has 1 to {MAX_ACCOUNT_ID} characters")
    return account_id


async def account(request: web.Request) -> web.Response:
    params.no_params(request.query)
    return json(await request.app[SERVICE].account(_account_id(request)))


async def account_history(request: web.Request) -> web.Response:
    account_id = _account_id(request)
    days = params.history_query(request.query)
    answer = await request.app[SERVICE].history(account_id, days)
    return listing(request, answer, "points", export.history, "history")


async def account_timeline(request: web.Request) -> web.Response:
    account_id = _account_id(request)
    per_kind = params.timeline_query(request.query)
    answer = await request.app[SERVICE].timeline(account_id, per_kind)
    return listing(request, answer, "items", export.timeline, "timeline")


async def account_alerts(request: web.Request) -> web.Response:
    account_id = _account_id(request)
    answer = await request.app[SERVICE].alerts(params.alert_query(request.query, account_id))
    return listing(request, answer, "items", export.alerts, "alerts")


async def _write(request: web.Request, event_type: str, body: dict[str, Any]) -> web.Response:
    return json(await request.app[WRITER].write(event_type, _account_id(request), body), 202)


async def set_profile(request: web.Request) -> web.Response:
    """POST: publish `account.updated` (the whole profile) for the account."""
    params.no_params(request.query)
    return await _write(request, actions.PROFILE, actions.profile_body(await request.read()))


async def set_override(request: web.Request) -> web.Response:
    """POST: publish `health.override` (or, with `"clear": true`, its removal)."""
    params.no_params(request.query)
    body = actions.body_object(await request.read())
    return await _write(request, actions.override_kind(body), body)


async def clear_override(request: web.Request) -> web.Response:
    """DELETE: publish `health.override_cleared` (body: `author`, optional `reason`)."""
    params.no_params(request.query)
    return await _write(request, actions.CLEARED, actions.body_object(await request.read()))


async def accounts(request: web.Request) -> web.Response:
    answer = await request.app[SERVICE].accounts(params.account_query(request.query))
    return listing(request, answer, "items", export.accounts, "accounts")


async def filters(request: web.Request) -> web.Response:
    owners, segments = params.filters_query(request.query)
    return json(await request.app[SERVICE].filters(owners, segments))


async def portfolio(request: web.Request) -> web.Response:
    params.no_params(request.query)
    return json(await request.app[SERVICE].portfolio())


async def months(request: web.Request) -> web.Response:
    params.no_params(request.query)
    return json(await request.app[SERVICE].months())


async def period(request: web.Request) -> web.Response:
    m1, m2 = params.period_query(request.query)
    return json(await request.app[SERVICE].period(m1, m2))


async def alerts(request: web.Request) -> web.Response:
    answer = await request.app[SERVICE].alerts(params.alert_query(request.query))
    return listing(request, answer, "items", export.alerts, "alerts")


async def healthz(request: web.Request) -> web.Response:
    status, body = await request.app[HEALTH].check()
    return json(body, status)


async def metrics(request: web.Request) -> web.Response:
    params.no_params(request.query)
    body = await request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    """The description, its `servers` naming the address this request reached (host and port)."""
    params.no_params(request.query)
    document = orjson.loads((resources.files("streamer.view") / "openapi.json").read_bytes())
    document["servers"] = [{"url": server_url(request.scheme, request.headers.get(hdrs.HOST))}]
    return json(document)


# Host = uri-host [":" port] (RFC 9110, 7.2), of the names and addresses a view is reached at
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST = re.compile(
    rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{{1,5}}))?"
)


def server_url(scheme: str, host: str | None) -> str:
    """The origin a client reached: `scheme` and the host and port of its Host header; `/` when
    it sent none (HTTP/1.0) or one that is no host[:port]: a relative server URL, which OpenAPI
    resolves against where the document was fetched from, i.e. that same origin. The header is
    the client's: anything in it is an answer, never a 500 (yarl refuses a port out of range, an
    empty host, a byte idna cannot encode...)."""
    if host is None:
        return "/"
    found = _HOST.fullmatch(host)
    if found is None or (found["port"] is not None and not 1 <= int(found["port"]) <= 65535):
        return "/"
    try:
        if found["ipv6"] is not None:
            ipaddress.IPv6Address(found["ipv6"])
        return str(URL.build(scheme=scheme, authority=host).origin())
    except ValueError:  # not an IPv6 address; or anything else yarl refuses (UnicodeError is one)
        return "/"


async def dashboard(request: web.Request) -> web.Response:
    return _page(request.app[PAGE])


async def account_view(request: web.Request) -> web.Response:
    """The account page; its script reads the id from the address and asks the API. An account
    the projection does not have is a 404 page saying so; when the projection cannot be asked,
    the account page still comes and its script reports what the API answers."""
    account_id = _account_id(request)
    try:
        await request.app[SERVICE].require(account_id)
    except NotFound as missing:
        page = request.app[MISSING_PAGE]
        body = page.html.replace(b"<!--MESSAGE-->", html.escape(missing.message).encode(), 1)
        return _page(Page(body, page.csp), status=404)
    except Unavailable:
        pass
    page = request.app[ACCOUNT_PAGE]
    return _page(Page(with_account_id(page.html, account_id), page.csp))


def wants_page(request: web.Request) -> bool:
    """Whether a browser is loading one of the pages (a GET of a page that accepts HTML): a
    refusal is then a page too, not the API's JSON. The pages' own fetches are API calls."""
    accepted = request.headers.get("Accept", "")
    page = request.path in PAGE_PATHS or request.path.startswith(PAGE_PREFIXES)
    return request.method in ("GET", "HEAD") and page and "text/html" in accepted


def denied(request: web.Request, message: str) -> web.Response:
    """A 401 as a page: `message` (it says how to open the page) in place, as text."""
    page = request.app[DENIED_PAGE]
    body = page.html.replace(b"<!--MESSAGE-->", html.escape(message).encode(), 1)
    return _page(Page(body, page.csp), status=401)


ACCOUNT_BODY = b'<body class="account-page">'


def with_account_id(page: bytes, account_id: str) -> bytes:
    """The account page with the id this address names, as the view read it, on its body: the
    script takes it from there rather than decode the address itself (`/accounts/100%`, an id
    with a bare '%', is no URI its decodeURIComponent reads)."""
    attribute = f' data-account-id="{html.escape(account_id, quote=True)}">'.encode()
    return page.replace(ACCOUNT_BODY, ACCOUNT_BODY[:-1] + attribute, 1)


def _page(page: Page, status: int = 200) -> web.Response:
    return web.Response(
        body=page.html,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": page.csp},
    )
