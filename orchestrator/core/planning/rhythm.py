"""A typist's rhythm: when an idle moment is a pause for this typist, not just the next key.

People type at very different speeds (desktop typing: inter-key intervals log-normal around
240 ms, with a wide spread from typist to typist). A fixed idle threshold fires on one key in
ten for a typical typist, and every such "pause" warms the submit-ready prompt, whose tail
is thrown away when typing goes on. So a pause is an idle time of at least `factor` times the
typist's own median interval over the last keys, and never less than the configured minimum.
Pure bookkeeping; the caller passes the clock.
"""

from __future__ import annotations

import statistics
from collections import deque

WINDOW = 24  # intervals remembered
MIN_INTERVALS = 6  # fewer than this: the configured minimum alone
LONGEST_INTERVAL_S = 5.0  # longer gaps (a real pause, a break) say nothing of the rhythm


class TypingRhythm:
    def __init__(self, min_pause_s: float, factor: float) -> None:
        self.min_pause_s = min_pause_s
        self.factor = factor
        self.intervals: deque[float] = deque(maxlen=WINDOW)
        self.last: float | None = None

    def keystroke(self, now: float) -> None:
        if self.last is not None and 0 < now - self.last <= LONGEST_INTERVAL_S:
            self.intervals.append(now - self.last)
        self.last = now

    def pause_s(self) -> float:
        """How long an idle time must last to be a pause for this typist."""
        if len(self.intervals) < MIN_INTERVALS or self.factor <= 0:
            return self.min_pause_s
        return max(self.min_pause_s, self.factor * statistics.median(self.intervals))
