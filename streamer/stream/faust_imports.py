"""Import faust for the worker without aiohttp, which the worker never uses (0.15 CPU s a start).

faust's `faust/types/web.py` imports aiohttp's `ClientSession` for one type alias (`HttpClientT`,
the type of `app.http_client`), so every faust process imports aiohttp and its dependencies and
builds two SSL contexts: about a quarter of the worker's imports. The worker runs no web server
(`web_enabled=False`) and no HTTP client. `import_faust_types` imports faust's types with a
stand-in `aiohttp.client` module that holds only a placeholder `ClientSession`, then removes the
stand-in: a later `import aiohttp` (anything that does use HTTP) gets the real package, and
the worker's app sets faust's `HttpClient` (whose default, aiohttp's session, faust would import
when the app is built) to `NoHttpClient`. Call it before anything imports faust; it does nothing
when faust's types or aiohttp are loaded already.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

STAND_IN = "aiohttp.client"


class NoHttpClient:
    """Stands in for aiohttp's `ClientSession`: in faust's type alias `HttpClientT`, and as the
    worker app's `HttpClient` setting, whose default faust would import (aiohttp) when the app
    is built. The worker makes no HTTP request: `app.http_client` says so instead of one."""

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        raise RuntimeError(
            "the worker has no HTTP client (streamer/stream/faust_imports.py); nothing in it should "
            "ask faust for app.http_client"
        )


def import_faust_types() -> None:
    """Import `faust.types` without importing aiohttp (see the module's docstring)."""
    if "faust.types.web" in sys.modules or "aiohttp" in sys.modules or STAND_IN in sys.modules:
        return
    stand_in = ModuleType(STAND_IN, "Stands in for aiohttp.client while faust's types are imported.")
    stand_in.ClientSession = NoHttpClient  # type: ignore[attr-defined]
    sys.modules[STAND_IN] = stand_in
    try:
        importlib.import_module("faust.types.web")
    except ImportError:
        # faust asked the stand-in for more than `ClientSession` (an upgrade): import it as is.
        sys.modules.pop(STAND_IN, None)
        importlib.import_module("faust.types.web")
    finally:
        if sys.modules.get(STAND_IN) is stand_in:
            del sys.modules[STAND_IN]
