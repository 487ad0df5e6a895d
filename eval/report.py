"""Case results into `report.json` (a contract: other tools read it), `report.md`, a plot."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CaseResult:
    case: str
    mode: str
    ttft_ms: float
    prompt_tokens: int
    cached_tokens: int
    warm_requests: int
    warm_prefill_tokens: int
    text: str
    sql: str | None
    refused: str | None
    correct: bool


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mode_summary(results: list[CaseResult]) -> dict[str, Any]:
    ttfts = [result.ttft_ms for result in results]
    return {
        "ttft_ms": {
            "p50": round(percentile(ttfts, 50), 2),
            "p95": round(percentile(ttfts, 95), 2),
            "mean": round(statistics.fmean(ttfts), 2),
        },
        "prompt_tokens_mean": round(statistics.fmean(r.prompt_tokens for r in results), 1),
        "cached_tokens_mean": round(statistics.fmean(r.cached_tokens for r in results), 1),
        "warm_requests": sum(r.warm_requests for r in results),
        "warm_prefill_tokens": sum(r.warm_prefill_tokens for r in results),
        "ex": round(sum(r.correct for r in results) / len(results), 4),
    }


def build_report(
    results: list[CaseResult], meta: dict[str, Any], modes: list[str]
) -> dict[str, Any]:
    by_mode = {mode: [r for r in results if r.mode == mode] for mode in modes}
    report: dict[str, Any] = {**meta, "modes": {m: mode_summary(rs) for m, rs in by_mode.items()}}
    report["identical_outputs"] = identical_outputs(by_mode)
    report["figures"] = figures(report["modes"], by_mode.get("keystroke", []))
    report["results"] = [asdict(result) for result in results]
    return report


def identical_outputs(by_mode: dict[str, list[CaseResult]]) -> float | None:
    """Fraction of cases whose greedy output in keystroke mode equals cold's."""
    if not by_mode.get("keystroke") or not by_mode.get("cold"):
        return None
    cold = {r.case: r.text for r in by_mode["cold"]}
    pairs = [(r.text, cold[r.case]) for r in by_mode["keystroke"] if r.case in cold]
    return round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None


def figures(modes: dict[str, Any], keystroke: list[CaseResult]) -> dict[str, float | None]:
    def p50(mode: str) -> float | None:
        return modes[mode]["ttft_ms"]["p50"] if mode in modes else None

    final_tokens = sum(r.prompt_tokens for r in keystroke)
    warm_tokens = sum(r.warm_prefill_tokens for r in keystroke)
    return {
        "keystroke_over_oracle_p50": _ratio(p50("keystroke"), p50("oracle")),
        "cold_over_keystroke_p50": _ratio(p50("cold"), p50("keystroke")),
        "warm_prefill_over_final_prompt_tokens": _ratio(warm_tokens, final_tokens or None),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def write_reports(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "ttft.png")


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# TTFT eval: {report['dataset']}, {report['cases']} cases",
        "",
        f"Model `{report['model']}` on {report['backend']['device']}, "
        f"block size {report['backend']['block_size']}; seed {report['seed']}.",
        "",
        "| mode | TTFT p50 ms | TTFT p95 ms | prompt tokens | cached tokens | warm-ups "
        "| warm prefill tokens | EX |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, row in report["modes"].items():
        lines.append(
            f"| {mode} | {row['ttft_ms']['p50']:.1f} | {row['ttft_ms']['p95']:.1f} "
            f"| {row['prompt_tokens_mean']:.0f} | {row['cached_tokens_mean']:.0f} "
            f"| {row['warm_requests']} | {row['warm_prefill_tokens']} | {row['ex']:.2f} |"
        )
    figures_ = report["figures"]
    lines += ["", "| figure | measured | target |", "|---|---:|---:|"]
    targets = {
        "keystroke_over_oracle_p50": "≤ 1.15",
        "cold_over_keystroke_p50": "≥ 10",
        "warm_prefill_over_final_prompt_tokens": "≤ 1.2",
    }
    for name, target in targets.items():
        value = figures_.get(name)
        lines.append(f"| {name} | {'n/a' if value is None else f'{value:.3f}'} | {target} |")
    lines.append(f"| identical_outputs | {report['identical_outputs']} | 1.0 |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(report["modes"])
    per_mode = [[r["ttft_ms"] for r in report["results"] if r["mode"] == m] for m in modes]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.boxplot(per_mode, tick_labels=modes, showfliers=True)
    for index, values in enumerate(per_mode, start=1):
        axis.scatter([index] * len(values), values, s=10, alpha=0.5)
    axis.set_yscale("log")
    axis.set_ylabel("TTFT (ms, log scale)")
    axis.set_title(f"TTFT per mode: {report['model']}, {report['cases']} cases")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
