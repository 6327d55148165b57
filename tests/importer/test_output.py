"""`--out`: a path that cannot be written is a one-line error, found before the tables are read
where it can be; an import that fails leaves a previous file whole."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streamer.cli import main
from streamer.importer.mapping import load_mapping
from streamer.importer.run import Importer, OutputError

from .portfolio import MAPPING, write_export


def import_to(tmp_path: Path, out: Path) -> tuple[int, str]:
    mapping = write_export(tmp_path / "export")
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert not isinstance(result.exception, OSError), "a traceback"
    return result.exit_code, result.output


def tables_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a table fails the test: the import was to stop before."""

    def not_read(*_: object) -> None:
        raise AssertionError("the tables were read")

    monkeypatch.setattr(Importer, "read_accounts", not_read)


def refuse_usage_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every usage.recorded is refused when written: the import fails at write time."""
    refusal = Importer.refusal

    def refuse_usage(self: Importer, line: bytes) -> str | None:
        return "refused for the test" if b'"usage.recorded"' in line else refusal(self, line)

    monkeypatch.setattr(Importer, "refusal", refuse_usage)


def test_an_out_whose_folder_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    code, output = import_to(tmp_path, tmp_path / "export" / "accounts.csv" / "x.jsonl")
    assert code == 1
    assert output == f"Error: cannot create the folder {tmp_path}/export/accounts.csv: File exists\n"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_an_out_that_cannot_be_created_is_a_one_line_error_before_the_tables_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables_not_read(monkeypatch)
    code, output = import_to(tmp_path, Path("/proc/x.jsonl"))
    assert code == 1
    assert output == "Error: cannot write /proc/x.jsonl: No such file or directory\n"


def test_an_out_whose_temporary_file_cannot_be_made_is_a_one_line_error_before_the_tables_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name of 250 characters passed the check of --out, and after every table was read its
    temporary file's (`.partial-PID-` and the name) was too long: a traceback, as removing that
    file failed the same way inside the error's handling."""
    tables_not_read(monkeypatch)
    out = tmp_path / ("e" * 244 + ".jsonl")  # 250 characters: file systems take 255
    code, output = import_to(tmp_path, out)
    assert code == 1, output
    assert output.startswith(f"Error: cannot write {out}: cannot create {tmp_path}/.partial-")
    assert output.endswith(": File name too long\n") and output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_an_out_file_in_a_folder_that_cannot_be_written_is_refused_before_the_tables_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file could be written, not its folder, where its temporary file (and the runs on disk)
    go: the import failed after every table was read."""
    out = tmp_path / "read-only" / "events.jsonl"
    out.parent.mkdir()
    out.write_bytes(b"the previous import\n")
    out.parent.chmod(0o555)
    if os.access(out.parent, os.W_OK):  # root (with CAP_DAC_OVERRIDE) writes there all the same
        out.parent.chmod(0o755)
        pytest.skip("this user writes in a read-only folder")
    tables_not_read(monkeypatch)
    try:
        code, output = import_to(tmp_path, out)
    finally:
        out.parent.chmod(0o755)
    assert code == 1, output
    assert output.startswith(f"Error: cannot write {out}: cannot create {out.parent}/.partial-")
    assert output.endswith(": Permission denied\n") and output.count("\n") == 1
    assert out.read_bytes() == b"the previous import\n"


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
    refuse_usage_events(monkeypatch)
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


@pytest.mark.parametrize("failure", ["at-write-time", "no-event"])
def test_an_import_that_fails_through_a_symlinked_out_leaves_its_target_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A symlink was written through in place: a failed or empty import left its target at 0 bytes."""
    mapping = write_export(tmp_path / "export")
    target = tmp_path / "kept" / "events.jsonl"
    target.parent.mkdir()
    target.write_bytes(b"the previous import\n")
    link = tmp_path / "out" / "link.jsonl"
    link.parent.mkdir()
    link.symlink_to(target)
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", str(link)]
    if failure == "at-write-time":
        refuse_usage_events(monkeypatch)
    else:
        args += ["--data-end", "1999-01-01"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert target.read_bytes() == b"the previous import\n"
    assert link.is_symlink() and link.resolve() == target
    assert sorted(p.name for p in (*target.parent.iterdir(), *link.parent.iterdir())) == [
        "events.jsonl",
        "link.jsonl",
    ], "no partial file left"


def test_an_import_through_a_symlinked_out_replaces_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl.gz"
    assert import_to(tmp_path, plain)[0] == 0
    target = tmp_path / "kept" / "events.jsonl"  # not .gz: the name given as --out decides
    target.parent.mkdir()
    target.write_bytes(b"the previous import\n")
    link = tmp_path / "link.jsonl.gz"
    link.symlink_to(target)
    code, output = import_to(tmp_path, link)
    assert code == 0, output
    assert link.is_symlink() and target.read_bytes() == plain.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["events.jsonl"]


def test_a_temporary_file_that_cannot_be_made_is_an_output_error_when_writing_too(tmp_path: Path) -> None:
    """Removing the temporary file that could not be made failed as making it did, inside the
    error's handling: an OSError (a traceback) in place of the one-line OutputError."""
    mapping = write_export(tmp_path / "export")
    out = tmp_path / ("e" * 244 + ".jsonl")
    with pytest.raises(OutputError, match=r"^cannot write .*: File name too long$"):
        Importer(tmp_path / "export", load_mapping(mapping)).run(out)


def test_an_out_written_as_a_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    """`--out newdir/` wrote a file named `newdir`: the path type drops the trailing separator."""
    mapping = write_export(tmp_path / "export")
    out = f"{tmp_path}/newdir/"
    args = ["import", str(tmp_path / "export"), "--mapping", str(mapping), "--out", out]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: --out {out!r} names a folder, not a file: add the file's name\n"
    assert not (tmp_path / "newdir").exists()
