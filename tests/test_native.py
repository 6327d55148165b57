"""The compiled core is used only when it was built from the sources on disk (streamer/native.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import streamer.core
import streamer.core.score
from streamer.native import (
    COMPILED_DIRNAME,
    CORE_DIR,
    ENV_PURE_CORE,
    GROUP,
    MANIFEST,
    SWITCH_ON,
    StaleCoreWarning,
    SwitchWarning,
    _extension_name,
    choose,
    compiled_sources,
    running,
    source_digest,
)


def fake_core(root: Path, *, build: bool = True) -> Path:
    """A core folder with two modules, the excluded ones, and (when `build`) a matching build."""
    core = root / "core"
    core.mkdir()
    sources = {"__init__.py": "", "config.py": "A = 1\n", "score.py": "B = 2\n", "alerts.py": "C = 3\n"}
    for name, text in sources.items():
        (core / name).write_text(text)
    if build:
        compiled = core / COMPILED_DIRNAME
        compiled.mkdir()
        for stem in ("score", "alerts", GROUP.rsplit(".", 1)[-1] + "__mypyc"):
            (compiled / _extension_name(stem)).write_bytes(b"")
        manifest = {"sources": source_digest(compiled_sources(core)), "python": sys.implementation.cache_tag}
        (compiled / MANIFEST).write_text(json.dumps(manifest))
    return core


def choose_quietly(core: Path, environ: dict[str, str]) -> tuple[bool, str, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = choose(core, environ)
    return choice.compiled, choice.reason, [str(w.message) for w in caught if w.category is StaleCoreWarning]


def test_a_build_of_the_sources_on_disk_is_used(tmp_path: Path) -> None:
    assert choose_quietly(fake_core(tmp_path), {}) == (True, "", [])


def test_the_excluded_modules_are_not_part_of_the_build(tmp_path: Path) -> None:
    core = fake_core(tmp_path)
    (core / "config.py").write_text("A = 2\n")  # not compiled: editing it never makes the build stale
    assert choose_quietly(core, {})[0]


def test_an_edited_source_falls_back_to_pure_python_with_a_warning_naming_it(tmp_path: Path) -> None:
    core = fake_core(tmp_path)
    (core / "alerts.py").write_text("C = 4\n")
    compiled, reason, warned = choose_quietly(core, {})
    assert not compiled
    assert "alerts.py changed" in reason and "make core" in reason
    assert len(warned) == 1 and "alerts.py changed" in warned[0] and "pure-Python" in warned[0]


def test_an_added_or_removed_module_makes_the_build_stale(tmp_path: Path) -> None:
    core = fake_core(tmp_path)
    (core / "new.py").write_text("D = 5\n")
    assert choose_quietly(core, {})[1].startswith("stale build: new.py changed")
    (core / "new.py").unlink()
    (core / "score.py").unlink()
    assert choose_quietly(core, {})[1].startswith("stale build: score.py changed")


def test_a_build_missing_a_module_for_this_python_is_not_used(tmp_path: Path) -> None:
    core = fake_core(tmp_path)
    (core / COMPILED_DIRNAME / _extension_name("alerts")).unlink()
    compiled, reason, warned = choose_quietly(core, {})
    assert not compiled and _extension_name("alerts") in reason and warned


def test_no_build_is_pure_python_without_a_warning(tmp_path: Path) -> None:
    assert choose_quietly(fake_core(tmp_path, build=False), {}) == (False, "not built: run `make core`", [])


def test_an_unreadable_manifest_is_not_used(tmp_path: Path) -> None:
    core = fake_core(tmp_path)
    (core / COMPILED_DIRNAME / MANIFEST).write_text("{")
    compiled, reason, warned = choose_quietly(core, {})
    assert not compiled and "unreadable" in reason and warned


@pytest.mark.parametrize("value", ["1", "yes"])
def test_the_variable_forces_pure_python(tmp_path: Path, value: str) -> None:
    forced = choose_quietly(fake_core(tmp_path), {ENV_PURE_CORE: value})
    assert forced == (False, f"{ENV_PURE_CORE}={value}", [])


@pytest.mark.parametrize("value", ["0", ""])
def test_the_variable_off_keeps_the_build(tmp_path: Path, value: str) -> None:
    assert choose_quietly(fake_core(tmp_path), {ENV_PURE_CORE: value})[0]


@pytest.mark.parametrize("value", ["false", "FALSE", "no", "Off", " 0 "])
def test_a_switch_word_for_off_keeps_the_build(tmp_path: Path, value: str) -> None:
    """`false` forced the pure-Python core: every value but "" and "0" read as on."""
    assert choose_quietly(fake_core(tmp_path), {ENV_PURE_CORE: value}) == (True, "", [])


@pytest.mark.parametrize("value", ["TRUE", "On", " yes"])
def test_a_switch_word_for_on_in_any_case_forces_pure_python(tmp_path: Path, value: str) -> None:
    assert not choose_quietly(fake_core(tmp_path), {ENV_PURE_CORE: value})[0]


@pytest.mark.parametrize("value", ["2", "maybe", "pure"])
def test_a_value_that_is_no_switch_is_ignored_with_a_warning_naming_it(tmp_path: Path, value: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = choose(fake_core(tmp_path), {ENV_PURE_CORE: value})
    assert choice.compiled
    [warned] = [str(w.message) for w in caught if w.category is SwitchWarning]
    assert f"{ENV_PURE_CORE}={value!r} is ignored" in warned


BUILT = (CORE_DIR / COMPILED_DIRNAME / MANIFEST).is_file()


def test_this_process_runs_the_core_it_says() -> None:
    """A build in the tree is used unless forced off; `make test` runs the suite on both."""
    says = running()
    loaded = Path(str(streamer.core.score.__file__))
    if os.environ.get(ENV_PURE_CORE, "").strip().lower() in SWITCH_ON or not BUILT:
        assert says.startswith("core: pure Python")
        assert loaded.suffix == ".py"
    else:
        assert says == "core: compiled (mypyc)", says  # a stale build in the tree fails here, loudly
        # `_compiled/score.so`, or `_compiled/streamer/core/score.so` when another core module
        # imported it first: inside the build either way.
        assert loaded.is_relative_to(CORE_DIR / COMPILED_DIRNAME) and loaded.suffix == ".so", loaded


@pytest.mark.skipif(not BUILT, reason="the core is not compiled here (no C compiler?)")
def test_an_edited_source_next_to_the_real_build_runs_the_edit(tmp_path: Path) -> None:
    """The stale-binary hazard, end to end: a copy of the package with the real build, one source
    edited after it; importing runs the edited source and warns."""
    package = tmp_path / "streamer"
    shutil.copytree(CORE_DIR.parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import streamer.core.money as m, streamer.native as n\n"
        "print(m.__file__); print(m.EDITED); print(n.running())"
    )

    def run() -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != ENV_PURE_CORE}
        env["PYTHONPATH"] = str(tmp_path)
        command = [sys.executable, "-c", script]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, check=False)

    with (package / "core" / "money.py").open("a") as source:
        source.write("\nEDITED = True\n")
    done = run()
    assert done.returncode == 0, done.stderr
    file, edited, says = done.stdout.splitlines()
    assert file == str(package / "core" / "money.py") and edited == "True"
    assert says.startswith("core: pure Python (stale build: ") and "money.py" in says
    assert "StaleCoreWarning" in done.stderr and "money.py" in done.stderr
