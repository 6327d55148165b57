"""A worker's output is JSON lines only, from start-up to shutdown (faust's terminal spinner wrote
cursor escape codes into it), and an idle worker reports no processing latency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from streamer.local.stack import StackInfo

pytestmark = pytest.mark.integration

STREAMER = str(Path(sys.executable).parent / "streamer")


def test_every_worker_log_line_is_a_json_object(stack: StackInfo, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEALTHSTREAM_")}
    env |= {
        **stack.env(),
        "HEALTHSTREAM_TOPIC_PREFIX": f"l{tag}.",
        "HEALTHSTREAM_APP_ID": f"hsl-{tag}",
        "HEALTHSTREAM_DATA_DIR": str(tmp_path / "data"),
        "HEALTHSTREAM_STORE": "memory://",
        "HEALTHSTREAM_PROJECTION": "off",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([STREAMER, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120  # bounds a hang only
        while '"msg":"progress"' not in log.read_text(errors="replace"):
            assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no progress line within 120 s"
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    lines = log.read_bytes().splitlines()
    assert lines
    for line in lines:
        assert line.startswith(b"{"), f"not a JSON line: {line[:120]!r}"
        assert isinstance(json.loads(line), dict)
    entries = [json.loads(line) for line in lines]
    assert any(entry["msg"].endswith("Ready") for entry in entries)  # faust's start-up, as a log line
    # first which core runs, then what it scores with
    assert entries[0]["msg"].startswith("core: ")
    assert entries[1]["msg"] == "score config: the built-in defaults, no [model] (churn_risk_60d null)"
    progress = [entry for entry in entries if entry["msg"] == "progress"]
    assert progress and all(entry["latency_s"] == 0.0 for entry in progress)  # idle: nothing waits
    # the loop's longest stall since the line before (start-up included: a number, not a bound)
    assert all(isinstance(entry["loop_stall_s"], float) for entry in progress)
