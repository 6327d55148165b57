"""`streamer backtest --replay-cache`: an input read once (a pipe) is refused, not replayed empty
or waited on; a cache made without `--now` is reused only where the wall clock's move changes
the judgement of no event; the header counts every line as `streamer offline` does."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from streamer.backtest.replaycache import fingerprint, load, save
from streamer.backtest.sampling import sorted_lines
from streamer.cli import main
from streamer.core.config import ScoreConfig
from streamer.offline.runner import time_window
from tests.backtest.test_replaycache import a_replay
from tests.poison import usage

WARMUP = ["--warmup-days", "30"]
HOUR_MS = 3_600_000


def invoke(*args: object) -> Result:
    clean = {key: None for key in os.environ if key.startswith("HEALTHSTREAM_")}
    return CliRunner(env=clean).invoke(main, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("inputs") / "events.jsonl"
    result = invoke(
        "simulate", "--accounts", "30", "--months", "5", "--seed", "8", "--churn-scale", "3",
        "--out", path, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path.read_bytes()


def quiet_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEALTHSTREAM_")}
    return {**env, "PYTHONWARNINGS": "ignore"}


REFUSED = (
    "Error: --replay-cache needs EVENTS to be a regular file, which it reads twice (its SHA-256, "
    "then the replay): {name} is not one; save it to a file first, or leave out --replay-cache"
)


def test_a_fifo_with_a_replay_cache_is_refused_in_one_line(simulated: bytes, tmp_path: Path) -> None:
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # nobody opened it: refused before reading
            return
        with os.fdopen(fd, "wb") as writer:
            writer.write(simulated)

    command = [sys.executable, "-m", "streamer", "backtest", str(fifo), "--quiet", *WARMUP]
    command += ["--replay-cache", str(tmp_path / "cache.gz")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=quiet_env())
    writer = threading.Thread(target=lambda: (time.sleep(2), feed()), daemon=True)
    writer.start()
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("backtest waited on the FIFO for a second reading")
    assert process.returncode == 2, stderr
    assert stderr.decode().strip().splitlines() == [REFUSED.format(name=fifo)]
    assert not (tmp_path / "cache.gz").exists()


def test_standard_input_with_a_replay_cache_is_refused_in_one_line(simulated: bytes, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "streamer", "backtest", "/dev/stdin", "--quiet", *WARMUP]
    command += ["--replay-cache", str(tmp_path / "cache.gz")]
    done = subprocess.run(command, input=simulated, capture_output=True, timeout=300, env=quiet_env())
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode().strip().splitlines() == [REFUSED.format(name="/dev/stdin")]


def test_standard_input_without_a_replay_cache_is_replayed(simulated: bytes) -> None:
    command = [sys.executable, "-m", "streamer", "backtest", "/dev/stdin", "--quiet", *WARMUP]
    done = subprocess.run(command, input=simulated, capture_output=True, timeout=300, env=quiet_env())
    assert done.returncode == 0, done.stderr


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_replay_counts_the_events_dated_after_its_bound(tmp_path: Path) -> None:
    published = datetime(2024, 6, 1, tzinfo=UTC)
    lines = [
        usage("a", iso(published - timedelta(days=1)), "past"),
        usage("a", iso(published + timedelta(hours=30)), "ahead"),  # past the 24 hours of skew
        usage("a", iso(published + timedelta(hours=31)), "further"),
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    published_ms = int(published.timestamp() * 1000)
    with sorted_lines(events, time_window(ScoreConfig(), published_ms)) as (_, span):
        assert span.beyond == 2


def test_a_cache_made_without_now_is_reused_only_where_every_event_is_judged_the_same(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    then = 1_717_200_000_000
    made = fingerprint(events, ScoreConfig(), 4, 60, None, then)
    cache = tmp_path / "replay.json.gz"

    clean = a_replay()
    save(cache, clean, made)
    assert load(cache, fingerprint(events, ScoreConfig(), 4, 60, None, then)) == clean
    assert load(cache, fingerprint(events, ScoreConfig(), 4, 60, None, then + 48 * HOUR_MS)) == clean
    assert load(cache, fingerprint(events, ScoreConfig(), 4, 60, None, then - HOUR_MS)) is None

    beyond = a_replay()
    beyond.beyond_bound = 1  # an event was refused as in the future: a later clock may accept it
    save(cache, beyond, made)
    assert load(cache, fingerprint(events, ScoreConfig(), 4, 60, None, then)) == beyond
    assert load(cache, fingerprint(events, ScoreConfig(), 4, 60, None, then + 48 * HOUR_MS)) is None


def test_a_backtest_after_the_clock_moved_replays_an_event_once_refused_as_in_the_future(
    simulated: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead = datetime.now(UTC) + timedelta(hours=30)
    events = tmp_path / "events.jsonl"
    last = orjson.loads(simulated.splitlines()[-1])
    events.write_bytes(simulated + orjson.dumps(usage(last["account_id"], iso(ahead), "ahead")) + b"\n")
    cache = tmp_path / "replay.gz"
    first = invoke(
        "backtest", events, *WARMUP, "--quiet", "--replay-cache", cache, "--json", tmp_path / "1.json"
    )
    assert first.exit_code == 0, first.output
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3 * 86_400)
    second = invoke(
        "backtest", events, *WARMUP, "--quiet", "--replay-cache", cache, "--json", tmp_path / "2.json"
    )
    assert second.exit_code == 0, second.output
    assert "read from the replay" not in second.output
    before, after = (orjson.loads((tmp_path / f"{n}.json").read_bytes()) for n in (1, 2))
    assert after["accepted"] == before["accepted"] + 1


def test_the_header_and_the_figures_count_duplicates_and_blank_lines(
    simulated: bytes, tmp_path: Path
) -> None:
    rows = simulated.splitlines()
    events = tmp_path / "events.jsonl.gz"
    events.write_bytes(gzip.compress(b"\n".join([*rows, rows[5], rows[9], b"", b"  "]) + b"\n"))
    figures = tmp_path / "figures.json"
    result = invoke("backtest", events, *WARMUP, "--quiet", "--json", figures)
    assert result.exit_code == 0, result.output
    data = orjson.loads(figures.read_bytes())
    assert data["duplicates"] == 2 and data["blank"] == 2
    assert data["lines"] == data["accepted"] + data["duplicates"] + data["rejected"] + data["blank"]
    assert (
        f"{data['lines']:,} lines ({data['accepted']:,} accepted, 2 duplicates, {data['rejected']:,} "
        "rejected, 2 blank skipped)"
    ) in result.output


@pytest.mark.parametrize("name", ["events.jsonl.gz", "events.jsonl"])
def test_a_zstd_file_is_one_line(simulated: bytes, tmp_path: Path, name: str) -> None:
    events = tmp_path / name
    events.write_bytes(b"\x28\xb5\x2f\xfd" + simulated[:2000])
    result = invoke("backtest", events, "--quiet")
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: {name}: a zstd file: decompress it first (zstd -d {name})"
    ]


INTERRUPTED = (
    "streamer backtest: interrupted while replaying {name}; no output was written "
    "(a replay cache is written only once whole)"
)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_a_stopped_backtest_exits_130_in_one_line(simulated: bytes, tmp_path: Path, how: str) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(simulated)
    script = (
        "import os, signal\n"
        "from streamer.backtest import sampling\n"
        "def stop(*args, **kwargs):\n"
        f"    os.kill(os.getpid(), signal.{how})\n"
        "sampling.replay = stop\n"
        "from streamer.cli import main\n"
        "main()\n"
    )
    command = [sys.executable, "-c", script, "backtest", str(events), "--quiet", *WARMUP]
    command += ["--replay-cache", str(tmp_path / "cache.gz"), "--json", str(tmp_path / "figures.json")]
    done = subprocess.run(
        command,
        capture_output=True,
        timeout=300,
        env=quiet_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stderr = done.stderr.decode()
    assert done.returncode == 130, stderr
    assert stderr.strip().splitlines() == [INTERRUPTED.format(name=events)]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["events.jsonl"]
