"""One fake sender, clock and sleeper the notifier's unit tests share."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamer.notify.config import Destination
from streamer.notify.delivery import Response, classify


def alert(alert_id: str, rule: str = "silence", severity: str = "warning", **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "account_id": "acct-1",
        "rule": rule,
        "severity": severity,
        "raised_at": "2024-03-01T00:00:00Z",
        "score": 41.5,
        "band": "yellow",
        "previous_score": 55.0,
        "previous_band": "yellow",
        "mrr": "120.00",
        "reasons": [
            {"signal": "recency_days", "value": 15, "baseline": 14, "message": "no usage for 15 days"}
        ],
        **extra,
    }


class FakeSender:
    """Answers each post with the next scripted status (then 200); records every request."""

    def __init__(self, statuses: Iterable[int | Exception] = ()) -> None:
        self.script = list(statuses)
        self.requests: list[tuple[str, dict[str, Any], str, int | str]] = []

    async def post(self, destination: Destination, payload: dict[str, Any], key: str) -> Response:
        outcome = self.script.pop(0) if self.script else 200
        self.requests.append(
            (destination.name, payload, key, outcome if isinstance(outcome, int) else "error")
        )
        if isinstance(outcome, Exception):
            from streamer.notify.delivery import Outcome

            return Response(Outcome.retry, repr(outcome))
        return classify(outcome)

    def delivered(self) -> list[str]:
        """Alert ids in requests that succeeded, in order (a digest counts each of its alerts)."""
        ids = []
        for _, payload, _, status in self.requests:
            if status == 200:
                ids += [a["alert_id"] for a in payload.get("alerts", [])] or [payload["text"]]
        return ids


class FakeClock:
    """A monotonic clock moved only by the fake sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
