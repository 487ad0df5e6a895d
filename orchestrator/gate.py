"""A global bound on warm-ups per second, so typing never floods the engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class WarmupGate:
    """Token bucket shared by every session: `await gate.acquire()` before each warm-up.

    Waiting callers are served in arrival order; a session has at most one warm-up waiting
    (the planner keeps one in flight), so the queue is bounded by the number of sessions.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate = rate_per_s
        self.capacity = burst if burst is not None else max(1.0, rate_per_s)
        self.clock = clock or time.monotonic
        self.tokens = self.capacity
        self.updated = self.clock()
        self.lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self) -> None:
        async with self.lock:  # FIFO: asyncio.Lock wakes waiters in order
            self._refill()
            if self.tokens < 1.0:
                await asyncio.sleep((1.0 - self.tokens) / self.rate)
                self._refill()
            self.tokens -= 1.0
