"""Mistakes a user makes in the first hour end with one line that says what to do, not a traceback:
an unreachable broker (exit 1) and a bad HEALTHSTREAM_* setting (a usage error: exit 2)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from streamer.cli import main

STREAMER = str(Path(sys.executable).parent / "streamer")


def closed_port() -> int:
    """A loopback port nothing listens on (bound once by us, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(args: list[str], **env: str) -> Result:
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    return CliRunner().invoke(main, args, env={**clean, **env})


def one_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught error
    assert lines, result.output
    return lines[-1]


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event_id": "e1", "event_type": "usage.recorded", "account_id": "a1"}\n')
    return path


@pytest.mark.parametrize(("timeout", "said"), [("1", "1 s"), ("0.5", "0.5 s")])  # 0.5 read "0 s"
def test_replay_to_an_unreachable_broker(events: Path, timeout: str, said: str) -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    result = run(["replay", str(events), "--quiet", "--timeout", timeout, "--bootstrap", bootstrap])
    assert result.exit_code == 1
    line = one_line(result)
    assert line.startswith(f"streamer replay: no Kafka broker accepted events at {bootstrap} for {said}")
    assert "streamer local up" in line and "HEALTHSTREAM_KAFKA_BOOTSTRAP" in line


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "nothing published: {path} holds no events"),
        (b"\n  \n", "nothing published: {path} holds no events"),
        (b"not gzip at all\n", "bad.jsonl.gz: not a gzip file (name it .jsonl, or gzip it)"),
    ],
)
def test_replay_reads_the_file_before_it_asks_for_the_broker(
    tmp_path: Path, content: bytes, said: str
) -> None:
    """Without a broker, an empty or damaged file waited out --timeout (120 s by default) and
    then spoke only of the broker."""
    path = tmp_path / ("bad.jsonl.gz" if content.startswith(b"not") else "bad.jsonl")
    path.write_bytes(content)
    bootstrap = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = run(["replay", str(path), "--quiet", "--timeout", "60", "--bootstrap", bootstrap])
    assert result.exit_code == 1 and one_line(result) == "Error: " + said.format(path=path), result
    assert time.monotonic() - started < 30  # not the broker's timeout


