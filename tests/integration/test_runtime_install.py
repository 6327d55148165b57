"""The package with its runtime dependencies alone (no extra), as the worker image installs it:
the worker and the view start, and the optional parts say which extra they need.

A real `pip install` of this checkout into a fresh venv (from pip's cache when it has the
wheels), pinned by requirements.lock like the Dockerfile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runtime")
    source = root / "source"  # what the Dockerfile copies; builds here, not in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.lock"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "streamer", source / "streamer", ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pins = str(source / "requirements.lock")
    install = [str(venv / "bin" / "pip"), "install", "-q", "-c", pins, str(source)]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(install, capture_output=True, text=True, timeout=1200, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def run(venv: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEALTHSTREAM_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=venv)


@pytest.mark.slow
def test_the_worker_and_the_view_need_no_extra(runtime_venv: Path) -> None:
    help_text = run(runtime_venv, str(runtime_venv / "bin" / "streamer"), "worker", "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "Run a stream worker" in help_text.stdout
    imports = "import streamer.stream.app, streamer.view.app, streamer.cli; print('ok')"
    loaded = run(runtime_venv, str(runtime_venv / "bin" / "python"), "-c", imports)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "ok", loaded.stderr


def test_the_runtime_carries_no_backtest_dependencies(runtime_venv: Path) -> None:
    for module in ("numpy", "matplotlib", "pytest", "yaml"):
        probe = run(runtime_venv, str(runtime_venv / "bin" / "python"), "-c", f"import {module}")
        assert probe.returncode != 0, f"{module} is installed without any extra"


def test_backtest_names_the_extra_it_needs(runtime_venv: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    done = run(runtime_venv, str(runtime_venv / "bin" / "streamer"), "backtest", str(events))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "streamer backtest: needs the [backtest] extra (numpy is not installed); "
        "install it with: pip install 'healthstream[backtest]'"
    ]
