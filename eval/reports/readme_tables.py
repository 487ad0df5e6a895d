"""README figure tables regenerated from the committed reports under `docs/results/`.

A table in README that shows measured figures sits between two markers naming the report it
comes from and the view of it:

    <!-- results: demo-enter modes -->
    | mode | TTFT p50 ms | ... |
    <!-- /results -->

`docs/results/<name>/` holds that run's `report.json`, `report.md` and `ttft.png` (as `python -m
eval --out docs/results/<name>` writes them). `python -m eval readme-tables` fails, listing
the tables that differ, when a table is not what its report says; `--write` rewrites them. The
unit tests run the check, so every figure table in README is one a reader can re-check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eval.reports.intervals import Unit, bootstrap_ratio
from eval.reports.markdown import fmt, ordered_modes

ROOT = Path(__file__).resolve().parents[2]
MARKED = re.compile(
    r"(?P<open><!-- results: (?P<name>[\w.-]+) (?P<view>[\w-]+) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- /results -->)",
    re.S,
)


def modes_view(report: dict[str, Any]) -> list[str]:
    lines = [
        "| mode | TTFT p50 ms | TTFT p95 ms | cached / prompt tokens "
        "| warm prefill tokens per case (engine) | identical to cold |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in ordered_modes(report):
        row = report["modes"][mode]
        engine = (row.get("engine_warm") or {}).get("warm_prefill_tokens_per_final")
        ttft, cached, prompt = row["ttft_ms"], row["cached_tokens_mean"], row["prompt_tokens_mean"]
        lines.append(
            f"| {mode} | {fmt(ttft['p50'], ',.1f')} | {fmt(ttft['p95'], ',.1f')} "
            f"| {fmt(cached, ',.0f')} / {fmt(prompt, ',.0f')} "
            f"| {fmt(engine, ',.0f')} | {row['identical_outputs']} |"
        )
    return lines


def ratios_view(report: dict[str, Any]) -> list[str]:
    lines = [
        "| ratio of median TTFTs | median | 95% interval | cases x repeats |",
        "|---|---:|---:|---:|",
    ]
    for name, r in (report.get("ratios") or {}).items():
        lines.append(
            f"| {name} | {r['ratio']:.3f} | {r['low']:.3f} to {r['high']:.3f} "
            f"| {r['cases']} x {r['repeats']} |"
        )
    return lines


def speculation_view(report: dict[str, Any]) -> list[str]:
    """The modes that answered before Enter: TTFT against the oracle's floor (paired, with its
    interval, as the report computes ratios), answers identical to cold's, speculations
    attached and generated tokens thrown away."""
    lines = [
        "| mode | TTFT p50 ms | p50 over oracle's [95% interval] | identical to cold "
        "| attached | wasted tokens |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    results = report.get("results") or []
    floor = ttft_units(results, "oracle")
    for mode in ordered_modes(report):
        row = report["modes"][mode]
        if not row.get("speculative_answers") and mode != "speculate":
            continue
        interval = bootstrap_ratio(
            ttft_units(results, mode), floor, seed=report["settings"]["seed"]
        )
        versus = interval.label() if interval else "n/a"
        answered = len([r for r in results if r["mode"] == mode and r["ttft_ms"] is not None])
        lines.append(
            f"| {mode} | {fmt(row['ttft_ms']['p50'], ',.1f')} | {versus} "
            f"| {row['identical_outputs']} | {row['speculative_answers']} of {answered} "
            f"| {row['speculation_wasted_tokens']} |"
        )
    return lines


def ttft_units(results: list[dict[str, Any]], mode: str) -> dict[Unit, float]:
    return {
        (r["case"], r["repeat"]): r["ttft_ms"]
        for r in results
        if r["mode"] == mode and r["ttft_ms"] is not None
    }


VIEWS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "modes": modes_view,
    "ratios": ratios_view,
    "speculation": speculation_view,
}


class TableError(Exception):
    """A marked table names a report or a view that does not exist."""


def render(name: str, view: str, results: Path) -> str:
    if view not in VIEWS:
        raise TableError(f"unknown view {view!r} for {name}; views: {', '.join(VIEWS)}")
    path = results / name / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        why = f"README names results {name!r}, but {path} is unreadable: {error}"
        raise TableError(why) from None
    return "\n".join(VIEWS[view](report)) + "\n"


def regenerate(readme: str, results: Path) -> tuple[str, list[str]]:
    """README with every marked table rendered from its report; the names of those that
    differed."""
    differing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        table = render(match["name"], match["view"], results)
        if table != match["body"]:
            differing.append(f"{match['name']} {match['view']}")
        return match["open"] + table + match["close"]

    return MARKED.sub(fill, readme), differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval readme-tables", description=__doc__)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--write", action="store_true", help="rewrite the tables that differ")
    args = parser.parse_args(argv)
    try:
        text, differing = regenerate(args.readme.read_text(), args.results)
    except TableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.write:
        args.readme.write_text(text)
        print(f"rewrote {len(differing)} table(s)")
        return 0
    for table in differing:
        print(f"README table {table} differs from its report", file=sys.stderr)
    return 1 if differing else 0
