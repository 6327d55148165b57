"""The worker imports faust without aiohttp, and aiohttp still works for whatever needs it."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_the_worker_builds_its_app_without_importing_aiohttp(tmp_path: object) -> None:
    out = run(
        "import sys\n"
        "from streamer.stream.faust_imports import import_faust_types\n"
        "import_faust_types()\n"
        "from streamer.core.config import ScoreConfig\n"
        "from streamer.settings import Settings\n"
        "from streamer.stream.app import create_app\n"
        "from streamer.stream.faust_private import problems\n"
        f"app = create_app(Settings(app_id='hs-test', data_dir={str(tmp_path)!r}), ScoreConfig(),"
        " store='memory://')\n"
        "assert not problems(), problems()\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'aiohttp'))\n"
    )
    assert out.strip() == "[]"


def test_aiohttp_imported_afterwards_is_the_real_one() -> None:
    out = run(
        "from streamer.stream.faust_imports import import_faust_types\n"
        "import_faust_types()\n"
        "import faust.types.web\n"
        "import aiohttp\n"
        "from aiohttp.client import ClientSession\n"
        "assert aiohttp.ClientSession is ClientSession\n"
        "print(ClientSession.__module__, hasattr(ClientSession, '_request'))\n"
    )
    assert out.split() == ["aiohttp.client", "True"]


def test_the_worker_command_imports_faust_types_first() -> None:
    """`streamer worker` calls import_faust_types before anything imports faust."""
    out = run(
        "import sys\n"
        "import click\n"
        "from streamer.cli import main\n"
        "main.get_command(click.Context(main), 'worker')\n"
        "print('faust' in sys.modules, 'aiohttp' in sys.modules)\n"
    )
    assert out.split() == ["False", "False"]  # nothing imported faust before the command runs
