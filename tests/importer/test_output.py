"""`--out`: a path that cannot be written is a one-line error, found before the tables are read
where it can be; an import that fails leaves a previous file whole."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streamer.cli import main
from streamer.importer.run import Importer

from .portfolio import MAPPING, write_export


def import_to(tmp_path: Path, out: Path) -> tuple[int, str]:
    mapping = write_export(tmp_path / "export")
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert not isinstance(result.exception, OSError), "a traceback"
    return result.exit_code, result.output


def test_an_out_whose_folder_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    code, output = import_to(tmp_path, tmp_path / "export" / "accounts.csv" / "x.jsonl")
    assert code == 1
    assert output == f"Error: cannot create the folder {tmp_path}/export/accounts.csv: File exists\n"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_an_out_that_cannot_be_created_is_a_one_line_error_before_the_tables_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_read(*_: object) -> None:
        raise AssertionError("the tables were read")

    monkeypatch.setattr(Importer, "read_accounts", not_read)
    code, output = import_to(tmp_path, Path("/proc/x.jsonl"))
    assert code == 1
    assert output == "Error: cannot write /proc/x.jsonl: No such file or directory\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_full_disk_is_a_one_line_write_error(tmp_path: Path) -> None:
    code, output = import_to(tmp_path, Path("/dev/full"))
    assert code == 1
    assert output.splitlines() == ["Error: cannot write /dev/full: No space left on device"]


def test_an_out_that_names_an_input_table_is_refused(tmp_path: Path) -> None:
    code, output = import_to(tmp_path, tmp_path / "export" / "events.csv")
    assert code == 1 and "events.csv is also an input" in output


def test_an_out_that_names_the_mapping_file_is_refused(tmp_path: Path) -> None:
    """The mapping is read too: --out naming it replaced the mapping with events, exit 0."""
    mapping = tmp_path / "export" / "mapping.toml"
    code, output = import_to(tmp_path, mapping)
    assert code == 1 and "mapping.toml is also an input" in output, output
    assert mapping.read_text() == MAPPING, "the mapping is left whole"


def test_an_import_that_fails_while_writing_leaves_the_previous_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file was opened for writing before the events' last check: a refused event unlinked
    the half-written file, and with it the previous import."""
    out = tmp_path / "out" / "events.jsonl.gz"
    assert import_to(tmp_path, out)[0] == 0
    previous = out.read_bytes()
    refusal = Importer.refusal

    def refuse_usage(self: Importer, line: bytes) -> str | None:
        return "refused for the test" if b'"usage.recorded"' in line else refusal(self, line)

    monkeypatch.setattr(Importer, "refusal", refuse_usage)
    code, output = import_to(tmp_path, out)
    assert code == 1 and "refused for the test" in output, output
    assert out.read_bytes() == previous
    assert [path.name for path in out.parent.iterdir()] == ["events.jsonl.gz"], "no partial file left"


def test_rows_whose_values_hold_the_separator_get_distinct_event_ids(tmp_path: Path) -> None:
    """The id's parts were joined with "|" unescaped: user "u|login" (Auth0's ids hold one) with
    feature "x", and user "u" with feature "login|x", got one id; offline counted the second
    as a duplicate."""
    (tmp_path / "subs.csv").write_text(
        "account_id,product,start_date,end_date,mrr\na1,basic,2024-01-01,,100\n"
    )
    (tmp_path / "events.csv").write_text(
        "account_id,event_time,event_type,user_id\n"
        "a1,2024-01-02 10:10:00,x,u|login\n"
        "a1,2024-01-02 10:30:00,login|x,u\n"
        "a1,2024-01-02 10:40:00,y,CORP\\\\\n"
        "a1,2024-01-02 10:50:00,\\y,CORP\n"
    )
    (tmp_path / "map.toml").write_text(
        'data_end = "2024-02-01"\n[subscriptions]\nfile = "subs.csv"\n'
        '[events]\nfile = "events.csv"\nuser = "user_id"\n'
    )
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        main, ["import", str(tmp_path), "--mapping", str(tmp_path / "map.toml"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    usage = [orjson.loads(line) for line in out.read_bytes().splitlines() if b"usage.recorded" in line]
    assert len(usage) == 4 and len({event["event_id"] for event in usage}) == 4
