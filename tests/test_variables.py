"""A HEALTHSTREAM_* variable that nothing reads is named in a warning, with the one it is close to."""

from __future__ import annotations

import subprocess
import sys

from streamer.local import settings as local_settings
from streamer.native import ENV_PURE_CORE
from streamer.settings import Settings
from streamer.variables import KNOWN, unknown_variables
from streamer.view.settings import ViewSettings


def test_the_known_names_are_exactly_the_variables_the_settings_and_the_local_stack_read() -> None:
    runtime = {"HEALTHSTREAM_" + field.upper() for field in Settings.model_fields}
    view = {"HEALTHSTREAM_VIEW_" + field.upper() for field in ViewSettings.model_fields}
    local = {
        value
        for name, value in vars(local_settings).items()
        if name.startswith("ENV_") and isinstance(value, str)
    }
    assert runtime | view | local | {ENV_PURE_CORE} == KNOWN


def test_a_misspelt_variable_is_named_with_the_one_it_is_close_to() -> None:
    environ = {
        "HEALTHSTREAM_PARTITON": "16",
        "HEALTHSTREAM_PARTITIONS": "4",
        "HEALTHSTREAM_VIEW_PRT": "8100",
        "HEALTHSTREAM_SOMETHING_ELSE": "1",
        "PATH": "/bin",
    }
    assert unknown_variables(environ) == [
        "HEALTHSTREAM_PARTITON is not a variable healthstream reads: it is ignored"
        " (did you mean HEALTHSTREAM_PARTITIONS?)",
        "HEALTHSTREAM_SOMETHING_ELSE is not a variable healthstream reads: it is ignored",
        "HEALTHSTREAM_VIEW_PRT is not a variable healthstream reads: it is ignored"
        " (did you mean HEALTHSTREAM_VIEW_PORT?)",
    ]


def test_every_known_variable_passes_without_a_warning() -> None:
    assert unknown_variables(dict.fromkeys(KNOWN, "")) == []


def test_the_command_line_warns_on_stderr_and_still_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "schemas", "check"],
        capture_output=True,
        text=True,
        env={"HEALTHSTREAM_SESION_TIMEOUT_S": "10", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "streamer: warning: HEALTHSTREAM_SESION_TIMEOUT_S is not a variable healthstream reads:"
        " it is ignored (did you mean HEALTHSTREAM_SESSION_TIMEOUT_S?)"
    ]
