"""Rate bounds: a token bucket, and the global gate every warm-up passes before reaching vLLM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; pure bookkeeping, clock injectable."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def try_take(self) -> bool:
        self._refill()
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def reserve(self) -> float:
        """Take a token now, owing it if need be: the seconds until it is really there."""
        self._refill()
        self.tokens -= 1.0
        return max(0.0, -self.tokens / self.rate)


class WarmupGate:
    """The global bound on warm-ups per second: `await gate.acquire()` before each one.

    Callers are served in arrival order (each reserves its slot when it arrives); a session
    has at most one warm-up waiting, so the queue is bounded by the number of sessions.
    """

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bucket = TokenBucket(rate_per_s, clock=clock)

    async def acquire(self) -> None:
        delay = self.bucket.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
