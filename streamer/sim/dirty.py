"""Malformed and hostile records mixed into a stream, to exercise the dead-letter path."""

from __future__ import annotations

from datetime import datetime
from random import Random
from typing import Any, NamedTuple

import orjson

from streamer.sim.times import DAY, rfc3339

DIRTY_KINDS = (
    "invalid_json",
    "negative_amount",
    "unknown_event_type",
    "score_out_of_range",
    "missing_field",
    "wrong_type",
    "duplicate_event_id",
    "very_late",
)
"""What can be wrong with a dirty record. `duplicate_event_id` and `very_late` are valid JSON
events that a consumer must tolerate (ignore the repeat; handle the lateness); the others
break a contract rule and belong in the dead-letter topic."""

UNKNOWN_TYPES = ("usage.deleted", "subscription.paused", "ticket.escalated", "account.created")
OUT_OF_RANGE = (("nps", 11), ("nps", -1), ("csat", 0), ("csat", 6), ("ces", 0), ("ces", 8))


class DirtyRecord(NamedTuple):
    """One extra record: why it is dirty, the account it claims, and its raw bytes."""

    kind: str
    account_id: str
    value: bytes


class DirtyMixer:
    """Decides, event by event, whether to add a dirty record after it (deterministic per seed)."""

    def __init__(self, rate: float, seed: int) -> None:
        self.chance = rate / (1.0 - rate) if rate < 1.0 else 1.0
        self.rng = Random(f"{seed}/dirty")
        self.last_subscription: dict[str, Any] | None = None
        self._count = 0

    def after(self, event: dict[str, Any], encoded: bytes) -> DirtyRecord | None:
        """A dirty record to place after `event` (already encoded as `encoded`), or None."""
        if event["event_type"] in ("subscription.started", "subscription.changed"):
            self.last_subscription = event
        if self.chance <= 0.0 or self.rng.random() >= self.chance:
            return None
        kind = self.rng.choice(DIRTY_KINDS)
        if kind == "invalid_json":
            return DirtyRecord(kind, str(event["account_id"]), self._broken(encoded))
        if kind == "duplicate_event_id":
            if self.rng.random() < 0.5 or "count" not in event:
                return DirtyRecord(kind, str(event["account_id"]), encoded)
            changed = {**event, "count": int(event["count"]) + 1}
            return DirtyRecord(kind, str(event["account_id"]), orjson.dumps(changed))
        self._count += 1
        bad = self._bad(kind, event, f"{event['account_id']}-x{self._count:06d}")
        return DirtyRecord(kind, str(bad.get("account_id", event["account_id"])), orjson.dumps(bad))

    def _broken(self, encoded: bytes) -> bytes:
        """Text that is not JSON: a truncated object, or a stray log line."""
        if self.rng.random() < 0.2:
            return b"not json: " + encoded[:20].replace(b"{", b"(")
        return encoded[: self.rng.randrange(1, len(encoded) - 1)]

    def _bad(self, kind: str, event: dict[str, Any], event_id: str) -> dict[str, Any]:
        """A JSON event with a new id that breaks the contract in the way `kind` says."""
        rng = self.rng
        envelope = {
            "event_id": event_id,
            "event_type": event["event_type"],
            "account_id": event["account_id"],
            "occurred_at": event["occurred_at"],
        }
        user = f"{event['account_id']}-u0001"
        if kind == "negative_amount":
            if self.last_subscription is None:
                return {
                    **envelope,
                    "event_type": "subscription.started",
                    "subscription_id": f"{event['account_id']}-sub1",
                    "plan": "team",
                    "amount": "-10.00",
                    "currency": "USD",
                    "interval": "month",
                }
            bad = dict(self.last_subscription, event_id=event_id)
            bad["amount"] = "-" + str(bad["amount"]).lstrip("-")
            return bad
        if kind == "unknown_event_type":
            return {**event, "event_id": event_id, "event_type": rng.choice(UNKNOWN_TYPES)}
        if kind == "score_out_of_range":
            survey, score = rng.choice(OUT_OF_RANGE)
            return {
                **envelope,
                "event_type": "survey.answered",
                "survey": survey,
                "score": score,
                "respondent_id": user,
            }
        if kind == "missing_field":
            bad = {**event, "event_id": event_id}
            del bad[rng.choice(("event_id", "event_type", "account_id", "occurred_at"))]
            return bad
        if kind == "wrong_type":
            field, value = rng.choice((("occurred_at", "yesterday"), ("account_id", 42), ("event_id", None)))
            return {**event, "event_id": event_id, field: value}
        # very_late: a valid usage record that arrives 20-90 days after it happened
        late = _epoch(str(event["occurred_at"])) - rng.randrange(20, 90) * DAY
        return {
            **envelope,
            "event_type": "usage.recorded",
            "occurred_at": rfc3339(late),
            "user_id": user,
            "feature": "dashboards",
            "count": 1,
        }


def _epoch(timestamp: str) -> int:
    """Epoch seconds of an RFC 3339 timestamp."""
    return int(datetime.fromisoformat(timestamp).timestamp())
