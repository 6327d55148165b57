"""`streamer notify`: deliver alerts to webhooks (generic JSON or Slack)."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from streamer.cli_options import bootstrap_option, connect_timeout_option, loglevel_option, settings_with
from streamer.logs import configure_logging
from streamer.notify.config import NotifyConfigError, load_notify_config

EXAMPLE = """\b
Example config (TOML):
  [[destinations]]
  name = "cs-critical"
  url = "https://hooks.slack.com/services/T000/B000/XXXX"
  format = "slack"                 # or "json" (default)
  min_severity = "critical"        # info (default), warning, critical
  rules = ["scheduled_cancellation", "payment_failed"]   # empty: every rule
  rate_per_minute = 20
  burst = 5

\b
  [[destinations]]
  name = "crm"
  url = "http://127.0.0.1:9000/hooks/alerts"
  digest_seconds = 60              # one message per minute with the alerts collected
  owners = ["alice@example.com"]   # only alerts whose owner is one of these

\b
  [retry]                          # exponential backoff, until delivered by default
  initial_seconds = 1
  max_seconds = 300
"""


def _metrics_host(_context: click.Context, _parameter: click.Parameter, host: str) -> str:
    """An empty host listened on every interface, as 0.0.0.0 does, without saying so."""
    if not host.strip():
        raise click.BadParameter(
            "an empty host would listen on every interface; give 0.0.0.0 (or ::) if that is meant",
            param_hint="--metrics-host",
        )
    return host


def _metrics_host_needs_a_port(metrics_port: int | None) -> None:
    """A --metrics-host given without --metrics-port was ignored: no metrics were served."""
    given = click.get_current_context().get_parameter_source("metrics_host")
    if metrics_port is None and given is not ParameterSource.DEFAULT:
        raise click.BadParameter(
            "serves nothing without --metrics-port; give both", param_hint="--metrics-host"
        )


@click.command("notify", epilog=EXAMPLE)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Notifier configuration (TOML): [[destinations]] with url, format and filters.",
)
@bootstrap_option()
@click.option(
    "--group",
    help="Consumer group (default HEALTHSTREAM_APP_ID + '-notify'); each destination commits "
    "under GROUP.NAME, so one that is down holds back only its own alerts.",
)
@click.option(
    "--start-from",
    type=click.Choice(["latest", "earliest"]),
    default="latest",
    show_default=True,
    help="Where a group with no committed offsets starts: only new alerts, or all on the topic.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus /metrics and /healthz on this port (127.0.0.1 unless --metrics-host).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    callback=_metrics_host,
    help="Address for --metrics-port (0.0.0.0: every interface).",
)
@connect_timeout_option(30.0, "Seconds to wait for the broker at start-up before giving up (exit 1).")
@loglevel_option()
def notify(
    config_path: Path,
    bootstrap: str | None,
    group: str | None,
    start_from: str,
    metrics_port: int | None,
    metrics_host: str,
    loglevel: str,
    connect_timeout_s: float,
) -> None:
    """Deliver alerts from the alerts topic to HTTP webhooks.

    Each alert goes to every destination whose filters (rules, min_severity, owners,
    segments) it passes, as a generic JSON body or a Slack incoming-webhook message, one per
    alert or as a digest. Failed requests are retried with exponential backoff: 5xx, 429, 408,
    timeouts and refused connections, and 3xx, 401, 403, 404 and 410, which say the
    destination's URL or credentials are wrong (its alerts wait until the file is fixed). Other
    answers (400, 413, 422, ...) are final: that message is rejected, logged and not retried.
    A per-destination token bucket limits the rate. Each destination reads the topic in a
    consumer group of its own (GROUP.NAME). Delivery is at least once: a destination commits
    only past alerts it delivered or rejected. What each received is kept on the compacted
    topic `<prefix>notify.sent`, only deliveries counting: a restart does not send an alert
    twice, and a rejected alert is sent again when its group is rewound to it. Stop with Ctrl-C
    or SIGTERM.
    """
    from streamer.notify.service import MetricsUnavailable, NotifyOptions, run_notifier
    from streamer.stream.broker import BrokerUnavailable
    from streamer.stream.cli import fail
    from streamer.stream.topics import TopicsUnusable

    _metrics_host_needs_a_port(metrics_port)
    try:
        config = load_notify_config(config_path)
    except NotifyConfigError as exc:
        raise click.ClickException(str(exc)) from None
    # As for `streamer worker`: a bad --bootstrap is a usage error naming the option (it blamed
    # HEALTHSTREAM_KAFKA_BOOTSTRAP, which was not set).
    settings = settings_with(kafka_bootstrap=bootstrap)
    options = NotifyOptions(
        group_id=group or f"{settings.app_id}-notify",
        start_from=start_from,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        connect_timeout_s=connect_timeout_s,
    )
    configure_logging(loglevel)
    try:
        run_notifier(settings, config, options)
    except (BrokerUnavailable, TopicsUnusable) as error:
        fail("notify", error)
    except MetricsUnavailable as error:  # raised before any group is joined
        raise click.BadParameter(str(error), param_hint=error.option) from None
