"""Sorting a file's lines in bounded memory: runs on disk, merged, removed afterwards."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer import runfiles
from streamer.offline import external_sort
from streamer.offline.external_sort import Key, SortedLines
from streamer.runfiles import RunFiles


def time_key(numbered: tuple[int, bytes]) -> Key:
    """(the line's first field as a time, 0, line number): many lines share a time."""
    number, line = numbered
    head = line.split(b",", 1)[0]
    return (int(head) if head.strip().isdigit() else -1, 0, number)


def shuffled_lines(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    odd = [b"", b"\n", b"\x00\xff\xfe not utf-8\n", b"x" * 5000 + b"\n", b"\r\n"]
    lines = [f"{rng.randrange(50)},{i},{'y' * rng.randrange(40)}\n".encode() for i in range(count)]
    for line in odd:
        lines.insert(rng.randrange(len(lines)), line)
    lines.append(b"17,last line without an ending")
    return lines


def in_memory(lines: list[bytes]) -> list[tuple[Key, bytes]]:
    return sorted((time_key(numbered), numbered[1]) for numbered in enumerate(lines))


@pytest.mark.parametrize("run_bytes", [1, 64, 4096, None], ids=["line-per-run", "tiny", "small", "default"])
def test_runs_merge_to_the_order_of_a_sort_in_memory(tmp_path: Path, run_bytes: int | None) -> None:
    lines = shuffled_lines(2000)
    with SortedLines(iter(lines), time_key, tmp_path, run_bytes) as ordered:
        assert ordered.count == len(lines)
        if run_bytes is not None:
            assert ordered.runs > 1
        assert list(ordered) == in_memory(lines)  # bytes kept exactly, the unterminated line too
    assert list(tmp_path.iterdir()) == [], "the runs are removed"


def test_a_file_within_one_run_is_sorted_without_the_disk(tmp_path: Path) -> None:
    lines = shuffled_lines(300)
    with SortedLines(iter(lines), time_key, tmp_path) as ordered:
        assert (ordered.runs, list(tmp_path.iterdir())) == (1, [])
        assert list(ordered) == in_memory(lines)


def test_the_default_run_size_is_read_when_sorting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands take `RUN_BYTES` as it is when they sort (tests set it small)."""
    monkeypatch.setattr(external_sort, "RUN_BYTES", 100)
    with SortedLines(iter(shuffled_lines(200)), time_key, tmp_path) as ordered:
        assert ordered.runs > 1


def test_the_runs_are_removed_when_reading_fails(tmp_path: Path) -> None:
    def lines() -> object:
        yield from shuffled_lines(500)
        raise OSError("damaged input")

    with pytest.raises(OSError, match="damaged input"), SortedLines(lines(), time_key, tmp_path, 64):  # type: ignore[arg-type]
        pass
    assert list(tmp_path.iterdir()) == []


def test_the_runs_are_removed_when_the_reader_stops_early(tmp_path: Path) -> None:
    lines = shuffled_lines(500)
    with pytest.raises(RuntimeError), SortedLines(iter(lines), time_key, tmp_path, 64) as ordered:
        for _ in ordered:
            raise RuntimeError("the consumer failed")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_source_gives_nothing(tmp_path: Path) -> None:
    with SortedLines(iter([]), time_key, tmp_path, 1) as ordered:
        assert (ordered.count, list(ordered)) == (0, [])


def test_more_runs_than_one_merge_takes_are_merged_in_groups_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runfiles, "MAX_FAN_IN", 4)
    read_run, open_runs, most = RunFiles.read, set[Path](), [0]

    def counted(self: RunFiles[Any], path: Path) -> Iterator[Any]:
        open_runs.add(path)
        most[0] = max(most[0], len(open_runs))
        yield from read_run(self, path)
        open_runs.discard(path)

    monkeypatch.setattr(RunFiles, "read", counted)
    lines = shuffled_lines(400)
    with SortedLines(iter(lines), time_key, tmp_path, 64) as ordered:
        assert ordered.runs > 4 * 4  # groups of groups
        assert list(ordered) == in_memory(lines)
    assert most == [4], "a merge reads at most MAX_FAN_IN files at once (the last run is in memory)"
    assert list(tmp_path.iterdir()) == []
