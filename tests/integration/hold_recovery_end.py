"""`streamer worker` whose table recovery, once armed, holds its last await (the fetcher's
start, after the recovery's last generation check, before it ends the rebalance) until the next
rebalance has begun (its revocation), then lets it end: the order that ended the next
rebalance before its own recovery had run. That next recovery then takes 3 s more, as one with
a long changelog to read would. Armed by the file $HOLD_RECOVERY_ARM (taken once: removed); it
writes $HOLD_RECOVERY_HELD while it holds. Used by `test_stream.py`.

    python tests/integration/hold_recovery_end.py worker
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from faust.tables.recovery import Recovery
from mode import Service

from streamer import cli


def main() -> None:
    arm, held = (Path(os.environ[f"HOLD_RECOVERY_{name}"]) for name in ("ARM", "HELD"))
    maybe_start = Service.maybe_start
    build_highwaters = Recovery._build_highwaters
    slow = []  # the recovery after the held one: its first step waits

    async def held_start(self: Any) -> bool:
        # faust's recovery awaits the fetcher's start itself: the frame below is its own
        if sys._getframe(1).f_code.co_name == "on_recovery_completed" and arm.exists():
            arm.unlink()
            held.write_text("held\n")
            rebalances = self.app.rebalancing_count
            for _ in range(3000):  # bounds a hang only
                if self.app.rebalancing_count > rebalances:
                    break  # the next rebalance began: its assignment has not come yet
                await asyncio.sleep(0.01)
            slow.append(True)
        return bool(await maybe_start(self))

    async def slow_highwaters(self: Any, *args: Any) -> Any:
        if slow:
            slow.clear()
            await asyncio.sleep(3)
        return await build_highwaters(self, *args)

    Service.maybe_start = held_start  # type: ignore[method-assign]
    Recovery._build_highwaters = slow_highwaters  # type: ignore[method-assign]
    sys.argv = ["streamer", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
