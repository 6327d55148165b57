"""The committed JSON Schema files must equal what the models export."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from streamer.cli import main
from streamer.contract.schemas import FILES, differences, export, render

REPO = Path(__file__).resolve().parents[1]


def test_committed_schemas_match_the_models() -> None:
    assert differences(REPO / "schemas") == []


def test_check_notices_a_stale_schema_file(tmp_path: Path) -> None:
    export(tmp_path)
    stale = tmp_path / "usage.schema.json"
    stale.write_text(stale.read_text().replace('"minimum": 1', '"minimum": 0'))
    assert differences(tmp_path) == [f"{stale} disagrees with the models"]


def test_every_family_and_output_has_a_schema() -> None:
    assert set(FILES) == {
        "subscriptions.schema.json",
        "usage.schema.json",
        "tickets.schema.json",
        "surveys.schema.json",
        "health.schema.json",
        "alert.schema.json",
        "deadletter.schema.json",
    }
    assert '"subscription.canceled"' in render("subscriptions.schema.json")


@pytest.mark.parametrize("args", [[], ["--dir", "nonexistent"]])
def test_check_outside_the_repository_says_the_folder_does_not_exist(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["schemas", "check", *args])
    assert result.exit_code == 1, result.output
    folder = args[-1] if args else "schemas"
    assert result.output.strip().splitlines() == [
        f"Error: {folder}: no such folder; the schema files are in the repository's schemas/ "
        "(run this from the repository's root, or give --dir)"
    ]
    assert not (tmp_path / "schemas").exists()


def test_unreadable_schema_files_and_unwritable_folders_are_one_line(tmp_path: Path) -> None:
    """A schema file that is not UTF-8, a folder in a schema file's place and an export to /proc
    were tracebacks."""
    export(tmp_path)
    first, second = (tmp_path / name for name in list(FILES)[:2])
    first.write_bytes(b"\xff\xfe not utf-8")
    second.unlink()
    second.mkdir()
    check = CliRunner().invoke(main, ["schemas", "check", "--dir", str(tmp_path)])
    assert check.exit_code == 1 and "Traceback" not in check.output, check.output
    assert f"{first} cannot be read" in check.output and f"{second} cannot be read" in check.output
    written = CliRunner().invoke(main, ["schemas", "export", "--dir", "/proc/healthstream-schemas"])
    assert (
        written.exit_code == 1 and "cannot write the schemas to /proc/healthstream-schemas" in written.output
    )


def test_check_fails_on_a_schema_file_no_model_writes(tmp_path: Path) -> None:
    """An extra file (a schema of a record since removed or renamed) passed the check."""
    export(tmp_path)
    extra = tmp_path / "old.schema.json"
    extra.write_text("{}\n")
    check = CliRunner().invoke(main, ["schemas", "check", "--dir", str(tmp_path)])
    assert check.exit_code == 1, check.output
    assert check.output.splitlines()[0] == f"Error: {extra} is stale: no model has this schema; remove it"


def test_the_checks_advice_keeps_the_folder_it_was_given(tmp_path: Path) -> None:
    """For an empty folder it said `run 'streamer schemas export'`, which writes to ./schemas."""
    check = CliRunner().invoke(main, ["schemas", "check", "--dir", str(tmp_path)])
    assert check.exit_code == 1, check.output
    assert check.output.splitlines()[-1] == (
        f"run `streamer schemas export --dir {tmp_path}` and commit the result"
    )
