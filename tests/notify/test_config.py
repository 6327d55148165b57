"""The notifier's TOML: defaults, validation, one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.contract.vocabulary import Severity
from streamer.notify.config import Format, NotifyConfigError, load_notify_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notify.toml"
    path.write_text(text)
    return path


def test_minimal_destination_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_notify_config(
        write(tmp_path, '[[destinations]]\nname = "ops"\nurl = "http://127.0.0.1:9/x"\n')
    )
    [ops] = config.destinations
    assert (ops.format, ops.min_severity, ops.rules, ops.digest_seconds) == (
        Format.json,
        Severity.info,
        (),
        None,
    )
    assert config.retry_for(ops).max_attempts is None  # retried until delivered


def test_bad_value_is_one_line_naming_destination_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[destinations]]\nname = "slack"\nurl = "http://h/x"\nformat = "teams"\n',
    )
    with pytest.raises(NotifyConfigError) as error:
        load_notify_config(path)
    message = str(error.value)
    assert "\n" not in message
    assert "destinations['slack'].format" in message and "'teams'" in message and str(path) in message


def test_duplicate_names_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    twice = '[[destinations]]\nname = "a"\nurl = "http://h/1"\n' * 2
    with pytest.raises(NotifyConfigError, match="repeated: a"):
        load_notify_config(write(tmp_path, twice))
    with pytest.raises(NotifyConfigError, match=r"destinations\['a'\].colour: Extra inputs"):
        load_notify_config(write(tmp_path, '[[destinations]]\nname = "a"\nurl = "http://h/1"\ncolour = 1\n'))


def test_no_destination_and_bad_toml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotifyConfigError, match="destinations: Field required"):
        load_notify_config(write(tmp_path, ""))
    with pytest.raises(NotifyConfigError, match="not valid TOML"):
        load_notify_config(write(tmp_path, "[[destinations]\n"))
    with pytest.raises(NotifyConfigError, match="max_seconds"):
        load_notify_config(
            write(
                tmp_path,
                '[[destinations]]\nname = "a"\nurl = "http://h/1"\n'
                "[retry]\ninitial_seconds = 10\nmax_seconds = 5\n",
            )
        )


def test_a_file_that_is_not_utf8_is_refused_in_one_line_with_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "notify.toml"
    path.write_bytes(b'currency = "\xe9"\n')
    with pytest.raises(NotifyConfigError) as error:
        load_notify_config(path)
    assert str(error.value) == f"notify config file {path} is not UTF-8 (byte 12 cannot be decoded)"
