"""A bad value that came from a HEALTHSTREAM_* variable is named with the variable, in one line:
the message named only a path, or a traceback ended the command."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from streamer.cli import main
from streamer.local.errors import StackError
from streamer.local.settings import StackSettings


def offline(tmp_path: Path, *extra: str) -> tuple[int, str]:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    result = CliRunner().invoke(main, ["offline", str(events), "--out", str(tmp_path / "out"), *extra])
    return result.exit_code, result.output


def test_a_score_config_the_variable_names_that_does_not_exist_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHSTREAM_SCORE_CONFIG", "nonexist.toml")
    code, output = offline(tmp_path)
    assert code == 1
    assert output == ("Error: score config file nonexist.toml (HEALTHSTREAM_SCORE_CONFIG) does not exist\n")


def test_an_invalid_score_config_from_the_variable_names_it_and_one_from_config_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("x = 1\n")
    monkeypatch.setenv("HEALTHSTREAM_SCORE_CONFIG", str(bad))
    assert f"score config file {bad} (HEALTHSTREAM_SCORE_CONFIG) is invalid" in offline(tmp_path)[1]
    monkeypatch.delenv("HEALTHSTREAM_SCORE_CONFIG")
    assert f"score config file {bad} is invalid" in offline(tmp_path, "--config", str(bad))[1]


@pytest.mark.parametrize("variable", ["HEALTHSTREAM_STACK_DIR", "HEALTHSTREAM_CACHE_DIR"])
@pytest.mark.parametrize("inside", [False, True])
def test_a_stack_folder_variable_naming_a_file_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, inside: bool
) -> None:
    """`streamer local up` ended in a FileExistsError (NotADirectoryError) traceback."""
    a_file = tmp_path / "afile"
    a_file.write_text("")
    folder = a_file / "sub" if inside else a_file
    monkeypatch.setenv(variable, str(folder))
    with pytest.raises(StackError) as caught:
        StackSettings.from_env()
    message = str(caught.value)
    assert message.startswith(f"{variable}: {folder} is "), message
    assert "not a folder" in message and "\n" not in message


def test_local_up_with_a_stack_dir_variable_naming_a_file_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("")
    monkeypatch.setenv("HEALTHSTREAM_STACK_DIR", str(a_file))
    result = CliRunner().invoke(main, ["local", "up", "--timeout", "5"])
    assert result.exit_code == 1 and not isinstance(result.exception, OSError), result.output
    assert result.output == (
        f"Error: HEALTHSTREAM_STACK_DIR: {a_file} is a file, not a folder: name a folder\n"
    )


def test_the_demo_names_a_bad_stack_variable_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo read the stack's variables without catching their error: a traceback."""
    monkeypatch.setenv("HEALTHSTREAM_KAFKA_PORT", "abc")
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1, result.output
    assert result.output == "Error: HEALTHSTREAM_KAFKA_PORT='abc' is not a port number\n"
