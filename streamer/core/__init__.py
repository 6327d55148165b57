"""The pure scoring core. Compiled with mypyc when built (`make core`); see `streamer/native.py`."""

import os
from pathlib import Path

from streamer.native import choose

CORE = choose(Path(__file__).resolve().parent, os.environ)
if CORE.compiled:
    # The compiled modules are found first; the `.py` files stay the source and the fallback.
    __path__.insert(0, str(CORE.directory))
