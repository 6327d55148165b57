"""Local table stores are kept only after a clean stop (`streamer/stream/local_stores.py`)."""

from __future__ import annotations

from pathlib import Path

from streamer.stream.local_stores import MARKER, open_local_stores, stopped_cleanly


def stores(tmp_path: Path) -> Path:
    tabledir = tmp_path / "v1" / "tables"
    (tabledir / "accounts-0.db").mkdir(parents=True)
    (tabledir / "accounts-0.db" / "000001.log").write_bytes(b"written before a SIGKILL")
    return tabledir


def test_a_start_after_a_kill_removes_the_stores(tmp_path: Path) -> None:
    tabledir = stores(tmp_path)
    assert not open_local_stores(tabledir, tmp_path)
    assert not tabledir.exists()  # faust restores every partition from its changelog


def test_a_start_after_a_clean_stop_keeps_them_once(tmp_path: Path) -> None:
    tabledir = stores(tmp_path)
    stopped_cleanly(tmp_path)
    assert open_local_stores(tabledir, tmp_path)
    assert (tabledir / "accounts-0.db" / "000001.log").exists()
    assert not (tmp_path / MARKER).exists()  # consumed: a kill of this run leaves none
    assert not open_local_stores(tabledir, tmp_path)
    assert not tabledir.exists()


def test_a_first_start_has_nothing_to_remove(tmp_path: Path) -> None:
    assert open_local_stores(tmp_path / "v1" / "tables", tmp_path)
