"""`streamer offline --jobs N`: byte-identical to one process for every partition count, the
cheap account-id reading that lets each child skip other partitions' lines, failures, Ctrl-C."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.cli import main
from streamer.contract.decode import Rejected, decode_event
from streamer.core.config import ScoreConfig
from streamer.core.money import format_money, monthly_micros
from streamer.offline import external_sort, parallel
from streamer.offline.parallel import ChildFailed, Job, run_parallel, shares
from streamer.offline.runner import OfflineRun, Summary, quick_account_id
from streamer.sim.config import SimulationConfig
from streamer.sim.writer import write_simulation
from tests.poison import file_poisons, huge_mrr_lines, interleave, usage

OUTPUTS = ("accounts.jsonl", "health.jsonl", "alerts.jsonl", "deadletter.jsonl", "portfolio.json")
NOW = "2030-01-01"
NOW_MS = 1_893_456_000_000  # 2030-01-01T00:00:00Z


def _event(account: str, event_id: str, when: str = "2024-02-01T10:00:00Z") -> dict[str, Any]:
    return usage(account, when, event_id)


# Lines that a cheap reading of the account id could get wrong; each is valid or refused whole.
TRICKY = [
    json.dumps(_event('quo"te', "t1")).encode(),  # an escaped quote in the id
    b'{"event_id":"t2","event_type":"usage.recorded","\\u0061ccount_id":"escaped-key",'
    b'"occurred_at":"2024-02-01T10:00:00Z","user_id":"u1","feature":"reports"}',
    json.dumps(_event("spaced", "t3")).encode(),  # ": " separators
    orjson.dumps({**_event("outer", "t4"), "meta": {"account_id": "inner"}}),  # nested key as well
    orjson.dumps(_event("first", "t5"))[:-1] + b',"account_id":"second"}',  # a repeated key
    orjson.dumps({**_event("x", "t6"), "account_id": 17}),  # not a string: refused
    orjson.dumps(_event("Zürich-ß-東京", "t7")),  # raw UTF-8
    orjson.dumps({**_event("note", "t8"), "note": 'say "account_id":"fake" here'}),
    b'{"\\"account_id":"fake","event_id":"t9"}',  # no real account_id: refused
    b"[1, 2, 3]",
    b"not json at all",
    b"",
    b"   ",
]


RECEIVED_AT = re.compile(rb'"received_at":"[^"]*"')


def same_bytes(data: bytes) -> bytes:
    """Outputs as compared: a dead letter's `received_at` is the wall-clock time it was written,
    which differs between any two runs (even two with one process); every other byte counts."""
    return RECEIVED_AT.sub(b'"received_at":"-"', data)


def write_lines(path: Path, lines: list[bytes], *, last_newline: bool = True) -> Path:
    data = b"\n".join(lines) + (b"\n" if last_newline else b"")
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


@cache
def simulated(seed: int, accounts: int = 6, months: int = 2) -> tuple[bytes, ...]:
    """Lines of a small simulated portfolio with malformed records mixed in (cached per seed)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        config = SimulationConfig(accounts=accounts, months=months, seed=seed, dirty_rate=0.03)
        write_simulation(config, path, Path(folder) / "truth.json", gzip_level=0)
        return tuple(path.read_bytes().splitlines())


