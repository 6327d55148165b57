"""The `HEALTHSTREAM_*` environment variables healthstream reads, and a warning naming one it
does not: a misspelt variable (`HEALTHSTREAM_PARTITON=16`) was ignored without a word, and the
default it meant to change stayed in force.

Kept as plain names, not read from the settings classes, so that the command line can check the
environment without importing pydantic-settings (~0.2 CPU s); tests/test_variables.py holds the
list against the classes and the local stack's names.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

PREFIX = "HEALTHSTREAM_"

# streamer.settings.Settings (HEALTHSTREAM_ + field name, upper case)
RUNTIME = (
    "KAFKA_PORT",
    "REDIS_PORT",
    "KAFKA_BOOTSTRAP",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "REDIS_URL",
    "PROJECTION",
    "TOPIC_PREFIX",
    "PARTITIONS",
    "REPLICATION_FACTOR",
    "APP_ID",
    "DATA_DIR",
    "STORE",
    "SCORE_CONFIG",
    "SESSION_TIMEOUT_S",
    "HEARTBEAT_INTERVAL_S",
    "STANDBY_REPLICAS",
    "MAX_BATCH_EXPANDED_MB",
)
# streamer.view.settings.ViewSettings (HEALTHSTREAM_VIEW_ + field name)
VIEW = (
    "VIEW_HOST",
    "VIEW_PORT",
    "VIEW_TOKEN",
    "VIEW_KAFKA_CHECK",
    "VIEW_WORKER_MAX_AGE_S",
    "VIEW_WORKER_STALL_S",
    "VIEW_REDIS_POOL_SIZE",
    "VIEW_REDIS_POOL_TIMEOUT_S",
    "VIEW_ALLOWED_HOSTS",
)
# streamer.local.settings (the local stack) and streamer.native (which core runs)
LOCAL = ("KAFKA_CONTROLLER_PORT", "STACK_DIR", "CACHE_DIR", "PURE_CORE")

KNOWN = frozenset(PREFIX + name for name in (*RUNTIME, *VIEW, *LOCAL))


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per `HEALTHSTREAM_*` variable in `environ` that no part of healthstream reads,
    with the known one it is close to, in name order; [] when there is none."""
    return [
        f"{name} is not a variable healthstream reads: it is ignored{_closest(name)}"
        for name in sorted(environ)
        if name.startswith(PREFIX) and name not in KNOWN
    ]


def _closest(name: str) -> str:
    """` (did you mean HEALTHSTREAM_PARTITIONS?)`, matched on the part after the prefix (which
    every name shares, so that it would make any two names look alike); else ""."""
    suffixes = sorted(known[len(PREFIX) :] for known in KNOWN)
    close = difflib.get_close_matches(name[len(PREFIX) :], suffixes, n=1, cutoff=0.75)
    return f" (did you mean {PREFIX}{close[0]}?)" if close else ""
