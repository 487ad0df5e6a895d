"""What one case in one mode measured, and the small statistics every report uses."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

BASELINE = "static"  # what users would do instead: warm the context at session start
PIECE_FIELDS = ("sent", "landed", "cancelled")


@dataclass(frozen=True)
class CaseResult:
    case: str
    mode: str  # the mode's label (`keystroke`, or `arm:mode` in a mixed arm)
    ttft_ms: float | None  # None: a failure (error, timeout, empty answer)
    prompt_tokens: int
    cached_tokens: int
    warm_requests: int
    warm_prefill_tokens: int  # the done frame's: landed warm-ups only
    typed_tokens: int  # the user's input (a paste included), as the served tokenizer counts
    text: str
    sql: str | None = None
    refused: str | None = None
    correct: bool | None = None  # None: the workload has no accuracy score
    failure: str | None = None
    scorecard: dict[str, Any] | None = None  # the done frame's (core/warming/scorecard.py)
    repeat: int = 0
    completion_tokens: int = 0
    timeline: dict[str, Any] | None = None  # eval/modes.py's Timeline
    warm_pieces: dict[str, int] | None = None  # the done frame's, when the server sends it
    engine_warm_prefill_tokens: int | None = None  # from vLLM's KV events (eval/kv_count.py)
    engine_typed_warm_prefill_tokens: int | None = None


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 2)


def mean(values: list[float], digits: int = 1) -> float | None:
    return round(statistics.fmean(values), digits) if values else None


SCORECARD_SUMS = ("warmed_tokens", "hit_tokens", "warm_prefill_tokens", "wasted_prefill_tokens")
