"""`streamer import` output through the real broker: import -> `streamer replay` -> worker gives the
final snapshots and alerts of `streamer offline --sort` on the same file."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_stream import (  # the stream tests' deployment and comparison helpers
    STREAMER,
    Deployment,
    assert_same_as_offline,
    clean_env,
    closing_events,
    deploy,  # noqa: F401  (a fixture)
    run_offline,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from importer.portfolio import write_export  # the importer unit tests' export

pytestmark = pytest.mark.integration


def test_imported_history_streamed_gives_the_same_answers_as_offline_sort(
    deploy: Callable[..., Deployment],  # noqa: F811
    tmp_path: Path,
) -> None:
    mapping = write_export(tmp_path / "export")
    imported = tmp_path / "imported.jsonl.gz"
    folder = str(tmp_path / "export")
    command = [STREAMER, "import", folder, "--mapping", str(mapping), "--out", str(imported)]
    done = subprocess.run(command, check=True, capture_output=True, env=clean_env(), timeout=120, text=True)
    assert "skipped bad rows: 0" in done.stdout
    lines = gzip.decompress(imported.read_bytes()).splitlines()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([*lines, *closing_events(lines)]) + b"\n")
    history = run_offline(events, tmp_path / "offline")
    assert not (tmp_path / "offline" / "deadletter.jsonl").read_bytes()

    deployment = deploy()
    printed = deployment.replay(events)
    assert f"published {len(history.lines):,} events" in printed
    worker = deployment.start_worker()
    deployment.settle(worker)
    assert_same_as_offline(deployment, history)
    assert not deployment.dead_letters()
    # who each account is came from the accounts table, through the broker, as offline has it
    snapshots = deployment.final_snapshots()
    assert snapshots["gap"]["profile"]["name"] == "Gap Inc"
    assert snapshots["gap"]["profile"]["attributes"] == {"country": "US"}
    assert snapshots["never-used"]["profile"] is None
