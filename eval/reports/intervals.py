"""Ratios of medians with a seeded 95% bootstrap interval over paired units (case, repeat).

Two modes ran the same cases the same number of times; a unit is one (case, repeat) that has a
TTFT in both. The ratio is median(a) / median(b) over the paired units; the interval is the
2.5th and 97.5th percentile of that ratio over `resamples` resamples of the units with
replacement (the percentile bootstrap, both modes resampled together so pairs stay pairs).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from eval.reports.results import quantile

Unit = tuple[str, int]  # (case id, repeat)
RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class RatioInterval:
    ratio: float
    low: float
    high: float
    units: int  # paired (case, repeat) units
    cases: int
    repeats: int
    resamples: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        return f"{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}]"


def median_ratio(a: Mapping[Unit, float], b: Mapping[Unit, float], units: Sequence[Unit]) -> float:
    denominator = statistics.median(b[u] for u in units)
    return statistics.median(a[u] for u in units) / denominator if denominator else float("inf")


def bootstrap_ratio(
    a: Mapping[Unit, float],
    b: Mapping[Unit, float],
    *,
    seed: int,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> RatioInterval | None:
    """median(a) / median(b) over their common units, with its bootstrap interval."""
    units = sorted(a.keys() & b.keys())
    if not units:
        return None
    rng = random.Random(seed)
    draws = sorted(
        median_ratio(a, b, [units[rng.randrange(len(units))] for _ in units])
        for _ in range(resamples)
    )
    tail = (1 - level) / 2
    return RatioInterval(
        ratio=round(median_ratio(a, b, units), 4),
        low=round(quantile(draws, tail), 4),
        high=round(quantile(draws, 1 - tail), 4),
        units=len(units),
        cases=len({case for case, _ in units}),
        repeats=len({repeat for _, repeat in units}),
        resamples=resamples,
        seed=seed,
    )