def mixed(seed: int) -> list[bytes]:
    """A simulated file with the poison corpus and the tricky lines mixed in, each dated like
    the line before it (so none is too late, nor moves stream time ahead)."""
    lines, _ = interleave(list(simulated(seed)), file_poisons(), every=17)
    step = max(1, len(lines) // len(TRICKY))
    for place, tricky in reversed(list(enumerate(TRICKY))):
        when = next(found for found in map(_occurred_at, reversed(lines[: place * step + 1])) if found)
        lines.insert(place * step + 1, tricky.replace(b"2024-02-01T10:00:00Z", when))
    return lines


def _occurred_at(line: bytes) -> bytes | None:
    try:
        value = orjson.loads(line)
        return str(value["occurred_at"]).encode() if isinstance(value, dict) else None
    except (orjson.JSONDecodeError, KeyError):
        return None


# -- the cheap account id -------------------------------------------------------------------------


def test_quick_account_id_reads_plain_lines_and_gives_up_on_doubtful_ones() -> None:
    assert quick_account_id(orjson.dumps(_event("acme", "e1"))) == b"acme"
    assert quick_account_id(json.dumps(_event("acme", "e1")).encode()) == b"acme"
    assert quick_account_id(orjson.dumps(_event("Zürich", "e1"))) == "Zürich".encode()
    assert quick_account_id(TRICKY[0]) is None  # a backslash
    assert quick_account_id(TRICKY[1]) is None
    assert quick_account_id(TRICKY[3]) is None  # two keys named account_id
    assert quick_account_id(TRICKY[4]) is None
    assert quick_account_id(TRICKY[5]) is None  # a number


json_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | json_text,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(json_text | st.just("account_id"), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    account=json_text.filter(bool),
    extra=st.dictionaries(json_text | st.just("account_id"), json_values, max_size=4),
    ascii_only=st.booleans(),
    spaced=st.booleans(),
)
def test_quick_account_id_is_none_or_the_decoded_account_id(
    account: str, extra: dict[str, Any], ascii_only: bool, spaced: bool
) -> None:
    record = (
        {**extra, **_event(account, "e1")}
        if "account_id" not in extra
        else {**_event(account, "e1"), **extra}
    )
    separators = (", ", ": ") if spaced else (",", ":")
    line = json.dumps(record, ensure_ascii=ascii_only, separators=separators).encode()
    quick = quick_account_id(line)
    try:
        event = decode_event(line)
    except Rejected:
        return  # what a refused line gives only has to be the same in every process
    assert quick is None or quick == event.account_id.encode()


def test_every_partition_is_owned_once_and_one_process_reports_unreadable_lines() -> None:
    for partitions in range(1, 9):
        for jobs in range(1, 10):
            parts = shares(partitions, jobs)
            owned = [p for share in parts for p in share.partitions]
            assert sorted(owned) == list(range(partitions))
            assert len(parts) == min(jobs, partitions)
            assert [share.reports_unreadable for share in parts].count(True) == 1


# -- the same bytes as one process ----------------------------------------------------------------


def single_process(lines: list[bytes], partitions: int, batch: int) -> dict[str, bytes]:
    """What `--jobs 1` writes for these lines (accounts, snapshots, alerts, dead letters, portfolio)."""
    run = OfflineRun(ScoreConfig(), partitions, batch=batch, published_ms=NOW_MS)
    written: dict[str, list[bytes]] = {"health": [], "alerts": [], "deadletter": []}

    def writer(kind: str) -> Any:
        return lambda record: written[kind].append(orjson.dumps(record) + b"\n")

    run.feed(
        iter(line + b"\n" for line in lines),
        on_snapshot=writer("health"),
        on_alert=writer("alerts"),
        on_dead_letter=writer("deadletter"),
        source="events.jsonl",
    )
    outputs = {kind: b"".join(records) for kind, records in written.items()}
    outputs["accounts"] = b"".join(orjson.dumps(snapshot) + b"\n" for snapshot in run.accounts())
    outputs["portfolio"] = orjson.dumps(run.portfolio())
    return outputs


def several_processes(
    lines: list[bytes], partitions: int, batch: int, jobs: int, segment: int, folder: Path
) -> dict[str, bytes]:
    """The same through `run_parallel`, with small batches and segments."""
    events = write_lines(folder / "events.jsonl", lines)
    scratch = folder / "scratch"
    scratch.mkdir()
    job = Job(ScoreConfig(), partitions, "cs.", NOW_MS, events, "events.jsonl", 0, scratch, batch, segment)
    files = {
        kind: (folder / f"{kind}.jsonl").open("wb") for kind in ("health", "alerts", "deadletter", "accounts")
    }
    try:
        outputs: dict[str, IO[bytes]] = {kind: files[kind] for kind in ("health", "alerts", "deadletter")}
        result = run_parallel(job, jobs, outputs, files["accounts"], lambda *_: None)
    finally:
        for handle in files.values():
            handle.close()
    assert not scratch.exists(), "the scratch folder is removed"
    written = {kind: (folder / f"{kind}.jsonl").read_bytes() for kind in files}
    written["portfolio"] = orjson.dumps(result.portfolio)
    assert result.accounts == written["accounts"].count(b"\n")
    return written


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    seed=st.integers(1, 4),
    partitions=st.integers(1, 6),
    jobs=st.integers(2, 4),
    batch=st.integers(1, 40),
    segment_batches=st.integers(1, 5),
)
def test_several_processes_write_the_bytes_of_one(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    partitions: int,
    jobs: int,
    batch: int,
    segment_batches: int,
) -> None:
    """Property: any simulated file (with poisons and tricky lines), partition count, number of
    processes, batch and segment size gives exactly the outputs of one process."""
    lines = mixed(seed)
    folder = tmp_path_factory.mktemp("parallel")
    expected = single_process(lines, partitions, batch)
    got = several_processes(lines, partitions, batch, jobs, batch * segment_batches, folder)
    for kind in expected:
        assert same_bytes(got[kind]) == same_bytes(expected[kind]), (
            f"{kind} differs ({partitions} partitions, {jobs} processes)"
        )
    _, placed = interleave(list(simulated(seed)), file_poisons(), every=17)  # as `mixed` places them
    assert expected["deadletter"].count(b"\n") >= len(placed) > 0  # every bad line placed is there


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


