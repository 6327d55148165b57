"""The compiled core and the pure-Python one write byte-identical `streamer offline` outputs.

mypyc compiles the same source, but not always to the same values: a bare `float` is a C double
there, so an int that a `float` annotation let through in Python (3 failed payments) would come
out as 3.0. This compares every output file of both cores on a simulated portfolio with dirty
records mixed in, at two partition counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from streamer.contract.decode import Rejected, decode_event
from streamer.contract.events import Event
from streamer.native import COMPILED_DIRNAME, CORE_DIR, ENV_PURE_CORE, MANIFEST
from streamer.sim.config import SimulationConfig
from streamer.sim.writer import write_simulation

OUTPUTS = ("accounts.jsonl", "health.jsonl", "alerts.jsonl", "deadletter.jsonl", "portfolio.json")

pytestmark = pytest.mark.skipif(
    not (CORE_DIR / COMPILED_DIRNAME / MANIFEST).is_file(), reason="the core is not compiled here"
)


def offline(events: Path, out: Path, partitions: int, *, pure: bool) -> dict[str, bytes]:
    env = {name: value for name, value in os.environ.items() if name != ENV_PURE_CORE}
    if pure:
        env[ENV_PURE_CORE] = "1"
    command = [sys.executable, "-W", "error::RuntimeWarning", "-m", "streamer.cli", "--version"]
    says = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    assert ("core: pure Python" in says) is pure, says  # a stale build would fail here
    command = [
        *(sys.executable, "-m", "streamer.cli", "offline", str(events)),
        *("--out", str(out), "--partitions", str(partitions), "--jobs", "1"),
        *("--now", "2030-01-01", "--quiet"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    found = {name: (out / name).read_bytes() for name in OUTPUTS}
    # A dead letter says when it was received (the wall clock): everything else must match.
    letters = [orjson.loads(line) for line in found["deadletter.jsonl"].splitlines()]
    found["deadletter.jsonl"] = b"\n".join(orjson.dumps({**d, "received_at": None}) for d in letters)
    return found


def from_defaults(events: Path) -> list[bytes]:
    """An account without any data (its score is `empty_score`) and band overrides on the
    first accounts (green and yellow lift a score to the band's threshold): each score is a
    configuration default, which must be a float in both cores (it once was an int in Python)."""
    valid = [event for line in events.read_bytes().splitlines() if (event := _valid(line))]
    last = max(event.occurred_at for event in valid).isoformat()
    accounts = sorted({event.account_id for event in valid if event.event_type == "subscription.started"})
    made = [{"event_type": "account.updated", "account_id": "x-new", "name": "X"}]
    for account, band in zip(accounts, ("green", "yellow", "red"), strict=False):
        made.append({"event_type": "health.override", "account_id": account, "band": band, **WHO})
    return [orjson.dumps({"event_id": f"x{n}", "occurred_at": last, **e}) for n, e in enumerate(made)]


WHO = {"reason": "call with the CSM", "author": "cs@example.com"}


def _valid(line: bytes) -> Event | None:
    """The line's event, or None (the simulation mixes dirty records in)."""
    try:
        return decode_event(line)
    except Rejected:
        return None


@pytest.mark.parametrize("partitions", [4, 1])
def test_compiled_and_pure_python_cores_write_the_same_bytes(tmp_path: Path, partitions: int) -> None:
    events = tmp_path / "events.jsonl"
    config = SimulationConfig(accounts=12, months=4, seed=23, dirty_rate=0.03)
    write_simulation(config, events, tmp_path / "truth.json", gzip_level=0)
    with events.open("ab") as out:  # scores that come from the configuration's defaults
        out.writelines(line + b"\n" for line in from_defaults(events))
    pure = offline(events, tmp_path / "pure", partitions, pure=True)
    compiled = offline(events, tmp_path / "compiled", partitions, pure=False)
    assert all(pure[name] for name in ("accounts.jsonl", "health.jsonl", "alerts.jsonl"))
    for name in OUTPUTS:
        assert compiled[name] == pure[name], f"{name} differs between the compiled and the pure-Python core"
