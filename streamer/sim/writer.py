"""Writes a simulation to disk: events as JSON lines (gzip when named .gz) and the truth beside."""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streamer.sim.config import SimulationConfig
from streamer.sim.dirty import DirtyMixer
from streamer.sim.generate import generate_events
from streamer.sim.portfolio import build_portfolio
from streamer.sim.sink import DEFAULT_GZIP_LEVEL, Sink
from streamer.sim.truth import generate_truth

Progress = Callable[[int, float, str], None]
"""Called about once a second with (lines written, lines per second, current event time)."""

FLUSH_LINES = 8192
PROGRESS_SECONDS = 2.0


@dataclass(slots=True)
class WriteReport:
    """What was written: counts by event type and dirty kind, paths, sizes and timing."""

    events_path: Path
    truth_path: Path
    by_type: Counter[str] = field(default_factory=Counter)
    dirty: Counter[str] = field(default_factory=Counter)
    events_bytes: int = 0
    truth_bytes: int = 0
    seconds: float = 0.0
    first_at: str = ""
    last_at: str = ""
    truth_summary: dict[str, int] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        """Records written, clean and dirty."""
        return sum(self.by_type.values()) + sum(self.dirty.values())


def truth_path_for(out: Path) -> Path:
    """`events.jsonl.gz` -> `events.truth.json`, next to the events file (`EV.JSONL.GZ` ->
    `EV.truth.json`: the suffixes in any case, as the events file's gzip is chosen)."""
    name = out.name
    for suffix in (".gz", ".jsonl", ".ndjson", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return out.with_name(f"{name}.truth.json")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: events hold no cycles, and it costs ~10 % here."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def write_simulation(
    config: SimulationConfig,
    out: Path,
    truth: Path | None = None,
    progress: Progress | None = None,
    gzip_level: int = DEFAULT_GZIP_LEVEL,
) -> WriteReport:
    """Simulate `config`, write its events to `out` and its ground truth to `truth`: both are
    written beside their place and renamed into it at the end, so a run stopped part-way (^C, a
    full disk) leaves what was there (an interrupted run left a cut events file that looked
    whole, beside the truth of an earlier run)."""
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_path = truth or truth_path_for(out)
    partial_out, partial_truth = _partial(out), _partial(truth_path)
    try:
        report = _write(config, partial_out, partial_truth, progress, gzip_level, started)
        partial_out.replace(out)
        partial_truth.replace(truth_path)
    finally:
        partial_out.unlink(missing_ok=True)
        partial_truth.unlink(missing_ok=True)
    report.events_path, report.truth_path = out, truth_path
    return report


def _partial(path: Path) -> Path:
    """Where `path` is written until it is whole: a hidden name beside it, same suffix (.gz)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def _write(
    config: SimulationConfig,
    out: Path,
    truth: Path,
    progress: Progress | None,
    gzip_level: int,
    started: float,
) -> WriteReport:
    report = WriteReport(events_path=out, truth_path=truth)
    portfolio = build_portfolio(config)
    mixer = DirtyMixer(config.dirty_rate, config.seed) if config.dirty_rate > 0 else None
    dumps, by_type, dirty = orjson.dumps, report.by_type, report.dirty
    buffer: list[bytes] = []
    next_report = started + PROGRESS_SECONDS
    last_event: dict[str, object] = {}
    with Sink(out, gzip_level) as sink, _collector_paused():
        for event in generate_events(config, portfolio):
            line = dumps(event)
            buffer.append(line)
            by_type[event["event_type"]] += 1
            if mixer is not None:
                record = mixer.after(event, line)
                if record is not None:
                    buffer.append(record.value)
                    dirty[record.kind] += 1
            if len(buffer) >= FLUSH_LINES:
                sink.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
                now = time.monotonic()
                if progress is not None and now >= next_report:
                    progress(report.lines, report.lines / (now - started), event["occurred_at"])
                    next_report = now + PROGRESS_SECONDS
            if not report.first_at:
                report.first_at = event["occurred_at"]
            last_event = event
        if buffer:
            sink.write(b"\n".join(buffer) + b"\n")
    report.last_at = str(last_event.get("occurred_at", ""))
    truth_data = generate_truth(config, portfolio)
    report.truth_summary = truth_data["summary"]
    report.truth_path.write_bytes(orjson.dumps(truth_data) + b"\n")
    report.events_bytes = out.stat().st_size
    report.truth_bytes = report.truth_path.stat().st_size
    report.seconds = time.monotonic() - started
    return report
