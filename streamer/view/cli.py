"""`streamer view`: serve the JSON API, the dashboard and /metrics over the Redis projection."""

from __future__ import annotations

import click

from streamer.cli_options import loglevel_option
from streamer.logs import configure_logging


@click.command("view")
@click.option("--host", help="Address to bind (default HEALTHSTREAM_VIEW_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default HEALTHSTREAM_VIEW_PORT, 8000).")
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
    takes `/?access_token=<token>`).
    """
    from aiohttp import web

    from streamer.settings import Settings
    from streamer.view.app import create_app
    from streamer.view.settings import ViewSettings

    view_settings = ViewSettings()
    view_settings = view_settings.model_copy(
        update={"host": host or view_settings.host, "port": view_settings.port if port is None else port}
    )
    settings = Settings()
    if redis_url:
        settings = settings.model_copy(update={"redis_url": redis_url})
    configure_logging(loglevel)
    click.echo(
        f"healthstream view of {settings.app_id!r} on http://{view_settings.host}:{view_settings.port}/ "
        f"(Redis {settings.redis_url}; auth {'on' if view_settings.secret else 'off'})",
        err=True,
    )
    web.run_app(
        create_app(settings, view_settings),
        host=view_settings.host,
        port=view_settings.port,
        print=None,
        access_log=None,
    )
