"""A dead letter's `offset` in `streamer offline` is the line of the file it comes from, with
`--sort` as without (it was the line's place after sorting), with one process or several."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from streamer.cli import main

# Line 2 is refused by the core (a negative count), line 4 by the contract (a week date), and
# sorting moves both: 4 first (unreadable lines sort first), then 2 (the earliest time).
LINES = [
    '{"event_id":"a","event_type":"usage.recorded","account_id":"a1","occurred_at":"2024-03-03T10:00:00Z",'
    '"user_id":"u","feature":"api","count":1}',
    '{"event_id":"b","event_type":"usage.recorded","account_id":"a1","occurred_at":"2024-03-01T10:00:00Z",'
    '"user_id":"u","feature":"api","count":-5}',
    '{"event_id":"c","event_type":"usage.recorded","account_id":"a2","occurred_at":"2024-03-02T10:00:00Z",'
    '"user_id":"u","feature":"api","count":1}',
    '{"event_id":"d","event_type":"usage.recorded","account_id":"a1","occurred_at":"2024-W09-1T10:00:00Z",'
    '"user_id":"u","feature":"api","count":1}',
    "",
    "not json",
]


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("sort", [[], ["--sort"]])
def test_a_dead_letters_offset_is_its_line_in_the_file(tmp_path: Path, jobs: str, sort: list[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(LINES) + "\n")
    out = tmp_path / "out"
    args = ["offline", str(events), "--out", str(out), "--quiet", "--jobs", jobs, "--partitions", "2", *sort]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    letters = [json.loads(line) for line in (out / "deadletter.jsonl").read_text().splitlines()]
    found = {letter["offset"]: letter["original"] for letter in letters}
    assert found == {2: LINES[1], 4: LINES[3], 6: LINES[5]}
