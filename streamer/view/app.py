"""The view's aiohttp application: routes, middlewares (errors, metrics, auth, headers), lifecycle."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import ClientPayloadError, web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestPayloadError
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from streamer.projection.redis_reader import ProjectionReader
from streamer.settings import Settings
from streamer.stream.access import KafkaAccess
from streamer.view import handlers
from streamer.view.dashboard import load_page
from streamer.view.errors import BadRequest, Problem, RequestTimeout, UnreadableBody
from streamer.view.health import Health
from streamer.view.metrics import Metrics
from streamer.view.publisher import KafkaPublisher, Publish, Writer
from streamer.view.security import bearer_auth, protective_headers, trusted_hosts
from streamer.view.service import ViewService
from streamer.view.settings import ViewSettings

log = logging.getLogger(__name__)

BODY_TIMEOUT_S = 10.0  # a write's body is at most 64 KB: this is a client that stalled

ROUTES = (
    ("/", handlers.dashboard),
    ("/healthz", handlers.healthz),
    ("/metrics", handlers.metrics),
    ("/openapi.json", handlers.openapi),
    ("/accounts/{account_id:.+}", handlers.account_view),
    ("/api/accounts", handlers.accounts),
    ("/api/filters", handlers.filters),
    ("/api/accounts/{account_id:.+}/history", handlers.account_history),
    ("/api/accounts/{account_id:.+}/timeline", handlers.account_timeline),
    ("/api/accounts/{account_id:.+}/alerts", handlers.account_alerts),
    ("/api/accounts/{account_id:.+}", handlers.account),
    ("/api/portfolio", handlers.portfolio),
    ("/api/months", handlers.months),
    ("/api/period", handlers.period),
    ("/api/alerts", handlers.alerts),
)


# Writes: each publishes one input event (registered before the GET catch-all of account ids).
WRITES = (
    ("POST", "/api/accounts/{account_id:.+}/profile", handlers.set_profile),
    ("POST", "/api/accounts/{account_id:.+}/override", handlers.set_override),
    ("DELETE", "/api/accounts/{account_id:.+}/override", handlers.clear_override),
)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def errors_and_metrics(metrics: Metrics) -> Middleware:
    """Problems and aiohttp's own 404/405 as JSON `{"error": ...}`; every answer timed and counted."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except Problem as problem:
            if problem.status == 401 and handlers.wants_page(request):  # a browser: a page, not JSON
                response = handlers.denied(request, problem.message)
            else:
                response = handlers.json({"error": problem.message}, problem.status)
            if problem.close:
                response.force_close()
            if problem.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="healthstream"'
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = handlers.json(
                {"error": f"{error.reason}: {request.method} {request.path}"}, error.status
            )
            response.headers.update({k: v for k, v in error.headers.items() if k == "Allow"})
        except Exception:
            log.exception("unexpected error", extra={"path": request.path})
            response = handlers.json({"error": "internal error (logged by the view)"}, 500)
        metrics.observe(_route(request), response.status, time.perf_counter() - started)
        return response

    return middleware


def admission(limit: int, body_timeout_s: float) -> Middleware:
    """At most `limit` requests at work at once (one per Redis connection of the pool); the rest
    of a burst waits here, in order of arrival, instead of timing out on the pool.

    A request's body is read before it takes a slot, within `body_timeout_s`: a client that sends
    its headers and stalls in the body holds its own connection, never a slot (with the body read
    inside the slot, `limit` such clients froze every answer, `/healthz` included)."""
    slots = asyncio.Semaphore(limit)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            await read_body(request, body_timeout_s)
        async with slots:
            return await handler(request)

    return middleware


async def read_body(request: web.Request, timeout_s: float) -> None:
    """Read the body into the request (its handler's `read()` returns it), or answer why not."""
    try:
        async with asyncio.timeout(timeout_s):
            await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    except (ConnectionError, ClientPayloadError) as error:  # the client went away mid-body
        raise BadRequest(f"the request body ended early ({type(error).__name__})") from None
    except RequestPayloadError as error:  # e.g. a Content-Encoding its bytes are not in
        # aiohttp reads what is left of a body after the answer, and would raise this again
        request.content.feed_eof()
        raise UnreadableBody(f"the request body cannot be read: {error}") from None


def connect_pooled(url: str, view: ViewSettings) -> Redis:
    """A client whose requests share at most `redis_pool_size` connections: a burst waits up to
    `redis_pool_timeout_s` for a free one (then the read fails: a 503) instead of failing at once.

    A read on a connection that died meanwhile (Redis restarted, a failover) is tried once more,
    at once, on a new connection: without it every pooled connection answered one 503 each
    after Redis came back (/healthz said "down" while Redis was up). Only on a connection error:
    a Redis that is truly down refuses the new connection at once too, and one that does not
    answer (a timeout) is not waited for twice."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=view.redis_pool_size,
        timeout=view.redis_pool_timeout_s,
        socket_connect_timeout=5.0,  # a burst opens many connections at once
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        health_check_interval=0,
    )
    return Redis.from_pool(pool)


def create_app(settings: Settings, view: ViewSettings, publish: Publish | None = None) -> web.Application:
    """The view over the projection of `settings.app_id` in `settings.redis_url`; writes go to
    the input topics through `publish` (default: a Kafka producer started on the first write)."""
    redis = connect_pooled(settings.redis_url, view)
    reader = ProjectionReader(redis, settings.app_id)
    metrics = Metrics(reader, view.worker_max_age_s)
    app = web.Application(
        middlewares=[
            protective_headers,
            errors_and_metrics(metrics),
            trusted_hosts(view.secret, view.host_names),
            bearer_auth(view.secret),
            admission(view.redis_pool_size, BODY_TIMEOUT_S),
        ]
    )
    service = ViewService(reader)
    app[handlers.SERVICE] = service
    access = KafkaAccess.of(settings)
    app[handlers.HEALTH] = Health(
        reader,
        access if view.kafka_check else None,
        view.worker_max_age_s,
        worker_stall_s=view.worker_stall_s,
        partitions=settings.partitions,
    )
    app[handlers.METRICS] = metrics
    app[handlers.PAGE] = load_page()
    app[handlers.ACCOUNT_PAGE] = load_page("account.html", "account.js")
    app[handlers.MISSING_PAGE] = load_page("missing.html", None)
    app[handlers.DENIED_PAGE] = load_page("denied.html", None)
    kafka = KafkaPublisher(access)  # connects on the first write only
    writes_enabled = view.secret is not None
    app[handlers.WRITER] = Writer(
        publish or kafka, service.require, service.stream_times, settings, enabled=writes_enabled
    )
    for method, path, handler in WRITES:
        app.router.add_route(method, path, handler)
    for path, handler in ROUTES:
        app.router.add_get(path, handler)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        yield
        await redis.aclose()
        await kafka.close()

    app.cleanup_ctx.append(lifecycle)
    return app