@pytest.mark.parametrize("sort", [False, True], ids=["file-order", "sorted"])
@pytest.mark.parametrize("partitions", [1, 3, 4])
def test_cli_jobs_give_byte_identical_files(tmp_path: Path, sort: bool, partitions: int) -> None:
    jobs_give_byte_identical_files(tmp_path, tmp_path, sort, partitions)


def test_cli_jobs_sorting_in_runs_on_disk_give_the_files_of_a_sort_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_memory = jobs_give_byte_identical_files(tmp_path, tmp_path / "memory", True, 4)
    monkeypatch.setattr(external_sort, "RUN_BYTES", 4096)
    in_runs = jobs_give_byte_identical_files(tmp_path, tmp_path / "runs", True, 4)
    for name in OUTPUTS:
        assert same_bytes((in_runs / name).read_bytes()) == same_bytes((in_memory / name).read_bytes()), name
        assert not list(in_runs.glob(".sort-*")), "no run left"


def jobs_give_byte_identical_files(folder: Path, out: Path, sort: bool, partitions: int) -> Path:
    """--jobs 1, 2 and 3 write the same files (under `out`); the folder --jobs 1 wrote them to."""
    # The last line is unreadable and has no line ending: --sort moves it first.
    events = write_lines(folder / "events.jsonl.gz", [*mixed(5), b'{"half": '], last_newline=False)
    flags = ["--sort"] if sort else []
    outs = {}
    for jobs in (1, 2, 3):
        outs[jobs] = out / f"out-{jobs}"
        result = invoke(
            "offline",
            events,
            "--out",
            outs[jobs],
            "--partitions",
            partitions,
            "--jobs",
            jobs,
            "--now",
            NOW,
            *flags,
        )
        assert result.exit_code == 0, result.output
    for name in OUTPUTS:
        first = same_bytes((outs[1] / name).read_bytes())
        assert first, name
        for jobs in (2, 3):
            assert same_bytes((outs[jobs] / name).read_bytes()) == first, f"{name} with --jobs {jobs}"
        assert not list(outs[jobs].glob(".offline-*")), "no scratch folder left"
    dead = [orjson.loads(row) for row in (outs[1] / "deadletter.jsonl").read_bytes().splitlines()]
    assert [row["error"] for row in dead if row["original"] == '{"half": '] == [
        "not valid JSON: EOF while parsing a value at line 1 column 9"  # read without a line ending
    ]
    return outs[1]