def test_worker_with_an_unreachable_broker(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    result = run(["worker", "--connect-timeout", "1", "--bootstrap", bootstrap, "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert one_line(result) == (
        f"streamer worker: no Kafka broker answered at {bootstrap} within 1 s (starting the worker); "
        "start it (`streamer local up`, or `docker compose up -d kafka`) or point "
        "HEALTHSTREAM_KAFKA_BOOTSTRAP (or --bootstrap) at a running one"
        " (a cluster that takes TLS or SASL logins also needs HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL)"
    )


def test_alerts_tail_with_an_unreachable_broker_leaves_nothing_unclosed() -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEALTHSTREAM_")}
    done = subprocess.run(
        [STREAMER, "alerts", "tail", "--connect-timeout", "1", "--bootstrap", bootstrap],
        env={**env, "PYTHONWARNINGS": "always"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"streamer alerts tail: no Kafka broker answered at {bootstrap} within 1 s (following the "
        "alerts); start it (`streamer local up`, or `docker compose up -d kafka`) or point "
        "HEALTHSTREAM_KAFKA_BOOTSTRAP (or --bootstrap) at a running one"
        " (a cluster that takes TLS or SASL logins also needs HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL)"
    ], done.stderr


def notify_without_a_broker(config: Path, bootstrap: str) -> Result:
    """`streamer notify --config CONFIG` against a broker address nothing answers at: exit 1."""
    result = run(["notify", "--config", str(config), "--connect-timeout", "1", "--bootstrap", bootstrap])
    assert result.exit_code == 1, result.output
    return result


def test_notify_with_an_unreachable_broker(tmp_path: Path) -> None:
    config = tmp_path / "n.toml"
    config.write_text('[[destinations]]\nname = "x"\nurl = "http://127.0.0.1:9/hook"\n')
    bootstrap = f"127.0.0.1:{closed_port()}"
    result = notify_without_a_broker(config, bootstrap)
    assert one_line(result) == (
        f"streamer notify: no Kafka broker answered at {bootstrap} within 1 s (delivering alerts); "
        "start it (`streamer local up`, or `docker compose up -d kafka`) or point "
        "HEALTHSTREAM_KAFKA_BOOTSTRAP (or --bootstrap) at a running one"
        " (a cluster that takes TLS or SASL logins also needs HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL)"
    )


def test_notify_refuses_a_header_with_a_line_break_before_it_connects(tmp_path: Path) -> None:
    """aiohttp used to refuse it only at the first delivery, ending the notifier in a traceback."""
    config = tmp_path / "n.toml"
    config.write_text(
        '[[destinations]]\nname = "crm"\nurl = "http://127.0.0.1:9/hook"\n'
        'headers = { "X-A" = "a\\r\\nInjected: 1" }\n'
    )
    result = notify_without_a_broker(config, f"127.0.0.1:{closed_port()}")
    assert one_line(result) == (
        f"Error: notify config file {config} is invalid: destinations['crm'].headers: header 'X-A' "
        "has a control character (CR, LF or another) in its value, which HTTP forbids"
    )


def test_alerts_tail_timeout_0_is_a_usage_error() -> None:
    """0 used to be accepted and tail never stopped."""
    bootstrap = f"127.0.0.1:{closed_port()}"
    result = run(["alerts", "tail", "--timeout", "0", "--connect-timeout", "1", "--bootstrap", bootstrap])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--timeout': 0.0 is not in the range x>0." in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "EVENTS", "--bootstrap", "127.0.0.1:abc"],
        ["alerts", "tail", "--bootstrap", "127.0.0.1:abc"],
    ],
)
def test_a_bad_bootstrap_option_is_named_as_the_option(events: Path, args: list[str]) -> None:
    """It blamed HEALTHSTREAM_KAFKA_BOOTSTRAP ('fix the variable or unset it'), which was not set."""
    result = run([str(events) if arg == "EVENTS" else arg for arg in args])
    assert result.exit_code == 2, result.output
    assert one_line(result).startswith(
        "Error: Invalid value for --bootstrap: '127.0.0.1:abc': the port must be a number"
    ), result.output
    assert "HEALTHSTREAM_KAFKA_BOOTSTRAP" not in result.output


@pytest.mark.parametrize(
    ("args", "variable", "value", "says"),
    [
        (["worker"], "HEALTHSTREAM_PARTITIONS", "abc", "Input should be a valid integer"),
        (["worker"], "HEALTHSTREAM_PARTITIONS", "0", "Input should be greater than or equal to 1"),
        (["worker"], "HEALTHSTREAM_STORE", "redis://", "Input should be 'rocksdb://' or 'memory://'"),
        (["worker"], "HEALTHSTREAM_STANDBY_REPLICAS", "-1", "Input should be greater than or equal to 0"),
        (["worker"], "HEALTHSTREAM_SESSION_TIMEOUT_S", "2", "Input should be greater than or equal to 6"),
        (["view"], "HEALTHSTREAM_VIEW_PORT", "abc", "Input should be a valid integer"),
        (["view"], "HEALTHSTREAM_VIEW_PORT", "70000", "Input should be less than or equal to 65535"),
        (["view"], "HEALTHSTREAM_VIEW_REDIS_POOL_SIZE", "0", "Input should be greater than or equal to 1"),
        (["replay", "EVENTS"], "HEALTHSTREAM_PARTITIONS", "abc", "Input should be a valid integer"),
        (["alerts", "tail"], "HEALTHSTREAM_PARTITIONS", "x", "Input should be a valid integer"),
        # a traceback from the Kafka client before
        (
            ["worker"],
            "HEALTHSTREAM_KAFKA_BOOTSTRAP",
            "localhost:abc",
            "'localhost:abc': the port",
        ),
        (["alerts", "tail"], "HEALTHSTREAM_KAFKA_BOOTSTRAP", "a:1,b:2:3", "'b:2:3' is not HOST"),
        (["replay", "EVENTS"], "HEALTHSTREAM_KAFKA_BOOTSTRAP", "h:0", "'h:0': the port"),
    ],
)
def test_a_bad_setting_is_a_usage_error_naming_the_variable(
    events: Path, args: list[str], variable: str, value: str, says: str
) -> None:
    args = [str(events) if arg == "EVENTS" else arg for arg in args]
    result = run(args, **{variable: value})
    assert result.exit_code == 2, result.output
    assert one_line(result) == (
        f"streamer: {variable}={value!r} is not valid ({says}"
        + one_line(result).split(says, 1)[1]  # pydantic's wording after the part we check
    )
    assert one_line(result).endswith(": fix the variable or unset it for the default")


def test_a_rule_across_variables_is_said_once_without_a_second_remedy() -> None:
    """It ended "... or unset it: fix the variable or unset it for the default"."""
    result = run(["worker"], HEALTHSTREAM_KAFKA_SASL_PASSWORD="x")
    assert result.exit_code == 2, result.output
    assert one_line(result).endswith(
        "HEALTHSTREAM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL: use SASL_SSL or SASL_PLAINTEXT, "
        "or unset it"
    ), one_line(result)


def test_a_heartbeat_too_long_for_the_session_timeout_says_what_to_use() -> None:
    result = run(["worker"], HEALTHSTREAM_SESSION_TIMEOUT_S="10", HEALTHSTREAM_HEARTBEAT_INTERVAL_S="5")
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert line.startswith("streamer: HEALTHSTREAM_HEARTBEAT_INTERVAL_S='5' is not valid (")
    assert "at most a third of the session timeout (10 s: HEALTHSTREAM_SESSION_TIMEOUT_S)" in line
    assert "use 3.33333 or less" in line


def test_worker_refuses_to_start_on_a_faust_without_the_private_names_it_relies_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streamer.stream import faust_private

    monkeypatch.setattr(
        faust_private, "problems", lambda: ["Consumer._add_gap is missing (used by stream/consumer.py)"]
    )
    result = run(["worker", "--bootstrap", f"127.0.0.1:{closed_port()}", "--connect-timeout", "1"])
    assert result.exit_code == 1
    line = one_line(result)
    assert "the installed faust lacks what the worker relies on" in line
    assert "_add_gap is missing" in line and "requirements.lock" in line


@pytest.mark.parametrize("value", ["nan", "inf", "-nan", "Infinity"])
@pytest.mark.parametrize(
    "args",
    [
        ["worker", "--connect-timeout"],
        ["alerts", "tail", "--connect-timeout"],
        ["alerts", "tail", "--timeout"],
        ["replay", "EVENTS", "--timeout"],
        ["backtest", "EVENTS", "--tune", "--holdout"],
        ["simulate", "--out", "OUT", "--usage-density"],
        ["local", "up", "--timeout"],
    ],
)
def test_a_number_option_refuses_nan_and_infinity(
    events: Path, tmp_path: Path, args: list[str], value: str
) -> None:
    """`nan` passes every bound of click's FloatRange and `inf` any lower one: a traceback, or a
    command that waited for ever (`replay --timeout nan`). Parsed only, never run, so that a
    value let through cannot hang the test."""
    argv = [str(events) if a == "EVENTS" else str(tmp_path / "o.jsonl") if a == "OUT" else a for a in args]
    command: click.Command = main
    with click.Context(main) as ctx:
        while isinstance(command, click.Group):
            found = command.get_command(ctx, argv.pop(0))
            assert found is not None
            command = found
    with pytest.raises(click.BadParameter) as refused:
        command.make_context(command.name, [*argv, value])
    message = refused.value.format_message()
    if "nan" in value or not ("--holdout" in args or "--usage-density" in args):  # no upper bound
        assert message.endswith(f"{value!r} is not a finite number."), message
    else:
        assert "is not in the range" in message, message
