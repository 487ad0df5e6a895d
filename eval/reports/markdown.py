"""`report.md` and `ttft.png` from a report (`eval/reports/report.py` builds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.reports.results import SCORECARD_SUMS

FIGURE_TARGETS = {
    "keystroke_over_static_p50": "< 1 (long input ≤ 0.5)",
    "keystroke_over_oracle_p50": "≤ 1.15",
    "static_over_oracle_p50": "",
    "cold_over_keystroke_p50": "",
    "context_warm_prefill_tokens_per_case": "",
    "typed_text_warm_prefill_per_typed_token": "≤ 2",
}
ORDER = ("keystroke", "speculate", "static", "oracle", "cold")


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def ordered_modes(report: dict[str, Any]) -> list[str]:
    modes = list(report["modes"])
    return [m for m in ORDER if m in modes] + [m for m in modes if m not in ORDER]


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    gap = settings.get("idle_gap_s") or 0
    state = settings.get("engine_state", "as-typed")
    lines = [
        f"# TTFT eval: {report['dataset']} ({report['workload']}), {report['cases']} cases "
        f"x {settings.get('repeats', 1)} repeats",
        "",
        f"Model `{report['model']}` on {report['backend']['device']}, block size "
        f"{report['backend']['block_size']}, vLLM {settings.get('vllm_version', '?')}. "
        f"Replay {settings['replay']} x{settings['typing_speedup']:g}, submit pause "
        f"**{settings['submit_pause']}**, {settings['concurrency']} typist(s) "
        f"({settings['context_cache']} context cache), seed {settings['seed']}; modes "
        f"interleaved case by case; engine state before each final: **{state}**"
        + (f" ({gap:g} s idle)" if gap else "")
        + ".",
        "",
        *mode_table(report),
        "",
        *ratio_table(report),
        "",
        *scorecard_table(report),
        "",
        *speculation_table(report),
        "| figure | measured | target |",
        "|---|---:|---:|",
    ]
    for name, target in FIGURE_TARGETS.items():
        lines.append(f"| {name} | {fmt(report['figures'].get(name), '.3f')} | {target} |")
    lines.append(f"| identical_outputs (keystroke vs cold) | {report['identical_outputs']} | 1.0 |")
    if report["failures"]:
        lines += ["", "Failures (no TTFT; not in the percentiles):", ""]
        lines += [
            f"- {f['mode']} {f['case']} (repeat {f.get('repeat', 0)}): {f['reason']}"
            for f in report["failures"]
        ]
    return "\n".join(lines) + "\n"


def mode_table(report: dict[str, Any]) -> list[str]:
    """Rows led by the comparison that matters: keystroke, the static baseline, the floor."""
    lines = [
        "| mode | TTFT p50 ms | TTFT p95 ms | prompt tokens | cached tokens | warm-ups "
        "| warm prefill / final (landed) | warm prefill / final (engine) | engine idle before "
        "final p50 s | engine busy | identical | EX | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in ordered_modes(report):
        row = report["modes"][mode]
        engine = row.get("engine_warm") or {}
        idle = ((row.get("timeline") or {}).get("idle_before_final_s") or {}).get("p50")
        lines.append(
            f"| {mode} | {fmt(row['ttft_ms']['p50'])} | {fmt(row['ttft_ms']['p95'])} "
            f"| {fmt(row['prompt_tokens_mean'], '.0f')} | {fmt(row['cached_tokens_mean'], '.0f')} "
            f"| {row['warm_requests']} | {fmt(row['warm_prefill_tokens_per_final'], '.0f')} "
            f"| {fmt(engine.get('warm_prefill_tokens_per_final'), '.0f')} | {fmt(idle, '.2f')} "
            f"| {fmt(row.get('engine_busy_share'), '.2f')} | {row['identical_outputs']} "
            f"| {fmt(row['ex'], '.2f')} | {len(row['failures'])} |"
        )
    return lines


def ratio_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "Ratios of median TTFT over paired (case, repeat) units, 95% bootstrap interval:",
        "",
        "| ratio | median ratio | 95% interval | units (cases x repeats) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in (report.get("ratios") or {}).items():
        lines.append(
            f"| {name} | {r['ratio']:.3f} | [{r['low']:.3f}, {r['high']:.3f}] "
            f"| {r['units']} ({r['cases']} x {r['repeats']}) |"
        )
    return lines


def scorecard_table(report: dict[str, Any]) -> list[str]:
    """The scorecards summed per mode (`core/warming/scorecard.py` defines each figure)."""
    lines = [
        "Scorecards, summed over the cases of each mode (saved ms: over the cases with a cold "
        "estimate):",
        "",
        "| mode | warmed tokens | hit tokens | warm prefill tokens | wasted prefill tokens "
        "| saved ms (cases) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in ordered_modes(report):
        sums = report["modes"][mode].get("scorecard") or {}
        if not sums.get("cases"):
            sums = {}  # no case of the mode has a scorecard: n/a, not 0
        cells = [fmt(sums.get(name), ".0f") for name in SCORECARD_SUMS]
        saved = f"{fmt(sums.get('saved_ms'))} ({sums.get('saved_ms_cases', 0)})"
        lines.append(f"| {mode} | {' | '.join(cells)} | {saved} |")
    return lines


def speculation_table(report: dict[str, Any]) -> list[str]:
    """Speculative finals per mode, when some mode speculated (nothing otherwise)."""
    rows = report["modes"]
    modes = [m for m in ordered_modes(report) if speculated(m, rows[m])]
    if not modes:
        return []
    lines = [
        "Answers before Enter (speculative finals), over the answered cases of each mode:",
        "",
        "| mode | speculative answers / finals | attach rate | wasted generated tokens "
        "| identical to cold |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in modes:
        row = rows[mode]
        lines.append(
            f"| {mode} | {row['speculative_answers']} / {row['finals']} "
            f"| {fmt(row['attach_rate'], '.2f')} | {row['speculation_wasted_tokens']} "
            f"| {fmt(row['identical_outputs'], '.2f')} |"
        )
    return [*lines, ""]


def speculated(mode: str, row: dict[str, Any]) -> bool:
    """A mode that may speculate (`speculate`, `arm:speculate`), or one that did."""
    return (
        mode.rsplit(":", 1)[-1] == "speculate"
        or bool(row.get("speculative_answers"))
        or bool(row.get("speculation_wasted_tokens"))
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = ordered_modes(report)
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
        f"{report['dataset']}: {report['cases']} cases x {settings.get('repeats', 1)}, "
        f"submit {settings['submit_pause']}, {settings['concurrency']} typist(s)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
