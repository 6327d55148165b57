"""`streamer notify`'s own options: a mistake in one is a usage error naming it (exit 2), found
before the notifier waits for the broker or joins a consumer group."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result

from streamer.cli import main
from streamer.notify import service
from streamer.notify.config import load_notify_config
from streamer.settings import Settings


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "n.toml"
    path.write_text('[[destinations]]\nname = "x"\nurl = "http://127.0.0.1:9/hook"\n')
    return path


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def notify(config: Path, *args: str) -> Result:
    """`streamer notify` with no broker to answer (it would wait a second for one, then exit 1)."""
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    broker = f"127.0.0.1:{closed_port()}"
    options = ["--config", str(config), "--connect-timeout", "1", "--bootstrap", broker, *args]
    return CliRunner().invoke(main, ["notify", *options], env=clean)


def last_line(result: Result) -> str:
    assert "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    return result.output.strip().splitlines()[-1]


def test_a_bad_bootstrap_option_is_a_usage_error_naming_the_option(config: Path) -> None:
    """It blamed HEALTHSTREAM_KAFKA_BOOTSTRAP, which was not set (`streamer worker` named the option)."""
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    result = CliRunner().invoke(
        main, ["notify", "--config", str(config), "--bootstrap", "127.0.0.1:abc"], env=clean
    )
    assert result.exit_code == 2
    assert last_line(result) == (
        "Error: Invalid value for --bootstrap: '127.0.0.1:abc': the port must be a number from 1 to 65535"
    )


def test_a_metrics_port_in_use_is_a_usage_error_before_the_broker_is_waited_for(
    config: Path, taken_port: int
) -> None:
    """It ended in a traceback once every destination's consumer group had been joined."""
    result = notify(config, "--metrics-port", str(taken_port))
    assert result.exit_code == 2, result.output
    assert last_line(result) == (
        f"Error: Invalid value for --metrics-port: port {taken_port} on 127.0.0.1 is in use by another "
        "process: choose another port"
    )


def test_a_metrics_host_that_is_not_this_machines_is_a_usage_error_naming_it(config: Path) -> None:
    result = notify(config, "--metrics-port", str(closed_port()), "--metrics-host", "192.0.2.1")
    assert result.exit_code == 2, result.output
    assert last_line(result) == (
        "Error: Invalid value for --metrics-host: '192.0.2.1' is not an address of this machine: "
        "give one of its addresses"
    )


@pytest.mark.parametrize(
    ("error", "option", "says"),
    [
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "--metrics-host",
            "cannot be resolved",
        ),
        (
            OSError(errno.EADDRNOTAVAIL, "Cannot assign"),
            "--metrics-host",
            "is not an address of this machine",
        ),
        (OSError(errno.EADDRINUSE, "Address in use"), "--metrics-port", "port 9108 on h is in use"),
        (OSError(errno.EACCES, "Permission denied"), "--metrics-port", "port 9108 needs privileges"),
        (UnicodeError("label empty or too long"), "--metrics-host", "is not a host name"),
    ],
)
def test_each_reason_the_metrics_server_cannot_listen_names_the_option_to_change(
    error: OSError | ValueError, option: str, says: str
) -> None:
    """`--metrics-host nonexistent.invalid` ended in a socket.gaierror traceback, `x..y` in a
    UnicodeError one."""
    unavailable = service.metrics_unavailable(error, "x..y" if isinstance(error, ValueError) else "h", 9108)
    assert isinstance(unavailable, service.MetricsUnavailable)
    assert unavailable.option == option and says in str(unavailable)


async def test_healthz_says_starting_until_every_destination_reads(config: Path) -> None:
    """The metrics server now listens before the broker is waited for: /healthz must not say `ok`
    for a notifier that delivers nothing yet (nothing answered there before)."""
    options = service.NotifyOptions(group_id="g", metrics_port=0)
    notifier = service.Notifier(Settings(kafka_bootstrap="127.0.0.1:1"), load_notify_config(config), options)
    runner = await notifier.serve_metrics()
    assert runner is not None
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as reply:
                assert (reply.status, await reply.json()) == (503, {"status": "starting"})
            notifier.started = True
            async with session.get(f"http://127.0.0.1:{port}/healthz") as reply:
                assert (reply.status, (await reply.json())["status"]) == (200, "ok")
    finally:
        await runner.cleanup()


async def test_the_log_names_the_port_the_system_chose_for_metrics_port_0(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`--metrics-port 0` is served on a port the system picks; the log said 0."""
    options = service.NotifyOptions(group_id="g", metrics_port=0)
    notifier = service.Notifier(Settings(kafka_bootstrap="127.0.0.1:1"), load_notify_config(config), options)
    with caplog.at_level("INFO", logger=service.__name__):
        runner = await notifier.serve_metrics()
    assert runner is not None
    try:
        [served] = [record for record in caplog.records if record.getMessage() == "metrics served"]
        assert served.port == runner.addresses[0][1] != 0  # type: ignore[attr-defined]
    finally:
        await runner.cleanup()


def test_a_metrics_host_without_a_metrics_port_is_a_usage_error(config: Path) -> None:
    """It was ignored without a word: no metrics were served, wherever the host said."""
    result = notify(config, "--metrics-host", "0.0.0.0")
    assert result.exit_code == 2, result.output
    assert last_line(result) == (
        "Error: Invalid value for --metrics-host: serves nothing without --metrics-port; give both"
    )


def test_an_empty_metrics_host_is_a_usage_error(config: Path) -> None:
    """`--metrics-host ""` (an unset variable in a script) listened on every interface, silently."""
    result = notify(config, "--metrics-port", str(closed_port()), "--metrics-host", "")
    assert result.exit_code == 2, result.output
    assert last_line(result) == (
        "Error: Invalid value for --metrics-host: an empty host would listen on every interface; "
        "give 0.0.0.0 (or ::) if that is meant"
    )


def test_the_help_says_what_is_retried_what_is_final_and_what_is_remembered() -> None:
    text = " ".join(CliRunner().invoke(main, ["notify", "--help"]).output.split())
    for says in ("408", "timeouts", "401", "are final", "only deliveries", "sent again"):
        assert says in text, says
