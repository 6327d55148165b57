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


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def test_every_relative_link_in_the_docs_reaches_a_file_and_a_heading() -> None:
    broken = []
    for path in [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]:
        for line, text in enumerate(path.read_text().splitlines(), 1):
            for target in LINK.findall(text):
                if target.startswith(("http://", "https://", "mailto:")):
                    continue
                name, _, anchor = target.partition("#")
                linked = (path.parent / name).resolve() if name else path
                if not linked.exists():
                    broken.append(f"{path.relative_to(ROOT)}:{line}: {target} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                    broken.append(f"{path.relative_to(ROOT)}:{line}: {target} (no such heading)")
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)


def test_every_doc_named_in_the_code_and_docs_exists() -> None:
    named = re.compile(r"\bdocs/[\w./-]+\.md\b")
    missing = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in _sources()
        for line, text in enumerate(path.read_text().splitlines(), 1)
        for name in named.findall(text)
        if not (ROOT / name).exists()
    ]
    assert not missing, "documents that do not exist:\n" + "\n".join(missing)
