"""Command-line options several commands share, declared once: same name, type and bounds.

Each factory takes the help text where the commands word it for their own use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from streamer.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

LOGLEVELS = ("debug", "info", "warning")


class FloatRange(click.FloatRange):
    """click's `FloatRange` without `nan` and `inf`: `nan` passes every bound (it compares false)
    and `inf` any lower one, and either then stopped a command with a traceback or made it wait
    for ever (`--timeout nan`)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def events_argument() -> Decorator[Any]:
    """EVENTS: an existing file of contract events (JSON lines, optionally .gz), whose name has no
    control characters: the progress bar and the errors name it, and a name holding a terminal's
    escape sequence (from a shared folder, an archive) set the terminal's title and colours."""
    return click.argument(
        "events",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        callback=_printable_name,
    )


def _printable_name(context: click.Context, parameter: click.Parameter, path: Path) -> Path:
    if not str(path).isprintable():
        raise click.BadParameter(
            f"the file name {str(path)!r} holds control characters: rename the file", context, parameter
        )
    return path


def score_config_option(help: str = "Score configuration (TOML).") -> Decorator[Any]:
    """`--config FILE` (as `config_path`): an existing score configuration file."""
    return click.option(
        "--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=help
    )


def partitions_option(help: str) -> Decorator[Any]:
    """`--partitions N`, 1-1024; None leaves it to the settings."""
    return click.option("--partitions", type=click.IntRange(1, 1024), default=None, help=help)


def bootstrap_option(
    help: str = "Kafka bootstrap servers (default HEALTHSTREAM_KAFKA_BOOTSTRAP, else 127.0.0.1 at "
    "HEALTHSTREAM_KAFKA_PORT, 9092).",
) -> Decorator[Any]:
    """`--bootstrap HOST:PORT,...`; None leaves it to the settings."""
    return click.option("--bootstrap", help=help)


def connect_timeout_option(default: float, help: str) -> Decorator[Any]:
    """`--connect-timeout S` (as `connect_timeout_s`): seconds to wait for the broker, above 0."""
    return click.option(
        "--connect-timeout",
        "connect_timeout_s",
        default=default,
        show_default=True,
        type=FloatRange(min=0, min_open=True),
        help=help,
    )


def loglevel_option() -> Decorator[Any]:
    """`--loglevel debug|info|warning`, info by default."""
    return click.option(
        "--loglevel",
        default="info",
        show_default=True,
        type=click.Choice(LOGLEVELS),
        help="Least severe log lines written (one JSON object per line, to stderr).",
    )


def quiet_option(help: str) -> Decorator[Any]:
    """`--quiet`: no progress output."""
    return click.option("--quiet", is_flag=True, help=help)


def now_option() -> Decorator[Any]:
    """`--now`: when a file's events count as published, for the bound on event time."""
    return click.option(
        "--now",
        type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]),
        default=None,
        help="When the file's events count as published, for the bound on event time (an event more "
        "than input.max_skew_hours after it is rejected). Default: the start of the run, which "
        "admits all past data. E.g. 2024-06-01 (UTC) or 2024-06-01T00:00:00+00:00.",
    )


# The options that set a runtime setting, where their name is not the setting's.
OPTION_OF = {"kafka_bootstrap": "--bootstrap", "score_config": "--config"}


def settings_with(**overrides: Any) -> Settings:
    """The runtime settings, with the options given laid over the environment. A bad option is a
    usage error naming it (`--bootstrap 127.0.0.1:abc` blamed HEALTHSTREAM_KAFKA_BOOTSTRAP, which
    was not set); a bad variable is left to the command's handler, which names the variable."""
    from pydantic import ValidationError

    from streamer.contract.messages import plain_message
    from streamer.settings import Settings

    values = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**values)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            name = str(item["loc"][0]) if item["loc"] else ""
            if name in values:
                option = OPTION_OF.get(name, "--" + name.replace("_", "-"))
                raise click.BadParameter(plain_message(item), param_hint=option) from None
        raise
