"""Exponential backoff between delivery attempts (pure: the jitter draw is passed in)."""

from __future__ import annotations

from streamer.notify.config import Retry


def delay(retry: Retry, attempt: int, draw: float = 0.5) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 = the first attempt).

    initial * multiplier^(attempt-1), capped at max_seconds, then moved by ± jitter of itself:
    `draw` in [0, 1] picks where (0.5 = no jitter), so many notifiers do not retry in step.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    exponent = min(attempt - 1, 64)  # far past any cap; keeps the power finite
    base = min(retry.initial_seconds * retry.multiplier**exponent, retry.max_seconds)
    return max(0.0, base * (1 + retry.jitter * (2 * draw - 1)))


def schedule(retry: Retry, attempts: int) -> list[float]:
    """The delays after the first `attempts` failures, without jitter (for docs and tests)."""
    return [delay(retry, n) for n in range(1, attempts + 1)]
