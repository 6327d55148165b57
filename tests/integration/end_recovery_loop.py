"""`streamer worker` whose table recovery loop, once armed, ends at its next recovery as it does
when a step times out (`broker_request_timeout`): faust's `_wait` raises `ServiceStopped` and
the loop breaks without a word. Armed by the file $END_RECOVERY_ARM (taken once: removed).
Used by `test_stream.py`.

    python tests/integration/end_recovery_loop.py worker
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from faust.tables.recovery import Recovery, ServiceStopped

from streamer import cli


def main() -> None:
    arm = Path(os.environ["END_RECOVERY_ARM"])
    wait = Recovery._wait

    async def timing_out(self: Any, coro: Any, timeout: Any = None) -> None:
        if arm.exists():
            arm.unlink()
            if hasattr(coro, "close"):
                coro.close()  # never awaited, as after a timeout
            raise ServiceStopped()
        await wait(self, coro, timeout=timeout)

    Recovery._wait = timing_out  # type: ignore[method-assign]
    sys.argv = ["streamer", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