def test_jobs_agree_on_a_portfolio_whose_sums_pass_64_bits(tmp_path: Path) -> None:
    """A child's period sums past 64 bits of micro-units failed to reach the parent (the JSON it
    sends carried 64-bit integers only): --jobs 2 ended in an error where --jobs 1 did not."""
    events = write_lines(tmp_path / "huge.jsonl", huge_mrr_lines(120))
    outs = {jobs: tmp_path / f"out-{jobs}" for jobs in (1, 2)}
    for jobs, out in outs.items():
        result = invoke(
            "offline", events, "--out", out, "--partitions", 2, "--jobs", jobs, "--now", NOW, "--quiet"
        )
        assert result.exit_code == 0, result.output
    portfolio = (outs[1] / "portfolio.json").read_bytes()
    assert same_bytes((outs[2] / "portfolio.json").read_bytes()) == same_bytes(portfolio)
    per_subscription = monthly_micros(Decimal(1_000_000_000), "week", 1, ScoreConfig().currency.rates["GBP"])
    assert orjson.loads(portfolio)["current"]["mrr"] == format_money(120 * 64 * per_subscription)


def test_summary_names_the_processes_and_their_memory(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", list(simulated(1)))
    result = invoke("offline", events, "--out", tmp_path / "out", "--jobs", "2", "--now", NOW, "--quiet")
    assert result.exit_code == 0, result.output
    assert re.search(r"2 processes: CPU [\d.]+ \+ [\d.]+ s, peak RSS \d+ MiB per process", result.output)


# -- failures and interruptions -------------------------------------------------------------------


def test_a_failing_child_fails_the_run_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    close = parallel.SegmentFiles.close_segment

    def fail_in_child_one(self: parallel.SegmentFiles, *, last: bool = False) -> None:
        if self.child == 1:
            raise OSError("no space left on the scratch disk")
        close(self, last=last)

    monkeypatch.setattr(parallel.SegmentFiles, "close_segment", fail_in_child_one)
    events = write_lines(tmp_path / "events.jsonl", list(simulated(1)))
    out = tmp_path / "out"
    result = invoke("offline", events, "--out", out, "--jobs", "2", "--partitions", "4", "--quiet")
    assert result.exit_code == 1
    assert "process 1 (partitions 1, 3) failed: OSError: no space left on the scratch disk" in result.output
    assert not list(out.glob(".offline-*"))


def test_a_killed_child_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    close = parallel.SegmentFiles.close_segment

    def die_in_child_zero(self: parallel.SegmentFiles, *, last: bool = False) -> None:
        if self.child == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        close(self, last=last)

    monkeypatch.setattr(parallel.SegmentFiles, "close_segment", die_in_child_zero)
    events = write_lines(tmp_path / "events.jsonl", list(simulated(1)))
    out = tmp_path / "out"
    with pytest.raises(ChildFailed, match=r"process 0 stopped without a result \(exit code -9"):
        scratch = parallel.scratch_folder(tmp_path)
        job = Job(ScoreConfig(), 2, "cs.", NOW_MS, events, "events.jsonl", 0, scratch)
        with (out.parent / "sink").open("wb") as sink:
            run_parallel(job, 2, {"health": sink, "alerts": sink, "deadletter": sink}, sink, lambda *_: None)
    assert not scratch.exists()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for(condition: Any, what: str, deadline_s: float = 300) -> Any:
    """Poll `condition` until it returns something true; the deadline only bounds a hang."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def running_offline(
    args: list[str], *, stderr: int = subprocess.STDOUT, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`streamer offline ARGS` in its own process group, as from a terminal, killed with its
    group if it is still running at the end of the block."""
    command = [sys.executable, "-c", "from streamer.cli import main; main()", "offline", *args]
    process = subprocess.Popen(
        command,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=stderr,
        # As from a terminal: a shell starting pytest in the background passes SIGINT on ignored,
        # and the run would then finish instead of stopping.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env=env,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def interrupt(process: subprocess.Popen[bytes], how: str) -> tuple[bytes, bytes | None]:
    """Ctrl-C as a terminal sends it (to the whole foreground group) or SIGTERM; the run's stdout
    and stderr (None: sent to stdout) once it ended."""
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=120)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupting_the_run_stops_the_children_and_removes_the_scratch_files(
    tmp_path: Path, how: str
) -> None:
    # Long enough (about 130k lines, several CPU seconds per child) that the run cannot finish
    # between the children's first files and the signal on a busy machine (30k lines once did).
    lines = list(simulated(2, accounts=80, months=12))
    events = write_lines(tmp_path / "events.jsonl", lines)
    out = tmp_path / "out"
    args = [str(events), "--out", str(out), "--jobs", "2", "--now", NOW, "--quiet"]
    with running_offline(args) as process:
        children = wait_for(
            lambda: len(children_of(process.pid)) == 2 and children_of(process.pid), "children"
        )
        wait_for(lambda: list(out.glob(".offline-*/c*.s0.health.jsonl")), "the children's first files")
        output, _ = interrupt(process, how)
    assert process.returncode == 130, output.decode()
    assert b"Traceback" not in output, output.decode()
    assert b"streamer offline: interrupted after " in output, output.decode()
    wait_for(lambda: not any(alive(child) for child in children), "the children to stop", 60)
    assert not list(out.glob(".offline-*")), "the scratch folder is removed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
def test_a_ctrl_c_landing_in_a_child_before_it_starts_scoring_is_left_to_the_parent(
    tmp_path: Path,
) -> None:
    # The narrowest window of a Ctrl-C: in a child just forked, before `_child` ignores SIGINT.
    # An at-fork hook sends it there; the child must neither die nor print a traceback (it did,
    # in multiprocessing's start-up, before the parent blocked SIGINT around the forks).
    events = write_lines(tmp_path / "events.jsonl", list(simulated(3)))
    out = tmp_path / "out"
    script = (
        "import os, signal\n"
        "os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGINT))\n"
        "from streamer.cli import main\n"
        "main()\n"
    )
    command = [sys.executable, "-c", script, "offline", str(events), "--out", str(out)]
    command += ["--jobs", "2", "--now", NOW, "--quiet"]
    done = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    output = done.stdout.decode()
    assert done.returncode == 0, output
    assert "Traceback" not in output and "Exception ignored" not in output, output
    assert (out / "health.jsonl").stat().st_size > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
def test_a_sigterm_landing_in_a_child_before_it_starts_scoring_stops_it_without_a_traceback(
    tmp_path: Path,
) -> None:
    # The same window for SIGTERM, which the parent sends its children when it stops: a child
    # still in multiprocessing's start-up ran the parent's handler there and printed its traceback
    # ("Exception ignored in: _after_at_fork_child_reinit_locks ... _Stop"; seen once in CI).
    events = write_lines(tmp_path / "events.jsonl", list(simulated(3)))
    script = (
        "import os, signal\n"
        "os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGTERM))\n"
        "from streamer.cli import main\n"
        "main()\n"
    )
    command = [sys.executable, "-c", script, "offline", str(events), "--out", str(tmp_path / "out")]
    command += ["--jobs", "2", "--now", NOW, "--quiet"]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    output = done.stdout.decode()
    assert done.returncode == 1, output  # its children were stopped: the run failed, in one line
    assert "Traceback" not in output and "Exception ignored" not in output, output
    assert output.strip().splitlines()[-1].startswith("Error: process "), output


def test_a_summary_crosses_the_pipe_whole() -> None:
    """Each field was written out by hand on both sides of the pipe: a new one would have been
    dropped from `--jobs N` runs without a word."""
    sent = Summary(lines=9, accepted=5, duplicates=1, rejected=2, blank=1, alerts=Counter(a=2), snapshots=4)
    sent.seconds = 3.0
    wire = orjson.loads(orjson.dumps(sent.share_record()))
    assert set(wire) == {f.name for f in fields(Summary)} - {"seconds"}
    received = Summary()
    received.add_share(wire)
    received.add_share(wire)  # a second child's share: its counts add, the file's lines do not
    assert received == Summary(
        lines=9, accepted=10, duplicates=2, rejected=4, blank=1, alerts=Counter(a=4), snapshots=8
    )
