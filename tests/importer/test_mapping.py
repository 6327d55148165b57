"""A mapping file that cannot be used is refused in one line naming the file (and the line)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from streamer.cli import main
from streamer.importer.mapping import MappingError, load_mapping, with_overrides

from .portfolio import write_export


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


@pytest.mark.parametrize("key", ["currency.x", "data_end.x"])
def test_column_on_a_top_level_value_is_a_one_line_usage_error(tmp_path: Path, key: str) -> None:
    """`data.setdefault("currency", {})["x"] = ...` raised a TypeError (a traceback, exit 1)."""
    mapping = write_export(tmp_path / "export")
    with pytest.raises(MappingError, match=rf"^--column {key}=1: {key[:-2]} is a single value, not a table"):
        with_overrides(load_mapping(mapping), {key: "1"})
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--column", f"{key}=1"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2, result.output
    assert f"Error: --column {key}=1: {key[:-2]} is a single value, not a table; " in result.output
    assert isinstance(result.exception, SystemExit)  # no TypeError


@pytest.mark.parametrize(("where", "char"), [("file", "\x00"), ("mrr", "\t"), ("file", "\x1b")])
def test_a_file_or_column_name_with_a_control_character_is_refused_without_echoing_it(
    tmp_path: Path, where: str, char: str
) -> None:
    """A NUL in a table's file name stopped the import with a traceback (`embedded null byte`)."""
    mapping = write_export(tmp_path / "export")
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o.jsonl")]
    result = CliRunner().invoke(main, [*args, "--column", f"subscriptions.{where}=a{char}b.csv"])
    assert result.exit_code == 2, result.output
    assert f"subscriptions.{where}: holds a control character (U+{ord(char):04X})" in result.output
    assert char not in result.output and isinstance(result.exception, SystemExit)


EXPECTED_DATE_END = "data_end: expected a date YYYY-MM-DD, 'latest-seen' or 'latest-start'"


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (
            "data_end = 2024-03-01T10:00:00Z",
            f"{EXPECTED_DATE_END}; got 2024-03-01T10:00:00+00:00",
        ),
        (
            'data_end = "2024-13-01"',
            f"{EXPECTED_DATE_END}; got '2024-13-01'",
        ),
        ("events = 5", "events: expected a table of keys (e.g. [events] with file = ...)"),
        (
            'currency = "usd"',
            "currency: expected a currency code of three capital letters (e.g. USD); got 'usd'",
        ),
    ],
)
def test_a_mapping_value_of_the_wrong_kind_is_told_in_plain_words(
    tmp_path: Path, line: str, said: str
) -> None:
    """They read `data_end.str-enum[DataEndRule]: Input should be ...; data_end.date: Datetimes
    provided to dates should have zero time`, `data_end: Value error, ...`, `Input should be a
    valid dictionary or instance of EventColumns` and `String should match pattern`."""
    path = tmp_path / "mapping.toml"
    path.write_text(f'{line}\n[subscriptions]\nfile = "subs.csv"\n')
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    assert str(error.value) == f"{path}: {said}"


def test_the_summary_names_where_a_fixed_end_of_the_data_comes_from(tmp_path: Path) -> None:
    """A date in the mapping file was shown as `(--data-end; ...)`."""
    mapping = write_export(tmp_path / "export")
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o.jsonl")]
    from_file = CliRunner().invoke(main, args)
    assert f"end of the data: 2024-06-01T00:00:00Z (data_end in {mapping}; " in from_file.output
    option = CliRunner().invoke(main, [*args, "--data-end", "2024-06-01"])
    assert "end of the data: 2024-06-01T00:00:00Z (--data-end; " in option.output
    column = CliRunner().invoke(main, [*args, "--column", "data_end=2024-06-01"])
    assert "end of the data: 2024-06-01T00:00:00Z (--column data_end; " in column.output


