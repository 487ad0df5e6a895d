"""Finals first, measured: each final's TTFT against what its own uncached tokens cost on the
idle engine.

`python -m eval finals-cost IDLE REPORT...` fits `ttft ≈ a + b * uncached` (least squares)
through every final of IDLE, a run with one typist (its cold, static and keystroke finals
span the range from a few dozen to all of the prompt's tokens uncached), then prints, for each
REPORT and mode, the ratio `ttft / (a + b * uncached)` of its finals: 1.0 is a final that
waited for nothing but its own work; above it, the time it shared the engine with others
(other finals, warm-ups). Every argument is a report folder or its report.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eval.reports.results import percentile
from orchestrator.core.engine.prefill_cost import LinearFit, least_squares


def load(path: Path) -> dict[str, Any]:
    file = path / "report.json" if path.is_dir() else path
    report: dict[str, Any] = json.loads(file.read_text())
    return report


def finals(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report.get("results", []) if r.get("ttft_ms") is not None]


def idle_line(report: dict[str, Any]) -> LinearFit:
    """The idle engine's cost: least squares of TTFT on uncached tokens over `report`'s finals."""
    points = [(r["prompt_tokens"] - r["cached_tokens"], r["ttft_ms"]) for r in finals(report)]
    line = least_squares(points)
    if line is None:
        raise ValueError("the idle run needs finals with different uncached token counts")
    return line


def ratios(report: dict[str, Any], a: float, b: float) -> dict[str, list[float]]:
    by_mode: dict[str, list[float]] = {}
    for result in finals(report):
        uncached = result["prompt_tokens"] - result["cached_tokens"]
        own = max(1.0, a + b * uncached)
        by_mode.setdefault(result["mode"], []).append(result["ttft_ms"] / own)
    return by_mode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval finals-cost", description=__doc__)
    parser.add_argument("idle", type=Path, help="a one-typist report: the idle engine's cost")
    parser.add_argument("reports", type=Path, nargs="+", help="reports to judge")
    args = parser.parse_args(argv)
    try:
        idle = load(args.idle)
        line = idle_line(idle)
        reports = [(path, load(path)) for path in args.reports]
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    a, b, count = line.intercept_ms, line.ms_per_token, len(finals(idle))
    print(f"idle engine: ttft ≈ {a:.0f} ms + {b:.3f} ms x uncached tokens ({count} finals)")
    print("| report | mode | finals | ratio p50 | ratio p95 | ratio max |")
    print("|---|---|---:|---:|---:|---:|")
    for path, report in reports:
        for mode, values in ratios(report, a, b).items():
            p50, p95, top = percentile(values, 50), percentile(values, 95), max(values)
            print(f"| {path} | {mode} | {len(values)} | {p50:.2f} | {p95:.2f} | {top:.2f} |")
    return 0
