"""faust's and prometheus_client's own environment variables are set aside as the package is
imported, before either library reads them, and the command line names each in a warning."""

from __future__ import annotations

import subprocess
import sys

from streamer.foreign_env import FOREIGN, set_aside

HOSTILE = {
    "F_WEB_PORT": "abc",  # int() at faust's import: a traceback in every command
    "FAUST_BLOCKING_TIMEOUT": "x",
    "FAUST_STRICT": "0",  # any value: "accessed before app.finalize()" in a worker
    "F_LOOP": "uvloop",  # an event loop faust would install (not installed here: an import error)
    "PROMETHEUS_MULTIPROC_DIR": "/nonexistent/metrics",  # every metric in files there: the view's 500s
    "MPLBACKEND": "nonexistent",  # matplotlib's import refuses it: `backtest --plots` ended there
}


def test_only_the_foreign_variables_are_removed_from_the_environment() -> None:
    environ = {**HOSTILE, "PATH": "/bin", "F_SOMETHING_ELSE": "1", "HEALTHSTREAM_PARTITIONS": "4"}
    assert set_aside(environ) == [name for name in FOREIGN if name in HOSTILE]
    assert environ == {"PATH": "/bin", "F_SOMETHING_ELSE": "1", "HEALTHSTREAM_PARTITIONS": "4"}


def test_the_worker_app_and_the_metrics_import_as_if_they_were_not_set() -> None:
    code = (
        "import streamer.stream.app, faust.types._env as fe, prometheus_client.values as pv; "
        "assert fe.WEB_PORT == 6066 and not fe.STRICT, (fe.WEB_PORT, fe.STRICT); "
        "assert pv.ValueClass is pv.MutexValue, pv.ValueClass; "
        "import streamer.backtest.plots"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**HOSTILE, "PATH": "/usr/bin:/bin"}
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_command_line_names_each_one_and_still_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "schemas", "check"],
        capture_output=True,
        text=True,
        env={"F_WEB_PORT": "abc", "PROMETHEUS_MULTIPROC_DIR": "/nonexistent", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "streamer: warning: F_WEB_PORT is faust's, not healthstream's: it is ignored"
        " (healthstream reads HEALTHSTREAM_* variables only)",
        "streamer: warning: PROMETHEUS_MULTIPROC_DIR is prometheus_client's, not healthstream's: it is"
        " ignored (healthstream reads HEALTHSTREAM_* variables only)",
    ]
