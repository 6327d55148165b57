"""Project-managed local stack: a single-node Kafka broker and Redis on 127.0.0.1.

Use `ensure_up()`, `stop()` and `status()` from `streamer.local.stack`, or `streamer local up`.
"""

from streamer.local.errors import MissingToolError, StackError
from streamer.local.settings import StackSettings
from streamer.local.stack import ServiceStatus, StackInfo, StackStatus, ensure_up, status, stop

__all__ = [
    "MissingToolError",
    "ServiceStatus",
    "StackError",
    "StackInfo",
    "StackSettings",
    "StackStatus",
    "ensure_up",
    "status",
    "stop",
]
