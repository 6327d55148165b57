"""A text summary of a py-spy profile in its raw (collapsed stacks) format.

py-spy's `--format raw` writes one line per distinct stack: `frame;frame;...;leaf COUNT`, each
frame `function (path:line)`, outermost first. Only threads holding the CPU are sampled (no
`--idle`), so sample shares are shares of the process's CPU. The same file opens as a flame
graph in speedscope or `flamegraph.pl`.

    .venv/bin/python bench/profile_summary.py bench/out/profile-RUN.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")

# Where a frame's file belongs, first match wins (paths as py-spy prints them).
AREAS: tuple[tuple[str, str], ...] = (
    ("streamer/core/intake.py", "decode + validate (streamer/contract)"),  # admit: decode + bounds
    ("streamer/core/", "scoring core (streamer/core)"),
    ("streamer/contract/", "decode + validate (streamer/contract)"),
    ("pydantic", "decode + validate (streamer/contract)"),
    ("streamer/state/", "state codec (streamer/state)"),
    ("streamer/projection/", "Redis projection (streamer/projection)"),
    ("redis/", "Redis projection (streamer/projection)"),
    ("streamer/stream/", "worker shell (streamer/stream)"),
    ("faust/", "faust / mode / aiokafka"),
    ("mode/", "faust / mode / aiokafka"),
    ("aiokafka/", "faust / mode / aiokafka"),
    ("kafka/", "faust / mode / aiokafka"),
    ("rocksdict", "faust / mode / aiokafka"),
    ("asyncio/", "asyncio"),
)


@dataclass(frozen=True)
class Frame:
    function: str
    path: str

    @property
    def name(self) -> str:
        """`module.py:function`, short enough for a table."""
        return f"{'/'.join(self.path.rsplit('/', 2)[-2:])}:{self.function}"

    @property
    def area(self) -> str:
        return next((area for needle, area in AREAS if needle in self.path), "other (interpreter, stdlib)")


def parse_frame(text: str) -> Frame:
    match = FRAME.match(text.strip())
    if match is None:
        return Frame(text.strip(), "")
    return Frame(match["function"], match["path"])


def read_stacks(path: Path) -> list[tuple[list[Frame], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append(([parse_frame(part) for part in stack.split(";")], int(count)))
    return stacks


@dataclass
class Summary:
    samples: int
    inclusive: Counter[str]  # function -> samples with it anywhere on the stack
    own: Counter[str]  # function -> samples with it as the leaf
    areas: Counter[str]  # area of the innermost frame that has one (else the leaf's)

    def lines(self, top: int = 20) -> Iterable[str]:
        total = max(1, self.samples)
        yield f"{self.samples:,} samples (CPU only)"
        yield "where the CPU goes (the innermost frame's area):"
        for area, count in self.areas.most_common():
            yield f"  {100 * count / total:5.1f}%  {area}"
        yield f"top {top} functions, inclusive (anywhere on the stack):"
        for name, count in self.inclusive.most_common(top):
            yield f"  {100 * count / total:5.1f}%  {name}"
        yield f"top {top} functions, self (the leaf):"
        for name, count in self.own.most_common(top):
            yield f"  {100 * count / total:5.1f}%  {name}"


def summarise(stacks: list[tuple[list[Frame], int]]) -> Summary:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    samples = 0
    for frames, count in stacks:
        samples += count
        for name in {frame.name for frame in frames if frame.path}:
            inclusive[name] += count
        if frames:
            own[frames[-1].name] += count
            known = [frame.area for frame in frames if not frame.area.startswith("other")]
            # asyncio only when nothing of ours or the framework's is on the stack
            inner = [area for area in known if area != "asyncio"] or known
            areas[inner[-1] if inner else frames[-1].area] += count
    return Summary(samples, inclusive, own, areas)


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw profile (collapsed stacks).")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for line in summarise(read_stacks(args.profile)).lines(args.top):
        print(line)


if __name__ == "__main__":
    main()
