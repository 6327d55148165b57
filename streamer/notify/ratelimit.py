"""A token bucket per destination: at most `burst` messages at once, `rate` per second after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """Starts full; each message takes one token; tokens refill continuously at `rate` per second.

    `clock` and `sleep` are injectable so tests run without waiting.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate_per_second}, {burst}")
        self.rate, self.burst = rate_per_second, float(burst)
        self._clock, self._sleep = clock, sleep
        self.tokens = float(burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_time(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def try_take(self) -> bool:
        """Take a token if one is available."""
        if self.wait_time() > 0:
            return False
        self.tokens -= 1
        return True

    async def take(self) -> float:
        """Wait for a token and take it; return the seconds waited (0 when not limited)."""
        waited = 0.0
        while not self.try_take():
            pause = self.wait_time()
            waited += pause
            await self._sleep(pause)
        return waited
