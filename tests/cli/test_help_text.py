"""Help and chatter that say what the command does: `local logs`' argument, `simulate --quiet`,
`simulate`'s list of what it writes, and a help line for every option of every command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import orjson
from click.testing import CliRunner

from streamer.cli import main


def test_local_logs_names_its_argument_plainly(tmp_path: Path) -> None:
    shown = CliRunner().invoke(main, ["local", "logs", "--help"])
    assert shown.exit_code == 0
    assert "local logs [OPTIONS] [SERVICE]" in shown.output
    assert "[[" not in shown.output
    refused = CliRunner().invoke(main, ["local", "logs", "bogus", "--stack-dir", str(tmp_path)])
    assert refused.exit_code == 2
    assert "Invalid value for '[SERVICE]': 'bogus' is not one of 'kafka', 'redis'." in refused.output


def test_simulate_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        main, ["simulate", "--accounts", "3", "--months", "1", "--quiet", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith("accounts: 3 ")


def test_simulate_help_names_every_kind_of_event_it_writes(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    assert (
        CliRunner()
        .invoke(main, ["simulate", "--accounts", "5", "--months", "2", "--quiet", "--out", str(out)])
        .exit_code
        == 0
    )
    written = {orjson.loads(line)["event_type"].split(".")[0] for line in out.read_bytes().splitlines()}
    assert written >= {"account", "subscription", "usage", "ticket", "survey"}
    shown = " ".join(CliRunner().invoke(main, ["simulate", "--help"]).output.split())
    named = {
        "account": "account.updated",
        "subscription": "subscriptions",
        "usage": "usage",
        "ticket": "tickets",
        "survey": "surveys",
    }
    for kind in written:
        assert named[kind] in shown, kind


def _options_without_help(command: click.Command, path: str) -> Iterator[str]:
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None:
                yield from _options_without_help(sub, f"{path} {name}")
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help" and not param.help:
            yield f"{path} {'/'.join(param.opts)}"


def test_every_option_of_every_command_says_what_it_does() -> None:
    """`--loglevel` (worker, view, notify) and `local logs -n` said nothing at all in `--help`."""
    assert list(_options_without_help(main, "streamer")) == []
