"""`streamer worker` whose first fetch of changelog records, once armed, faust's getmany drops
undelivered, as it drops what a fetch drained as a rebalance began: the records' partitions are
left out of the active ones it returns with, so faust skips them, and the consumer's position
has moved past them. Armed by the file $DROP_CHANGELOG_ARM (taken once: removed). Used by
`test_stream.py`.

    python tests/integration/drop_changelog_fetch.py worker
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from streamer import cli


def main() -> None:
    arm = Path(os.environ["DROP_CHANGELOG_ARM"])
    wait = faust_aiokafka.Consumer._wait_next_records

    async def dropping(self: Any, timeout: float) -> Any:
        records, active = await wait(self, timeout)
        if records and active is not None and arm.exists():
            changelogs = {tp for tp, batch in records.items() if batch and self._is_changelog_tp(tp)}
            if changelogs:
                arm.unlink()
                active = set(active) - changelogs
        return records, active

    faust_aiokafka.Consumer._wait_next_records = dropping  # type: ignore[method-assign]
    sys.argv = ["streamer", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
