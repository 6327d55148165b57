"""`streamer view`: serve the JSON API, the dashboard and /metrics over the Redis projection."""

from __future__ import annotations

import os
import re

import click

from streamer.cli_options import loglevel_option
from streamer.listening import ListenFault, listen_fault
from streamer.logs import configure_logging
from streamer.view.malformed import quiet_malformed_requests


@click.command("view")
@click.option("--host", help="Address to bind (default HEALTHSTREAM_VIEW_HOST, 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port (default HEALTHSTREAM_VIEW_PORT, 8000; 0: any free port, printed at the start).",
)
@click.option(
    "--redis-url",
    help="Projection store (default HEALTHSTREAM_REDIS_URL, else 127.0.0.1 at HEALTHSTREAM_REDIS_PORT).",
)
@loglevel_option()
def view(host: str | None, port: int | None, redis_url: str | None, loglevel: str) -> None:
    """Serve live state from the workers' Redis projection: JSON API, dashboard at /, /metrics.

    Keeps no state of its own: run as many as needed; a restart loses nothing. Reads the
    projection of HEALTHSTREAM_APP_ID. Its write routes (POST/DELETE an account's override, POST
    its profile; they need the token) publish one input event each to Kafka
    (HEALTHSTREAM_KAFKA_BOOTSTRAP) for the workers to apply. Set HEALTHSTREAM_VIEW_TOKEN to
    require `Authorization: Bearer <token>` on every route but /healthz (the dashboard also
    takes `/?access_token=<token>`). /healthz is degraded, with the reason, when the broker does
    not answer, no worker reported, a worker left input waiting with nothing committed for
    HEALTHSTREAM_VIEW_WORKER_STALL_S (60 s), or Redis can lose or refuse the projection's writes.
    """
    from aiohttp import web

    from streamer.redacted import without_password
    from streamer.settings import Settings, redis_url_problem
    from streamer.view.app import create_app
    from streamer.view.settings import ViewSettings

    view_settings = ViewSettings()
    view_settings = view_settings.model_copy(
        update={"host": host or view_settings.host, "port": view_settings.port if port is None else port}
    )
    settings = Settings()
    if redis_url:
        # The option gets the variable's check (`redis_url_problem`): a copy is not validated.
        if problem := redis_url_problem(redis_url):
            shown = without_password(redis_url)
            raise click.UsageError(f"--redis-url {shown!r} is not a Redis URL ({problem})")
        settings = settings.model_copy(update={"redis_url": redis_url})
    try:
        app = create_app(settings, view_settings)
    except ValueError as error:  # redis-py refuses the URL (no redis://, rediss:// or unix://)
        where = "--redis-url" if redis_url else "HEALTHSTREAM_REDIS_URL"
        shown = without_password(settings.redis_url)
        raise click.UsageError(f"{where} {shown!r} is not a Redis URL ({error})") from None
    configure_logging(loglevel)
    quiet_malformed_requests()
    address = url(view_settings.host, view_settings.port)
    listening = False

    def banner(aiohttp_message: str) -> None:  # aiohttp calls it once every socket listens
        nonlocal listening, address
        listening = True
        address = url(view_settings.host, bound_port(aiohttp_message, view_settings.port))
        click.echo(
            f"healthstream view of {settings.app_id!r} on {address} "
            f"(Redis {without_password(settings.redis_url)}; {_auth(address, view_settings.secret)})",
            err=True,
        )

    try:
        web.run_app(app, host=view_settings.host, port=view_settings.port, print=banner, access_log=None)
    except (OSError, ValueError) as error:  # ValueError: a host idna cannot encode (x..y), a NUL
        if listening:
            raise
        raise click.ClickException(f"cannot listen on {address}: {bind_problem(error)}") from None


def _auth(address: str, secret: object) -> str:
    """The banner's word on auth: where a browser opens the dashboard when a token is needed."""
    if not secret:
        return "auth off"
    return f"auth on: open the dashboard at {address}?access_token=<HEALTHSTREAM_VIEW_TOKEN>"


def url(host: str, port: int) -> str:
    """The view's address as a URL: an IPv6 address in brackets (http://[::1]:8000/)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/"


def bound_port(aiohttp_message: str, requested: int) -> int:
    """The port the view listens on, from aiohttp's `Running on http://HOST:PORT` line (the port
    the system chose for `--port 0`, which the banner printed as 0); `requested` when the line
    names none."""
    found = re.search(r"Running on \S+:(\d+)(?=[\s,]|$)", aiohttp_message)
    return int(found.group(1)) if found else requested


def bind_problem(error: OSError | ValueError) -> str:
    """Why the view could not listen, and which setting to change."""
    fault = listen_fault(error)
    if fault is ListenFault.NO_HOST_NAME:  # the idna codec's own reason is its cause
        return (
            f"the host is not an address of this machine (not a host name: {error.__cause__ or error}); "
            "choose --host / HEALTHSTREAM_VIEW_HOST"
        )
    if fault in (ListenFault.UNKNOWN_HOST, ListenFault.NOT_THIS_MACHINE):
        assert isinstance(error, OSError)
        detail = (
            error.strerror
            if fault is ListenFault.UNKNOWN_HOST or error.errno is None
            else os.strerror(error.errno)
        )
        return (
            f"the host is not an address of this machine ({detail}); choose --host / HEALTHSTREAM_VIEW_HOST"
        )
    if fault is ListenFault.PORT_IN_USE:
        return "the port is in use (another view?); choose --port / HEALTHSTREAM_VIEW_PORT"
    if fault is ListenFault.PORT_NEEDS_PRIVILEGE:
        return "permission denied (ports below 1024 need privileges); choose --port / HEALTHSTREAM_VIEW_PORT"
    return str(error)
