"""Exponential back-off after failures in a row: the engine watch's pause of every warm-up
while vLLM fails, and a session's own retry of a failed warm-up."""

from __future__ import annotations

import random
from collections.abc import Callable

MAX_DOUBLINGS = 64  # past this the wait is long capped: 2**n would overflow a float


class Backoff:
    """Waits of `first_s`, twice that, four times ... up to `max_s`, after each failure in a
    row; a success starts over. With `jitter`, each wait is up to that fraction longer, drawn
    at random, so that many waiters do not come back at the same instant."""

    def __init__(
        self,
        first_s: float,
        max_s: float,
        jitter: float = 0.0,
        draw: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if first_s <= 0 or max_s < first_s or jitter < 0:
            raise ValueError("a back-off needs 0 < first_s <= max_s and jitter >= 0")
        self.first_s = first_s
        self.max_s = max_s
        self.jitter = jitter
        self.draw = draw  # a number between its two bounds (random.uniform)
        self.failures = 0  # in a row

    def failed(self) -> float:
        """One more failure in a row: the seconds to wait before the next try."""
        self.failures += 1
        doublings = min(self.failures - 1, MAX_DOUBLINGS)
        wait_s = min(self.max_s, self.first_s * 2.0**doublings)
        return wait_s * self.draw(1.0, 1.0 + self.jitter) if self.jitter else wait_s

    def succeeded(self) -> None:
        """A try went through: the next failure waits `first_s` again."""
        self.failures = 0
