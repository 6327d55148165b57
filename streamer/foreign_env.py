"""Environment variables other libraries would read behind the validated settings, set aside
before they can.

healthstream reads `HEALTHSTREAM_*` only (`settings.py`, validated once). Three of its libraries
read variables of their own when they are imported, and took them over what healthstream says:

- faust reads `FAUST_*` / `F_*` names at import: an event loop to install (`F_LOOP=uvloop`),
  ports and timeouts parsed as numbers (`F_WEB_PORT=abc` ended every command in a traceback),
  `FAUST_STRICT` (any value, `0` included, stopped a worker once it reached the broker);
- prometheus_client keeps every metric in files under `PROMETHEUS_MULTIPROC_DIR`: a folder that
  did not exist made the view's /healthz, /metrics and API answer 500, and `notify` exit;
- matplotlib checks `MPLBACKEND` as it is imported: a backend it does not know ended
  `backtest --plots` in a traceback, though the plots draw on a `Figure` of their own and never
  use a backend.

The package removes them from its process's environment as it is imported (`streamer/__init__.py`),
before anything imports one of them; its children (a demo's worker and view) do not see them
either. The command line names each one in a warning (`set_aside_warnings(SET_ASIDE)`).
"""

from __future__ import annotations

from collections.abc import MutableMapping

# faust/types/_env.py and faust/__init__.py (faust-streaming 0.15), each under both prefixes;
# F_WEB_BIND is read under its prefixes too (FAUST_F_WEB_BIND, F_F_WEB_BIND).
_FAUST_NAMES = (
    "DEBUG",
    "WORKDIR",
    "DATADIR",
    "BLOCKING_TIMEOUT",
    "FORCE_BLOCKING_TIMEOUT",
    "CONSOLE_PORT",
    "STRICT",
    "WEB_PORT",
    "F_WEB_BIND",
    "WEB_TRANSPORT",
    "LOOP",
)
FAUST = tuple(prefix + name for name in _FAUST_NAMES for prefix in ("FAUST_", "F_"))
LIBRARY = {
    **dict.fromkeys(FAUST, "faust"),
    **dict.fromkeys(("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"), "prometheus_client"),
    "MPLBACKEND": "matplotlib",
}
FOREIGN = tuple(LIBRARY)

SET_ASIDE: list[str] = []  # what the package's import removed from this process's environment


def set_aside(environ: MutableMapping[str, str]) -> list[str]:
    """Remove the variables of `FOREIGN` from `environ`; the names removed."""
    return [name for name in FOREIGN if environ.pop(name, None) is not None]


def set_aside_warnings(names: list[str]) -> list[str]:
    """One line per variable of `names` that `set_aside` removed."""
    return [
        f"{name} is {LIBRARY[name]}'s, not healthstream's: it is ignored (healthstream reads "
        "HEALTHSTREAM_* variables only)"
        for name in names
    ]
