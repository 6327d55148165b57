"""`streamer worker` that keeps every range of passed offsets as a range
(`consumer.PASSED_ONE_BY_ONE` = 0), as it keeps the long ones a retention deletes: the range path
through the broker without publishing ten thousand events first. Used by `test_stream.py`.

    python tests/integration/passed_as_ranges.py worker
"""

from __future__ import annotations

import sys

from streamer import cli
from streamer.stream import consumer


def main() -> None:
    consumer.PASSED_ONE_BY_ONE = 0
    sys.argv = ["streamer", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
