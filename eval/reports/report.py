"""Case results into `report.json` (a contract: other tools read it), `report.md`, a plot.

Modes are reported under their labels (`keystroke`, ..., and `mixed:cold` for an arm that mixes
modes); every percentile is over all cases and repeats of a label; ratios come with their
bootstrap intervals (`eval/reports/figures.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eval.reports.results import PIECE_FIELDS, SCORECARD_SUMS, CaseResult, mean, percentile


def scorecard_sums(results: list[CaseResult]) -> dict[str, Any]:
    """The scorecards' figures summed over the cases that have one; `saved_ms` over those
    with a cold estimate (`saved_ms_cases` of them; None when none has)."""
    cards = [r.scorecard for r in results if r.scorecard is not None]
    sums: dict[str, Any] = {name: sum(int(card[name]) for card in cards) for name in SCORECARD_SUMS}
    saved = [float(card["saved_ms"]) for card in cards if card.get("saved_ms") is not None]
    sums["saved_ms"] = round(sum(saved), 2) if saved else None
    sums["saved_ms_cases"] = len(saved)
    sums["cases"] = len(cards)
    return sums


def piece_sums(results: list[CaseResult]) -> dict[str, Any] | None:
    """The done frames' `warm_pieces`, summed and averaged (None when no case had them)."""
    pieces = [r.warm_pieces for r in results if r.warm_pieces is not None]
    if not pieces:
        return None
    sums = {name: sum(int(p.get(name) or 0) for p in pieces) for name in PIECE_FIELDS}
    means = {name: round(total / len(pieces), 2) for name, total in sums.items()}
    return {**sums, "mean": means, "cases": len(pieces)}


def timeline_summary(results: list[CaseResult]) -> dict[str, Any]:
    lines = [r.timeline for r in results if r.timeline is not None]

    def values(name: str) -> list[float]:
        return [float(t[name]) for t in lines if t.get(name) is not None]

    idle = values("idle_before_final_s")
    return {
        "first_input_s_mean": mean(values("first_input_s"), 3),
        "submit_s_mean": mean(values("submit_s"), 3),
        "late_s_max": max(values("late_s"), default=None),
        "idle_before_final_s": {"p50": percentile(idle, 50), "p95": percentile(idle, 95)},
        "waited_for_idle_s_mean": mean(values("waited_for_idle_s"), 3),
    }


def mode_summary(results: list[CaseResult], cold: list[CaseResult]) -> dict[str, Any]:
    ok = [r for r in results if r.failure is None and r.ttft_ms is not None]
    ttfts = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    scored = [r.correct for r in ok if r.correct is not None]
    return {
        "ttft_ms": {
            "p50": percentile(ttfts, 50),
            "p95": percentile(ttfts, 95),
            "mean": mean(ttfts, 2),
        },
        "finals": len(ok),
        "prompt_tokens_mean": mean([r.prompt_tokens for r in ok]),
        "cached_tokens_mean": mean([r.cached_tokens for r in ok]),
        "typed_tokens_mean": mean([r.typed_tokens for r in ok]),
        "warm_requests": sum(r.warm_requests for r in ok),
        "warm_prefill_tokens": sum(r.warm_prefill_tokens for r in ok),
        "warm_prefill_tokens_per_final": mean([r.warm_prefill_tokens for r in ok]),
        "ex": round(sum(scored) / len(scored), 4) if scored else None,
        "identical_outputs": identical_outputs(ok, cold),
        **speculation_summary(ok),
        "failures": [failure(r) for r in results if r not in ok],
        "scorecard": scorecard_sums(ok),
        "warm_pieces": piece_sums(ok),
        "timeline": timeline_summary(ok),
    }


def speculation_summary(ok: list[CaseResult]) -> dict[str, Any]:
    """Answers attached to a speculative final, their share of the answered cases (attach
    rate), and the generated tokens of the speculations thrown away."""
    attached = sum(r.speculative for r in ok)
    return {
        "speculative_answers": attached,
        "attach_rate": round(attached / len(ok), 4) if ok else None,
        "speculation_wasted_tokens": sum(r.speculation_wasted_tokens for r in ok),
    }


def failure(result: CaseResult) -> dict[str, Any]:
    return {"case": result.case, "repeat": result.repeat, "reason": result.failure}


def same_as_cold(cold: list[CaseResult]) -> Callable[[CaseResult], bool | None]:
    """Whether a result's greedy output equals cold's for its case (of the same repeat when it
    ran); None when cold has no answer for the case."""
    by_unit = {(r.case, r.repeat): r.text for r in cold if r.failure is None}
    by_case = {r.case: r.text for r in cold if r.failure is None}

    def same(result: CaseResult) -> bool | None:
        if result.case not in by_case:
            return None
        return result.text == by_unit.get((result.case, result.repeat), by_case[result.case])

    return same


def identical_outputs(results: list[CaseResult], cold: list[CaseResult]) -> float | None:
    """Fraction of cases whose greedy output equals cold's (of the same repeat when it ran)."""
    same_as = same_as_cold(cold)
    same = [found for r in results if (found := same_as(r)) is not None]
    return round(sum(same) / len(same), 4) if same else None


def case_rows(results: list[CaseResult], cold: list[CaseResult]) -> list[dict[str, Any]]:
    """Every case result, with `identical_to_cold` (None: cold did not answer the case, or
    the case failed)."""
    same_as = same_as_cold(cold)
    return [
        {**asdict(r), "identical_to_cold": same_as(r) if r.failure is None else None}
        for r in results
    ]


def build_report(
    results: list[CaseResult],
    meta: dict[str, Any],
    modes: list[str],
    busy: dict[str, float | None] | None = None,
    engine: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`busy`: per mode, the share of its rounds during which vLLM was running a request;
    `engine`: per mode, the warm prefill counted from vLLM's KV events (absent: not counted)."""
    from eval.reports.figures import figures, ratios  # figures read the summaries built here

    by_mode = {mode: [r for r in results if r.mode == mode] for mode in modes}
    cold = by_mode.get("cold", [])
    summaries = {mode: mode_summary(rs, cold) for mode, rs in by_mode.items()}
    for mode, share in (busy or {}).items():
        if mode in summaries:
            summaries[mode]["engine_busy_share"] = share
    for mode in summaries:
        summaries[mode]["engine_warm"] = (engine or {}).get(mode)
    report: dict[str, Any] = {**meta, "modes": summaries}
    report["identical_outputs"] = summaries.get("keystroke", {}).get("identical_outputs")
    seed = int(meta.get("settings", {}).get("seed", 0))
    report["ratios"] = ratios(by_mode, seed)
    report["figures"] = figures(summaries, by_mode, report["ratios"])
    report["failures"] = [
        {"mode": mode, **failure} for mode, row in summaries.items() for failure in row["failures"]
    ]
    report["results"] = case_rows(results, cold)
    return report


def write_reports(report: dict[str, Any], out: Path) -> None:
    from eval.reports.markdown import markdown, plot

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "ttft.png")
