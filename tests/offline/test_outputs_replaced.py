"""`streamer offline` replaces the five outputs in `--out` together, or not at all: a run that
failed or was stopped left its partial files beside the previous run's (alerts of one run,
accounts and portfolio of another). A damaged input ends the input where it is damaged: the
five outputs are then all those of the lines before it."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer.cli import main
from streamer.offline.runner import OfflineRun
from tests.offline.test_parallel import (
    NOW,
    OUTPUTS,
    interrupt,
    running_offline,
    same_bytes,
    simulated,
    wait_for,
    write_lines,
)
from tests.poison import usage

JOBS = [pytest.param(["--jobs", "1"], id="jobs1"), pytest.param(["--jobs", "2"], id="jobs2")]
WITH_SORT = [
    *JOBS,
    pytest.param(["--jobs", "1", "--sort"], id="jobs1-sort"),
    pytest.param(["--jobs", "2", "--sort"], id="jobs2-sort"),
]


def invoke(*args: object) -> Result:
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    return CliRunner(env=clean).invoke(main, ["offline", *map(str, args), "--now", NOW, "--quiet"])


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: same_bytes((folder / name).read_bytes()) for name in OUTPUTS}


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name not in OUTPUTS)


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return list(simulated(5, accounts=12, months=3))


@pytest.fixture
def previous(tmp_path: Path, lines: list[bytes]) -> tuple[Path, dict[str, bytes]]:
    """A folder holding a complete run of other events (the previous run's outputs)."""
    other = write_lines(tmp_path / "other.jsonl", list(simulated(6, accounts=5)))
    out = tmp_path / "out"
    result = invoke(other, "--out", out, "--jobs", "1")
    assert result.exit_code == 0, result.output
    return out, outputs(out)


@pytest.mark.parametrize("options", JOBS)
def test_a_failed_run_leaves_the_previous_outputs_whole(
    tmp_path: Path,
    lines: list[bytes],
    previous: tuple[Path, dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
) -> None:
    out, before = previous
    feed = OfflineRun.feed_share

    def fail_late(self: OfflineRun, *args: object, **kwargs: object) -> object:
        feed(self, *args, **kwargs)  # type: ignore[arg-type]
        raise OSError("no space left on device")

    monkeypatch.setattr(OfflineRun, "feed_share", fail_late)
    events = write_lines(tmp_path / "events.jsonl", lines)
    result = invoke(events, "--out", out, *options)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error = [line for line in result.stderr.splitlines() if line]
    assert len(error) == 1 and "no space left on device" in error[0], result.stderr
    assert error[0].endswith(f"the outputs in {out} were not replaced"), error
    assert outputs(out) == before
    assert leftovers(out) == [], "the temporary files are removed"


@pytest.mark.parametrize("options", WITH_SORT)
def test_a_truncated_gzip_ends_the_input_there_and_all_five_outputs_are_of_the_lines_before(
    tmp_path: Path, lines: list[bytes], previous: tuple[Path, dict[str, bytes]], options: list[str]
) -> None:
    out, _ = previous
    whole = gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1)
    truncated = tmp_path / "trunc.jsonl.gz"
    truncated.write_bytes(whole[: len(whole) * 2 // 3])
    cut = 0
    with gzip.open(truncated, "rb") as handle, pytest.raises(EOFError):
        for line in handle:
            cut += line.endswith(b"\n")
    assert 100 < cut < len(lines)
    prefix = write_lines(tmp_path / "prefix.jsonl", lines[:cut])
    expected = tmp_path / "expected"
    assert invoke(prefix, "--out", expected, *options).exit_code == 0

    result = invoke(truncated, "--out", out, *options)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: trunc.jsonl.gz: the gzip stream ends early (truncated file?) after line {cut:,}"
    )
    named = {  # a dead letter names its file
        name: data.replace(str(prefix).encode(), str(truncated).encode())
        for name, data in outputs(expected).items()
    }
    assert outputs(out) == named
    assert leftovers(out) == []


@pytest.mark.parametrize("options", JOBS)
def test_an_input_refused_before_its_first_line_replaces_nothing(
    tmp_path: Path, lines: list[bytes], previous: tuple[Path, dict[str, bytes]], options: list[str]
) -> None:
    out, before = previous
    fake = write_lines(tmp_path / "fake.jsonl", lines)
    fake = fake.rename(tmp_path / "fake.jsonl.gz")
    result = invoke(fake, "--out", out, *options)
    assert result.exit_code == 1, result.output
    assert outputs(out) == before
    assert leftovers(out) == []


def can_drop_privileges() -> bool:
    return os.geteuid() != 0 or shutil.which("setpriv") is not None


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own are the owner's only)."""
    folder = Path(tempfile.mkdtemp(prefix="healthstream-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def quiet_env() -> dict[str, str]:
    """The environment of a command run as a user would: no warning of a stale build on stderr."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEALTHSTREAM_")}
    return {**env, "PYTHONWARNINGS": "ignore"}


@pytest.mark.skipif(not can_drop_privileges(), reason="runs as root without setpriv")
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_folder_whose_files_can_be_written_but_not_itself_is_one_line(
    shared_folder: Path, jobs: str
) -> None:
    events = write_lines(shared_folder / "events.jsonl", list(simulated(6, accounts=5)))
    events.chmod(0o644)
    out = shared_folder / "out"
    out.mkdir()
    for name in OUTPUTS:
        (out / name).write_bytes(b"old\n")
        (out / name).chmod(0o666)
    command = [sys.executable, "-m", "streamer", "offline", str(events), "--out", str(out)]
    command += ["--jobs", jobs, "--now", NOW, "--quiet"]
    if os.geteuid() == 0:
        out.chmod(0o755)  # root's: another user may write its files, not add one
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    else:
        out.chmod(0o555)
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=300, cwd=Path(__file__).parents[2], env=quiet_env()
        )
    finally:
        out.chmod(0o755)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines() == [
        f"Error: cannot write in the folder {out} (Permission denied): the outputs are written "
        "there under temporary names and renamed into place"
    ]
    assert all((out / name).read_bytes() == b"old\n" for name in OUTPUTS)


@pytest.mark.parametrize(
    ("pack", "kind", "tool"),
    [
        (bz2.compress, "bzip2", "bzip2 -d"),
        (lzma.compress, "xz", "xz -d"),
        (lambda data: b"\x28\xb5\x2f\xfd" + data, "zstd", "zstd -d"),  # the frame's magic number
    ],
)
@pytest.mark.parametrize("name", ["events.jsonl.gz", "events.jsonl", "events.bin"])
def test_a_file_in_another_compression_is_one_line_whatever_its_name(
    tmp_path: Path, lines: list[bytes], pack: object, kind: str, tool: str, name: str
) -> None:
    events = tmp_path / name
    events.write_bytes(pack(b"\n".join(lines[:50]) + b"\n"))  # type: ignore[operator]
    result = invoke(events, "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: {name}: a {kind} file: decompress it first ({tool} {name})"
    ]


def test_an_unsorted_file_whose_lines_come_too_late_hints_at_sort(tmp_path: Path) -> None:
    when = [f"2024-{1 + day // 28:02d}-{1 + day % 28:02d}T10:00:00Z" for day in range(200)]
    rows = [orjson.dumps(usage("a1", at, f"e{n}")) for n, at in enumerate(reversed(when))]
    events = write_lines(tmp_path / "events.jsonl", rows)
    result = invoke(events, "--out", tmp_path / "out", "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert "were rejected as too late" in result.output and "try --sort" in result.output
    sorted_run = invoke(events, "--out", tmp_path / "sorted", "--sort")
    assert "try --sort" not in sorted_run.output


def test_a_few_lines_too_late_give_no_hint(tmp_path: Path) -> None:
    when = [f"2024-{1 + day // 28:02d}-{1 + day % 28:02d}T10:00:00Z" for day in range(200)]
    rows = [orjson.dumps(usage("a1", at, f"e{n}")) for n, at in enumerate(when)]
    rows.insert(150, orjson.dumps(usage("a1", "2024-01-01T09:00:00Z", "late")))
    events = write_lines(tmp_path / "events.jsonl", rows)
    result = invoke(events, "--out", tmp_path / "out", "--jobs", "1")
    assert "1 rejected" in result.output and "try --sort" not in result.output


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_stopped_run_exits_130_and_leaves_the_previous_outputs_whole(
    tmp_path: Path, previous: tuple[Path, dict[str, bytes]], how: str, jobs: str
) -> None:
    out, before = previous
    events = write_lines(tmp_path / "events.jsonl", list(simulated(2, accounts=80, months=12)))
    args = [str(events), "--out", str(out), "--jobs", jobs, "--now", NOW, "--quiet"]
    with running_offline(args, stderr=subprocess.PIPE, env=quiet_env()) as process:
        wait_for(
            lambda: [p for p in out.glob(".offline-*/*health.jsonl") if p.stat().st_size > 0],
            "the run's first records",
            120,
        )
        _, stderr = interrupt(process, how)
    text = stderr.decode()
    assert process.returncode == 130, text
    assert "Traceback" not in text and "Aborted" not in text, text
    (line,) = text.strip().splitlines()
    assert line.startswith("streamer offline: interrupted after "), line
    assert line.endswith(f"the outputs in {out} were not replaced"), line
    assert outputs(out) == before
    assert leftovers(out) == []
