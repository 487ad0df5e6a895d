"""Case results into `report.json` (a contract: other tools read it), `report.md`, a plot."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BASELINE = "static"  # what users would do instead: warm the context at session start


@dataclass(frozen=True)
class CaseResult:
    case: str
    mode: str
    ttft_ms: float | None  # None: a failure (error, timeout, empty answer)
    prompt_tokens: int
    cached_tokens: int
    warm_requests: int
    warm_prefill_tokens: int
    typed_tokens: int
    text: str
    sql: str | None = None
    refused: str | None = None
    correct: bool | None = None  # None: the workload has no accuracy score
    failure: str | None = None
    scorecard: dict[str, Any] | None = None  # the done frame's (orchestrator/core/scorecard.py)


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
        "prompt_tokens_mean": mean([r.prompt_tokens for r in ok]),
        "cached_tokens_mean": mean([r.cached_tokens for r in ok]),
        "typed_tokens_mean": mean([r.typed_tokens for r in ok]),
        "warm_requests": sum(r.warm_requests for r in ok),
        "warm_prefill_tokens": sum(r.warm_prefill_tokens for r in ok),
        "warm_prefill_tokens_per_final": mean([r.warm_prefill_tokens for r in ok]),
        "ex": round(sum(scored) / len(scored), 4) if scored else None,
        "identical_outputs": identical_outputs(ok, cold),
        "failures": [{"case": r.case, "reason": r.failure} for r in results if r not in ok],
        "scorecard": scorecard_sums(ok),
    }


def identical_outputs(results: list[CaseResult], cold: list[CaseResult]) -> float | None:
    """Fraction of cases whose greedy output equals cold's."""
    reference = {r.case: r.text for r in cold if r.failure is None}
    pairs = [(r.text, reference[r.case]) for r in results if r.case in reference]
    return round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None


def typed_text_overhead(by_mode: dict[str, list[CaseResult]]) -> float | None:
    """Warm prefill tokens keystroke mode spent beyond the static warm, per typed token."""
    static = {r.case: r for r in by_mode.get(BASELINE, []) if r.failure is None}
    pairs = [(r, static[r.case]) for r in by_mode.get("keystroke", []) if r.case in static]
    typed = sum(r.typed_tokens for r, _ in pairs)
    extra = sum(r.warm_prefill_tokens - s.warm_prefill_tokens for r, s in pairs)
    return round(extra / typed, 3) if typed else None


