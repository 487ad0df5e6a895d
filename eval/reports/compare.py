"""`python -m eval compare A B`: two reports side by side, settings first."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eval.reports.markdown import fmt

ROWS = (
    ("TTFT p50 ms", lambda m: m["ttft_ms"]["p50"]),
    ("TTFT p95 ms", lambda m: m["ttft_ms"]["p95"]),
    ("cached tokens", lambda m: m["cached_tokens_mean"]),
    ("warm prefill / final", lambda m: m["warm_prefill_tokens_per_final"]),
    ("engine busy", lambda m: m.get("engine_busy_share")),
    (
        "warm prefill / final (engine)",
        lambda m: (m.get("engine_warm") or {}).get("warm_prefill_tokens_per_final"),
    ),
    (
        "engine idle before final p50 s",
        lambda m: ((m.get("timeline") or {}).get("idle_before_final_s") or {}).get("p50"),
    ),
    ("identical outputs", lambda m: m["identical_outputs"]),
    ("failures", lambda m: len(m["failures"])),
    ("wasted prefill tokens", lambda m: (m.get("scorecard") or {}).get("wasted_prefill_tokens")),
    ("saved ms (scorecards)", lambda m: (m.get("scorecard") or {}).get("saved_ms")),
)  # scorecard rows: n/a in a report from before scorecards


def load(path: Path) -> dict[str, Any]:
    file = path / "report.json" if path.is_dir() else path
    try:
        report: dict[str, Any] = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: cannot read a report at {file}: {error}") from None
    if "modes" not in report or "settings" not in report:
        raise SystemExit(f"error: {file} is not an eval report (no modes or settings)")
    return report


def flat(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else str(value)
    return out


def render(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> str:
    lines = [f"| setting | {names[0]} | {names[1]} |", "|---|---|---|"]
    sa, sb = flat(a["settings"]), flat(b["settings"])
    for key in sorted(sa.keys() | sb.keys()):
        mark = "" if sa.get(key) == sb.get(key) else " **≠**"
        lines.append(f"| {key}{mark} | {sa.get(key, '')} | {sb.get(key, '')} |")
    lines += [
        "",
        f"| mode | figure | {names[0]} | {names[1]} | B / A |",
        "|---|---|---:|---:|---:|",
    ]
    for mode in [m for m in a["modes"] if m in b["modes"]]:
        for label, read in ROWS:
            va, vb = read(a["modes"][mode]), read(b["modes"][mode])
            ratio = (
                f"{vb / va:.3f}" if isinstance(va, int | float) and va and vb is not None else ""
            )
            lines.append(f"| {mode} | {label} | {fmt(va, '.4g')} | {fmt(vb, '.4g')} | {ratio} |")
    return "\n".join(lines + ratio_lines(a, b, names))


def interval(found: dict[str, Any] | None) -> str:
    if not found:
        return "n/a"
    return (
        f"{found['ratio']:.3f} [{found['low']:.3f}, {found['high']:.3f}] "
        f"({found['cases']} x {found['repeats']})"
    )


def ratio_lines(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> list[str]:
    """Each ratio of medians with its 95% interval (cases x repeats), in both reports."""
    ra, rb = a.get("ratios") or {}, b.get("ratios") or {}
    if not ra and not rb:
        return []
    lines = ["", f"| ratio [95% interval] | {names[0]} | {names[1]} |", "|---|---:|---:|"]
    for name in [*ra, *(n for n in rb if n not in ra)]:
        lines.append(f"| {name} | {interval(ra.get(name))} | {interval(rb.get(name))} |")
    return lines


def compare_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval compare", description=__doc__)
    parser.add_argument("a", type=Path, help="report A: a folder or its report.json")
    parser.add_argument("b", type=Path, help="report B: a folder or its report.json")
    args = parser.parse_args(argv)
    a, b = args.a, args.b
    print(render(load(a), load(b), (str(a), str(b))))
    return 0
