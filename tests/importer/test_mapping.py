"""A mapping file that cannot be used is refused in one line naming the file (and the line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.importer.mapping import MappingError, load_mapping


def test_a_mapping_with_a_toml_mistake_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text('[subscriptions]\nfile = "subs.csv"\nmrr = \n')
    with pytest.raises(MappingError, match=rf"^mapping file {path} is not valid TOML: .*line 3"):
        load_mapping(path)


def test_a_mapping_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_bytes(b'[subscriptions]\nfile = "abonnements-\xff.csv"\n')
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    assert str(error.value) == f"mapping file {path} is not UTF-8 (byte 36 cannot be decoded)"


def test_a_missing_mapping_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(MappingError, match=rf"^mapping file {path} does not exist$"):
        load_mapping(path)


def test_a_folder_given_as_mapping_file_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=rf"^mapping file {tmp_path} cannot be read: "):
        load_mapping(tmp_path)


def test_a_mapping_with_a_wrong_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text('[subscriptions]\nfile = "subs.csv"\nmrrr = "amount"\n')
    with pytest.raises(MappingError, match=rf"^{path}: subscriptions.mrrr: "):
        load_mapping(path)
