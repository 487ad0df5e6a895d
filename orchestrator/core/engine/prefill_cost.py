"""What prefill costs on this engine: `latency ≈ a + b * computed_tokens`, fitted by least
squares over a bounded window of recent requests.

Every request vLLM answers is an observation: a final request's TTFT against the prompt
tokens it had to compute (prompt - cached), a warm-up's time from leaving the gate to its
answer (its one token is its first) against the same count. The fit turns a prompt length
into the TTFT a cold request of that length would take (`estimate_ms`), the figure a
scorecard compares a warmed request's TTFT with.

Pure: no clock, no I/O; one instance is shared by all sessions of an application
(`SessionServices.prefill_cost`), all on one event loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

DEFAULT_WINDOW = 256  # recent observations kept: the engine's load and flags drift


@dataclass(frozen=True)
class LinearFit:
    """`latency_ms ≈ intercept_ms + ms_per_token * computed_tokens`."""

    intercept_ms: float
    ms_per_token: float

    def at(self, computed_tokens: int) -> float:
        return self.intercept_ms + self.ms_per_token * computed_tokens


def least_squares(points: Collection[tuple[float, float]]) -> LinearFit | None:
    """The least-squares line `y = intercept + slope * x` through `points`; None with fewer
    than two distinct x (no line is defined)."""
    n = len(points)
    if n < 2:
        return None
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    return LinearFit(mean_y - slope * mean_x, slope)


class PrefillCost:
    """A least-squares line through the last `window` (computed tokens, latency) points."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self._points: deque[tuple[int, float]] = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self._points)

    def observe(self, computed_tokens: int, latency_ms: float) -> None:
        """One request: `computed_tokens` prompt tokens computed, answered in `latency_ms`."""
        if computed_tokens >= 0 and latency_ms >= 0:
            self._points.append((computed_tokens, latency_ms))

    def fit(self) -> LinearFit | None:
        """The fitted line; None with fewer than two distinct token counts, or when latency
        does not grow with the tokens computed (a slope of 0 or less says nothing of cost)."""
        line = least_squares(self._points)
        return line if line is not None and line.ms_per_token > 0 else None

    def estimate_ms(self, computed_tokens: int) -> float | None:
        """The latency of a request that computes `computed_tokens` (never below 0), or None
        until the fit has data."""
        line = self.fit()
        return None if line is None else max(0.0, line.at(computed_tokens))
