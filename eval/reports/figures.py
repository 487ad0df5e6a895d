"""The report's headline figures: ratios of median TTFTs with bootstrap intervals, and the warm
prefill overheads, counted from the engine's side where vLLM's KV events were followed."""

from __future__ import annotations

from typing import Any

from eval.reports.intervals import Unit, bootstrap_ratio
from eval.reports.results import BASELINE, CaseResult

RATIO_PAIRS = (
    ("keystroke", "static"),
    ("keystroke", "oracle"),
    ("keystroke", "cold"),
    ("static", "oracle"),
    ("cold", "keystroke"),
    ("mixed:cold", "cold"),  # the mixed-load scenario: warm-ups-off users, beside warm-ups
    ("speculate", "keystroke"),  # what answering before Enter adds to the warm-ups
    ("speculate", "static"),
    ("speculate", "oracle"),  # below the floor of a fully cached prompt?
    ("mixed-speculate:cold", "cold"),  # warm-ups-off users, beside speculating ones
)


def ratio_name(a: str, b: str) -> str:
    return f"{a.replace(':', '_')}_over_{b.replace(':', '_')}_p50"


def units(results: list[CaseResult]) -> dict[Unit, float]:
    return {(r.case, r.repeat): r.ttft_ms for r in results if r.ttft_ms is not None}


def ratios(by_mode: dict[str, list[CaseResult]], seed: int) -> dict[str, dict[str, Any]]:
    """Each ratio of medians between two modes that ran, with its interval (`intervals.py`)."""
    found: dict[str, dict[str, Any]] = {}
    for a, b in RATIO_PAIRS:
        if a in by_mode and b in by_mode:
            interval = bootstrap_ratio(units(by_mode[a]), units(by_mode[b]), seed=seed)
            if interval is not None:
                found[ratio_name(a, b)] = interval.as_dict()
    return found


def typed_text_overhead(summaries: dict[str, Any], by_mode: dict[str, list[CaseResult]]) -> Any:
    """Warm prefill keystroke mode made the engine compute past the context's blocks, per
    token of the user's input, a paste included (None without vLLM's KV events or a static
    mode to tell the context's size)."""
    engine = (summaries.get("keystroke") or {}).get("engine_warm") or {}
    typed_warm = engine.get("typed_warm_prefill_tokens")
    ok = [r for r in by_mode.get("keystroke", []) if r.failure is None]
    typed = sum(r.typed_tokens for r in ok)
    return round(typed_warm / typed, 3) if typed_warm is not None and typed else None


def context_warm_per_case(summaries: dict[str, Any], by_mode: dict[str, list[CaseResult]]) -> Any:
    """The static mode's warm prefill per case: the engine's count where there is one."""
    engine = (summaries.get(BASELINE) or {}).get("engine_warm") or {}
    if engine.get("warm_prefill_tokens_per_final") is not None:
        return engine["warm_prefill_tokens_per_final"]
    static = [r for r in by_mode.get(BASELINE, []) if r.failure is None]
    return round(sum(r.warm_prefill_tokens for r in static) / len(static), 3) if static else None


def figures(
    summaries: dict[str, Any],
    by_mode: dict[str, list[CaseResult]],
    found: dict[str, dict[str, Any]],
) -> dict[str, float | None]:
    def ratio(a: str, b: str) -> float | None:
        interval = found.get(ratio_name(a, b))
        return round(float(interval["ratio"]), 3) if interval else None

    return {
        "keystroke_over_static_p50": ratio("keystroke", "static"),
        "keystroke_over_oracle_p50": ratio("keystroke", "oracle"),
        "static_over_oracle_p50": ratio("static", "oracle"),
        "cold_over_keystroke_p50": ratio("cold", "keystroke"),
        "context_warm_prefill_tokens_per_case": context_warm_per_case(summaries, by_mode),
        "typed_text_warm_prefill_per_typed_token": typed_text_overhead(summaries, by_mode),
    }
