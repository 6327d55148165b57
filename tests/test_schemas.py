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