def build_report(
    results: list[CaseResult],
    meta: dict[str, Any],
    modes: list[str],
    busy: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """`busy`: per mode, the share of its pass during which vLLM was running a request."""
    by_mode = {mode: [r for r in results if r.mode == mode] for mode in modes}
    cold = by_mode.get("cold", [])
    summaries = {mode: mode_summary(rs, cold) for mode, rs in by_mode.items()}
    for mode, share in (busy or {}).items():
        summaries[mode]["engine_busy_share"] = share
    report: dict[str, Any] = {**meta, "modes": summaries}
    report["identical_outputs"] = summaries.get("keystroke", {}).get("identical_outputs")
    report["figures"] = figures(summaries, by_mode)
    report["failures"] = [
        {"mode": mode, **failure} for mode, row in summaries.items() for failure in row["failures"]
    ]
    report["results"] = [asdict(result) for result in results]
    return report


def figures(modes: dict[str, Any], by_mode: dict[str, list[CaseResult]]) -> dict[str, float | None]:
    def p50(mode: str) -> float | None:
        return modes[mode]["ttft_ms"]["p50"] if mode in modes else None

    static = by_mode.get(BASELINE, [])
    context_warm = sum(r.warm_prefill_tokens for r in static if r.failure is None)
    return {
        "keystroke_over_static_p50": ratio(p50("keystroke"), p50("static")),
        "keystroke_over_oracle_p50": ratio(p50("keystroke"), p50("oracle")),
        "static_over_oracle_p50": ratio(p50("static"), p50("oracle")),
        "cold_over_keystroke_p50": ratio(p50("cold"), p50("keystroke")),
        "context_warm_prefill_tokens_per_case": ratio(context_warm, len(static) or None),
        "typed_text_warm_prefill_per_typed_token": typed_text_overhead(by_mode),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def write_reports(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "ttft.png")


FIGURE_TARGETS = {
    "keystroke_over_static_p50": "< 1 (long input ≤ 0.5)",
    "keystroke_over_oracle_p50": "≤ 1.15",
    "static_over_oracle_p50": "",
    "cold_over_keystroke_p50": "",
    "context_warm_prefill_tokens_per_case": "",
    "typed_text_warm_prefill_per_typed_token": "≤ 2",
}


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        f"# TTFT eval: {report['dataset']} ({report['workload']}), {report['cases']} cases",
        "",
        f"Model `{report['model']}` on {report['backend']['device']}, block size "
        f"{report['backend']['block_size']}, vLLM {settings.get('vllm_version', '?')}. "
        f"Replay {settings['replay']} x{settings['typing_speedup']:g}, submit pause "
        f"**{settings['submit_pause']}**, {settings['concurrency']} typist(s) "
        f"({settings['context_cache']} context cache), seed {settings['seed']}.",
        "",
        *mode_table(report),
        "",
        *scorecard_table(report),
        "",
        "| figure | measured | target |",
        "|---|---:|---:|",
    ]
    for name, target in FIGURE_TARGETS.items():
        lines.append(f"| {name} | {fmt(report['figures'].get(name), '.3f')} | {target} |")
    lines.append(f"| identical_outputs (keystroke vs cold) | {report['identical_outputs']} | 1.0 |")
    if report["failures"]:
        lines += ["", "Failures (no TTFT; not in the percentiles):", ""]
        lines += [f"- {f['mode']} {f['case']}: {f['reason']}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def mode_table(report: dict[str, Any]) -> list[str]:
    """Rows led by the comparison that matters: keystroke, the static baseline, the floor."""
    order = [m for m in ("keystroke", "static", "oracle", "cold") if m in report["modes"]]
    lines = [
        "| mode | TTFT p50 ms | TTFT p95 ms | prompt tokens | cached tokens | warm-ups "
        "| warm prefill / final | engine busy | identical | EX | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in order:
        row = report["modes"][mode]
        lines.append(
            f"| {mode} | {fmt(row['ttft_ms']['p50'])} | {fmt(row['ttft_ms']['p95'])} "
            f"| {fmt(row['prompt_tokens_mean'], '.0f')} | {fmt(row['cached_tokens_mean'], '.0f')} "
            f"| {row['warm_requests']} | {fmt(row['warm_prefill_tokens_per_final'], '.0f')} "
            f"| {fmt(row.get('engine_busy_share'), '.2f')} | {row['identical_outputs']} "
            f"| {fmt(row['ex'], '.2f')} | {len(row['failures'])} |"
        )
    return lines


def scorecard_table(report: dict[str, Any]) -> list[str]:
    """The scorecards summed per mode (`core/scorecard.py` defines each figure)."""
    order = [m for m in ("keystroke", "static", "oracle", "cold") if m in report["modes"]]
    lines = [
        "Scorecards, summed over the cases of each mode (saved ms: over the cases with a cold "
        "estimate):",
        "",
        "| mode | warmed tokens | hit tokens | warm prefill tokens | wasted prefill tokens "
        "| saved ms (cases) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in order:
        sums = report["modes"][mode].get("scorecard") or {}
        if not sums.get("cases"):
            sums = {}  # no case of the mode has a scorecard: n/a, not 0
        cells = [fmt(sums.get(name), ".0f") for name in SCORECARD_SUMS]
        saved = f"{fmt(sums.get('saved_ms'))} ({sums.get('saved_ms_cases', 0)})"
        lines.append(f"| {mode} | {' | '.join(cells)} | {saved} |")
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(report["modes"])
    per_mode = [
        [r["ttft_ms"] for r in report["results"] if r["mode"] == m and r["ttft_ms"] is not None]
        for m in modes
    ]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.boxplot(per_mode, tick_labels=modes, showfliers=True)
    for index, values in enumerate(per_mode, start=1):
        axis.scatter([index] * len(values), values, s=10, alpha=0.5)
    if any(value > 0 for values in per_mode for value in values):  # all failed: no scale
        axis.set_yscale("log")
    axis.set_ylabel("TTFT (ms, log scale)")
    settings = report["settings"]
    axis.set_title(
        f"{report['dataset']}: {report['cases']} cases, submit {settings['submit_pause']}, "
        f"{settings['concurrency']} typist(s)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
