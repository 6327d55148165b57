"""What the idle re-scorings change: could a due rule skip them without changing what users see?

Issue 11 asks that an idle account be re-scored only when one of its signals or alert conditions
can next change its band, an alert or a reason. This bench scores a file offline (the same
engine as `streamer offline`, `--partitions` like it) and compares each re-scoring at a midnight
tick of an account that had no event since its last scoring with that scoring: did the band
change, did it raise an alert, did the signals its reasons name change, did the score move?

Only a re-scoring that changes one of those is one a due rule must keep. The table says how
many that is, and how many moved the score at all (the ones a rule has to rule out without
evaluating, i.e. with a bound); the last lines say which inputs move every day.

    .venv/bin/python bench/idle_rescoring.py --events bench/out/wide-v2-2000x1-s11.jsonl.gz
    .venv/bin/python bench/idle_rescoring.py --events FILE --config bench/coarse_idle.toml
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from common import add_json, write_json

from streamer.core.account import Account
from streamer.core.alerts import Trigger
from streamer.core.clock import DAY
from streamer.core.engine import PartitionEngine
from streamer.core.reasons import explain
from streamer.core.score import Evaluation, Raw
from streamer.offline.runner import OfflineRun, open_events
from streamer.settings import load_score_config

# Signals that move with event time alone, day by day (the rest move at instants: an event, a
# day leaving a window, a new peer reference).
CONTINUOUS = frozenset({"recency_days", "days_to_renewal"})

CHANGES = (
    ("band", "changed the band"),
    ("alerts", "raised an alert"),
    ("reasons", "changed the signals the reasons name"),
    ("visible", "any of these three"),
    ("score_1", "moved the score by 1 point or more"),
    ("score", "moved the score at all"),
)


class Probe(PartitionEngine):
    """The engine, counting what each idle re-scoring changed against the account's last one."""

    def __init__(self, *args: Any, counts: Counter[str], **kwargs: Any) -> None:
        self.counts = counts
        self.last: dict[str, Evaluation] = {}  # the engine lets an evaluation go once published
        super().__init__(*args, **kwargs)

    def _score(self, account: Account, now: int, trigger: Trigger | None) -> list[dict[str, Any]]:
        before = self.last.get(account.account_id)
        # a tick's re-scoring of an account that folded no event since its last scoring (usage
        # folded but not yet scored, see `usage_rescore_minutes`, is an event: not idle)
        idle = (
            trigger is None and now % DAY == 0 and before is not None and account.last_event_at <= before.now
        )
        alerts = super()._score(account, now, trigger)
        after = self.last[account.account_id] = self.evaluations[account.account_id]
        counts = self.counts
        counts["scorings"] += 1
        if not idle or before is None:
            return alerts
        band = after.band != before.band
        reasons = [r["signal"] for r in explain(after)] != [r["signal"] for r in explain(before)]
        visible = band or bool(alerts) or reasons
        counts["idle"] += 1
        counts["band"] += band
        counts["alerts"] += bool(alerts)
        counts["reasons"] += reasons
        counts["visible"] += visible
        counts["score_1"] += abs(after.score - before.score) >= 1.0
        counts["score"] += after.score != before.score
        # Only the signals that move with time alone changed, against the same peer reference:
        # the re-scorings a sound due rule could skip by bounding those signals' slopes.
        continuous_only = (
            self._reference_tick(after.now) == self._reference_tick(before.now)
            and _discrete(after) == _discrete(before)
            and after.plan == before.plan
        )
        counts["continuous_only"] += continuous_only
        counts["continuous_only_visible"] += continuous_only and visible
        recency = after.signals.get("recency_days")
        counts["recency_moved"] += recency is not None and recency != before.signals.get("recency_days")
        return alerts

    def _reference_tick(self, now: int) -> int | None:
        """The midnight of the peer reference an evaluation at `now` reads (None: none yet)."""
        reference = self.peers.at(now)
        return None if reference is None else reference.tick


def _discrete(evaluation: Evaluation) -> dict[str, Raw]:
    """The raw values of the signals that move only at instants (an event, a window, a reference)."""
    return {name: raw for name, (raw, _) in evaluation.signals.items() if name not in CONTINUOUS}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=Path, required=True, help="events file (JSON lines, .gz too)")
    parser.add_argument("--config", type=Path, help="score configuration (TOML); default built-in")
    parser.add_argument("--partitions", type=int, default=4, help="as `streamer offline` (default: 4)")
    add_json(parser)
    args = parser.parse_args()
    config = load_score_config(args.config)
    counts: Counter[str] = Counter()
    run = OfflineRun(config, partitions=args.partitions)
    run.engines = [Probe(config, store, counts=counts) for store in run.stores]

    def nothing(*_: Any) -> None:
        return None

    with open_events(args.events) as lines:
        summary = run.feed(lines, on_snapshot=nothing, on_alert=nothing, on_dead_letter=nothing)
    idle = counts["idle"] or 1
    print(
        f"{args.events.name}: {summary.accepted:,} events, {counts['scorings']:,} scorings, "
        f"{counts['idle']:,} of them idle re-scorings at a midnight "
        f"({counts['idle'] / max(1, counts['scorings']):.0%})"
        + (f"; configuration {args.config}" if args.config else "")
    )
    print(f"{'an idle re-scoring that':<40} {'count':>9} {'share':>7}")
    for key, label in CHANGES:
        print(f"{label:<40} {counts[key]:>9,} {counts[key] / idle:>7.1%}")
    moved = counts["recency_moved"]
    print(f"{'(its recency signal moved)':<40} {moved:>9,} {moved / idle:>7.1%}")
    only = counts["continuous_only"]
    print(
        f"{'only recency or days to renewal moved':<40} {only:>9,} {only / idle:>7.1%}"
        f"   (of them {counts['continuous_only_visible']:,} changed band, alert or reasons)"
    )
    every = config.peers.refresh_days
    print(f"(the peer reference every account's percentiles read is rebuilt every {every} day(s))")
    if only:
        bound = counts["scorings"] - only + counts["continuous_only_visible"]
        print(f"a perfect bound on those two signals' slopes would keep at least {bound:,} scorings")
    kept = counts["scorings"] - counts["idle"] + counts["visible"]
    print(f"an oracle skipping every idle re-scoring that changes none of the three keeps {kept:,} scorings")
    write_json(args.json, {"events": summary.accepted, **counts, "config": str(args.config or "")})


if __name__ == "__main__":
    main()
