"""Local table stores are kept only after a clean stop (`streamer/stream/local_stores.py`)."""

from __future__ import annotations

from pathlib import Path

from streamer.stream.local_stores import MARKER, OWNER, open_local_stores, stopped_cleanly

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
