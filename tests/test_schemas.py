"""The committed JSON Schema files must equal what the models export."""

from pathlib import Path

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
