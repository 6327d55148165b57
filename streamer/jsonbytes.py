"""JSON bytes to keep: orjson's output, right-sized.

`orjson.dumps` returns bytes in a buffer whose capacity is rounded up to a power of two and
never shrunk (orjson 3.12 on): a 2 KB snapshot holds 16 KB of memory, 12 KB of resident memory
measured here. That is harmless for bytes written and dropped at once, and was most of a
worker's memory where they wait: the outputs of a batch until it is sent (a midnight re-scores
every account), the projection's staged writes. `kept_json` copies them into bytes of their
own size (a fraction of a microsecond per kilobyte).
"""

from __future__ import annotations

from typing import Any

import orjson


def kept_json(value: Any, option: int | None = None) -> bytes:
    """`orjson.dumps(value)` in bytes of its own size, for bytes that are kept a while."""
    return bytes(memoryview(orjson.dumps(value, option=option)))
