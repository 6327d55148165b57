"""kcat (the Kafka command-line client) for tests and debugging, installed on demand."""

from __future__ import annotations

import shutil

from streamer.local.tools import Echo, Which, echo_stderr, ensure_command


def ensure_kcat(*, which: Which = shutil.which, echo: Echo = echo_stderr) -> str:
    """Path of kcat; installs the Debian package kcat with apt-get when it is missing."""
    return ensure_command("kcat", "kcat", which=which, echo=echo)