def test_an_addon_catalogue_without_its_column_names_the_mapping_key(tmp_path: Path) -> None:
    """`addons.csv: no column 'plan'` did not say which key names it, as for the other tables."""
    mapping = write_export(tmp_path / "export")
    (tmp_path / "export" / "addons.csv").write_text("name\nextra\n")
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o.jsonl")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert (
        "Error: addons.csv: no column 'plan' (subscriptions.addons_column) (columns: name)" in result.output
    )


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ('"a\\tb" = "country"', "accounts.attributes: 'a\\tb' cannot name an attribute: String should match"),
        ('"" = "country"', "accounts.attributes: '' cannot name an attribute: String should have at least 1"),
        (
            "\n".join(f'a{n} = "country"' for n in range(33)),
            "accounts.attributes: 33 attributes; an account.updated carries at most 32",
        ),
    ],
)
def test_attribute_names_the_contract_would_refuse_are_a_mapping_error(
    tmp_path: Path, attributes: str, problem: str
) -> None:
    """Every account's `account.updated` would be refused: said once, naming the key."""
    path = tmp_path / "mapping.toml"
    path.write_text(
        f'[subscriptions]\nfile = "s.csv"\n[accounts]\nfile = "a.csv"\n[accounts.attributes]\n{attributes}\n'
    )
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    assert str(error.value).startswith(f"{path}: {problem}")


def test_a_missing_attribute_column_names_the_mapping_key(tmp_path: Path) -> None:
    mapping = write_export(tmp_path / "export")
    mapping.write_text(mapping.read_text().replace('country = "country"', 'country = "land"'))
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o.jsonl")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Error: accounts.csv: no column 'land' (accounts.attributes.country)" in result.output


def test_column_sets_or_removes_one_attribute_and_an_empty_value_unmaps_an_optional_column(
    tmp_path: Path,
) -> None:
    mapping = write_export(tmp_path / "export")
    changed = with_overrides(
        load_mapping(mapping),
        {"accounts.attributes.country": "", "accounts.attributes.label": "name", "accounts.segment": ""},
    )
    assert changed.accounts is not None
    assert changed.accounts.attributes == {"label": "name"}
    assert changed.accounts.segment is None and changed.accounts.name == "name"
    with pytest.raises(MappingError, match=r"subscriptions\.file: Field required"):
        with_overrides(load_mapping(mapping), {"subscriptions.file": ""})
    with pytest.raises(MappingError, match=r"expected TABLE\.KEY=VALUE"):
        with_overrides(load_mapping(mapping), {"accounts.attributes.a.b": "x"})
    out = tmp_path / "o.jsonl"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    result = CliRunner().invoke(
        main, [*args, "--column", "accounts.segment=", "--column", "accounts.attributes.country="]
    )
    assert result.exit_code == 0, result.output
    profiles = [line for line in out.read_text().splitlines() if '"account.updated"' in line]
    assert profiles and not any('"segment"' in line or '"attributes"' in line for line in profiles)


@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_data_end_option_is_refused_rather_than_read_as_the_default_rule(
    tmp_path: Path, value: str
) -> None:
    """`--data-end "$UNSET"` switched silently from the mapping's date to latest-seen."""
    mapping = write_export(tmp_path / "export")
    out = tmp_path / "o.jsonl"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--data-end", value])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for --data-end: empty (an unset shell variable?): give the export date "
        "YYYY-MM-DD, 'latest-seen' or 'latest-start', or leave the option out for the mapping's data_end"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("column", "mapping_text", "said"),
    [
        (
            "subscriptions.mmr=x",
            None,
            "subscriptions.mmr: Extra inputs are not permitted (did you mean 'mrr'?)",
        ),
        ("subscriptions.mrr", None, "--column 'subscriptions.mrr': expected TABLE.KEY=VALUE"),
        (None, '[subscriptions]\nfile = "subs.csv"\nmrrr = "amount"\n', "subscriptions.mrrr: "),
    ],
    ids=["column-typo", "column-without-value", "mapping-file-key"],
)
def test_a_mapping_or_column_error_is_one_line_without_the_usage_text(
    tmp_path: Path, column: str | None, mapping_text: str | None, said: str
) -> None:
    """They printed click's usage text first (three lines); a table error is one line."""
    mapping = write_export(tmp_path / "export")
    if mapping_text is not None:
        mapping.write_text(mapping_text)
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(tmp_path / "o.jsonl")]
    result = CliRunner().invoke(main, [*args, *(["--column", column] if column is not None else [])])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert said in result.output
