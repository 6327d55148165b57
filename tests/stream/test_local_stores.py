"""Local table stores are kept only after a clean stop (`streamer/stream/local_stores.py`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamer.stream.local_stores import MARKER, OWNER, data_dir_problem, open_local_stores, stopped_cleanly

APP = "healthstream"


def stores(tmp_path: Path) -> Path:
    tabledir = tmp_path / "v1" / "tables"
    (tabledir / "accounts-0.db").mkdir(parents=True)
    (tabledir / "accounts-0.db" / "000001.log").write_bytes(b"written before a SIGKILL")
    return tabledir


def test_a_start_after_a_kill_removes_the_stores(tmp_path: Path) -> None:
    tabledir = stores(tmp_path)
    assert not open_local_stores(tabledir, tmp_path, APP)
    assert not tabledir.exists()  # faust restores every partition from its changelog


def test_a_start_after_a_clean_stop_keeps_them_once(tmp_path: Path) -> None:
    tabledir = stores(tmp_path)
    stopped_cleanly(tmp_path)
    assert open_local_stores(tabledir, tmp_path, APP)
    assert (tabledir / "accounts-0.db" / "000001.log").exists()
    assert not (tmp_path / MARKER).exists()  # consumed: a kill of this run leaves none
    assert not open_local_stores(tabledir, tmp_path, APP)
    assert not tabledir.exists()


def test_a_first_start_has_nothing_to_remove(tmp_path: Path) -> None:
    assert open_local_stores(tmp_path / "v1" / "tables", tmp_path, APP)


def test_the_stores_of_another_app_id_are_removed_even_after_a_clean_stop(tmp_path: Path) -> None:
    """faust names the stores by table alone: another app's would be opened over this app's
    changelogs."""
    tabledir = stores(tmp_path)
    stopped_cleanly(tmp_path)
    assert open_local_stores(tabledir, tmp_path, APP)  # a directory that names no app: this one's
    assert (tmp_path / OWNER).read_text() == f"{APP}\n"
    stopped_cleanly(tmp_path)
    assert not open_local_stores(tabledir, tmp_path, "staging")
    assert not tabledir.exists()
    assert (tmp_path / OWNER).read_text() == "staging\n"


def test_a_data_directory_that_cannot_be_used_is_said_in_one_line(tmp_path: Path) -> None:
    """A file in its place, or a folder that cannot be written: a traceback of 30-40 lines."""
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    for unusable in (a_file, a_file / "below"):
        problem = data_dir_problem(unusable)
        assert problem is not None and problem.startswith(f"the data directory {unusable} ")
        assert "\n" not in problem and "give a folder the worker can create and write" in problem
    fine = tmp_path / "new" / "data"
    assert data_dir_problem(fine) is None and fine.is_dir() and list(fine.iterdir()) == []


def test_the_worker_command_refuses_such_a_directory_before_it_connects(tmp_path: Path) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    env = {"PATH": "/usr/bin:/bin", "HEALTHSTREAM_DATA_DIR": str(a_file), "HEALTHSTREAM_KAFKA_PORT": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "worker", "--connect-timeout", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"Error: the data directory {a_file} "), (
        done.stderr
    )
    assert "Traceback" not in done.stderr
