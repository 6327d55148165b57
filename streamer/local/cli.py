"""`streamer local up | down | status | logs`: the project-managed Kafka broker and Redis."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from streamer.cli_options import FloatRange
from streamer.local import stack
from streamer.local.errors import StackError
from streamer.local.settings import (
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_REDIS_PORT,
    DEFAULT_TIMEOUT,
    ENV_CACHE_DIR,
    ENV_CONTROLLER_PORT,
    ENV_KAFKA_PORT,
    ENV_REDIS_PORT,
    ENV_STACK_DIR,
    StackSettings,
)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_NOT_UP = 3


def _stack_dir_option(func: F) -> F:
    return click.option(
        "--stack-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"State folder (pids, logs, data). Env {ENV_STACK_DIR}; default <repo>/.local/stack.",
    )(func)


def _port_options(func: F) -> F:
    options = [
        click.option(
            "--kafka-port",
            type=click.IntRange(1, 65535),
            help=f"Kafka PLAINTEXT port on 127.0.0.1. Env {ENV_KAFKA_PORT}; default {DEFAULT_KAFKA_PORT}.",
        ),
        click.option(
            "--controller-port",
            type=click.IntRange(1, 65535),
            help=f"KRaft controller port. Env {ENV_CONTROLLER_PORT}; default {DEFAULT_CONTROLLER_PORT}.",
        ),
        click.option(
            "--redis-port",
            type=click.IntRange(1, 65535),
            help=f"Redis port on 127.0.0.1. Env {ENV_REDIS_PORT}; default {DEFAULT_REDIS_PORT}.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(**options: Any) -> StackSettings:
    try:
        return StackSettings.from_env(**{k: v for k, v in options.items() if v is not None})
    except StackError as error:
        raise click.ClickException(str(error)) from error


def _echo(message: str) -> None:
    click.echo(message, err=True)


def _print_status(current: stack.StackStatus) -> None:
    for service in current.services:
        pid = f"pid {service.pid}" if service.pid is not None else "-"
        click.echo(f"{service.name:<6} {service.state:<9} {pid:<11} {service.address}")


@click.group("local")
def local() -> None:
    """Run Kafka (single KRaft node) and Redis on 127.0.0.1 for development and tests.

    No Docker needed: Kafka runs from jars Maven downloads once into <repo>/.cache
    (needs java and mvn), Redis from the Debian redis-server package (installed with
    apt-get when missing). State, logs and data live in <repo>/.local/stack.
    """


@local.command(short_help="Start Kafka and Redis and wait until they answer.")
@_port_options
@_stack_dir_option
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where the Kafka jars are kept. Env {ENV_CACHE_DIR}; default <repo>/.cache.",
)
@click.option(
    "--timeout",
    type=FloatRange(1),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for both services to answer.",
)
def up(timeout: float, **options: Any) -> None:
    """Start Kafka and Redis (whatever is not running) and wait until both answer.

    Idempotent: when the stack is already up it says so and exits 0. The first run
    downloads the Kafka jars with Maven (can take minutes) and may install redis-server
    with apt-get. On success prints the addresses, the stack directory and the ports as
    HEALTHSTREAM_* exports (`eval "$(streamer local up)"`: `status` and `down` then find it).

    \b
    Examples:
      streamer local up
      HEALTHSTREAM_KAFKA_PORT=19092 streamer local up --redis-port 16379 --stack-dir /tmp/s
    """
    settings = _settings(**options)
    try:
        info = stack.ensure_up(settings, echo=_echo, timeout=timeout)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    if not info.started:
        pids = f"kafka pid {info.kafka_pid}, redis pid {info.redis_pid}"
        _echo(f"local stack already running ({pids})")
    # Where this stack lives too: a shell that evaluates these finds it again with `status`,
    # `logs` and `down` (a --stack-dir given here was otherwise forgotten: `down` found nothing).
    where = {
        ENV_STACK_DIR: str(settings.stack_dir.resolve()),
        ENV_KAFKA_PORT: str(settings.kafka_port),
        ENV_CONTROLLER_PORT: str(settings.controller_port),
        ENV_REDIS_PORT: str(settings.redis_port),
    }
    for name, value in {**info.env(), **where}.items():
        click.echo(f"export {name}={shlex.quote(value)}")


@local.command(short_help="Stop Kafka and Redis.")
@_stack_dir_option
@click.option(
    "--timeout",
    type=FloatRange(1),
    default=30.0,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
def down(timeout: float, stack_dir: Path | None) -> None:
    """Stop Kafka and Redis (SIGTERM, then SIGKILL). Idempotent; keeps the data."""
    settings = _settings(stack_dir=stack_dir)
    try:
        stopped = stack.stop(settings, echo=_echo, timeout=timeout)
    except StackError as error:
        raise click.ClickException(str(error)) from error
    if not stopped:
        _echo("local stack is not running")


@local.command(short_help="Show state, pid and address; exit 3 unless both up.")
@_port_options
@_stack_dir_option
def status(**options: Any) -> None:
    """Print each service's state, pid and address; exit 0 when both are up, 3 otherwise."""
    current = stack.status(_settings(**options))
    _print_status(current)
    if not current.all_up:
        raise SystemExit(EXIT_NOT_UP)


@local.command(short_help="Print the tail of the service logs.")
@click.argument("service", type=click.Choice(["kafka", "redis"]), required=False, metavar="[SERVICE]")
@click.option("-n", "--lines", type=click.IntRange(1), default=40, show_default=True, help="Lines shown.")
@_stack_dir_option
def logs(service: str | None, lines: int, stack_dir: Path | None) -> None:
    """Print the tail of the logs of SERVICE (kafka or redis; default: both), with their paths."""
    from streamer.local import proc

    current = stack.status(_settings(stack_dir=stack_dir))
    for entry in current.services:
        if service in (None, entry.name):
            click.echo(proc.log_tails(list(entry.logs), lines))
