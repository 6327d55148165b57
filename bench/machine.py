"""What both benchmarks print about the machine and the code they measured."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def load() -> str:
    """The load averages (1, 5, 15 min), which slow every wall-clock number."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def git_revision(where: Path = BENCH_DIR) -> str:
    """The short revision of the checkout at `where`, marked when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (uncommitted changes)' if dirty else ''}"
