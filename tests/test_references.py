"""Docstrings, comments and docs that name a `streamer` module or function name one that exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"\b(streamer(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


GENERATED = ROOT / "bench" / "out"  # git-ignored: the benches' files and the peers' own libraries


def _sources() -> list[Path]:
    files = [
        path
        for folder in ("streamer", "tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if not path.is_relative_to(GENERATED)
    ]
    return [*files, *sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


def _resolves(reference: str) -> bool:
    """True when `reference` is a module, or a module followed by attributes it has."""
    parts = reference.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: ModuleType | object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_every_streamer_name_in_docstrings_and_docs_exists() -> None:
    broken = [
        f"{path.relative_to(ROOT)}:{line}: {reference}"
        for path in _sources()
        for line, text in enumerate(path.read_text().splitlines(), 1)
        for reference in REFERENCE.findall(text)
        if not _resolves(reference)
    ]
    assert not broken, "references to names that do not exist:\n" + "\n".join(broken)
