"""`streamer worker` that dies (exit 137, as after SIGKILL) right after its first dead letters
reached Kafka: before the batch's checkpoint records the messages as handled and before any
offset is committed. Used by `test_dead_letter_kill.py`; once per marker file
($DIE_AFTER_DEAD_LETTERS_MARKER), so a restarted worker runs normally. With $DIE_AFTER=copies it
dies right after its first re-routed copies reached Kafka instead.

    python tests/integration/die_after_dead_letters.py worker
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from streamer import cli
from streamer.stream import sink


def main() -> None:
    marker = Path(os.environ["DIE_AFTER_DEAD_LETTERS_MARKER"])
    flush = sink.KafkaSink.flush

    queued = "_rerouted" if os.environ.get("DIE_AFTER") == "copies" else "_dead_letters"

    async def flush_then_die(self: Any) -> None:
        flushed = len(getattr(self, queued))
        await flush(self)
        if flushed and not marker.exists():
            marker.write_text(f"{flushed}\n")
            sys.stdout.flush()
            os._exit(137)

    sink.KafkaSink.flush = flush_then_die  # type: ignore[method-assign]
    sys.argv = ["streamer", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
