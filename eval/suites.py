"""Named sets of runs on one engine: `suite` (what `make eval` runs) and `load` (N typists).

Each run writes its own report folder under the output folder; the suite adds `summary.md`
and `summary.json` with one row per run and mode, led by keystroke against static.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.modes import MODES
from eval.replay import Replay, SubmitPause
from eval.report import fmt
from eval.runner import ContextCache, RunPlan
from eval.session import EvalSession
from eval.workloads import DEFAULT_DATASETS, WorkloadKind, load_workload

DEFAULT_REPLAY = Replay()
PAUSE_PAST_TYPING_PAUSE_S = 0.8  # longer than the orchestrator's 400 ms typing pause


@dataclass(frozen=True)
class RunSpec:
    name: str
    workload: WorkloadKind
    cases: int
    modes: tuple[str, ...] = MODES
    replay: Replay = DEFAULT_REPLAY
    concurrency: int = 1
    context_cache: ContextCache = "own"
    seed: int = 7
    max_tokens: int = 96

    def plan(self) -> RunPlan:
        workload = load_workload(DEFAULT_DATASETS[self.workload], self.cases, self.workload)
        return RunPlan(
            workload,
            self.modes,
            self.replay,
            self.seed,
            self.max_tokens,
            self.concurrency,
            context_cache=self.context_cache,
        )


def default_suite(quick: bool) -> list[RunSpec]:
    enter, pause = SubmitPause(None), SubmitPause(PAUSE_PAST_TYPING_PAUSE_S)
    sql, long = (4, 2) if quick else (8, 5)
    return [
        RunSpec("demo-enter", "text-to-sql", sql, replay=Replay(submit_pause=enter)),
        RunSpec(
            "demo-pause",
            "text-to-sql",
            sql - 2,
            ("static", "keystroke", "oracle"),
            Replay(submit_pause=pause),
        ),
        RunSpec("support-enter-x8", "long-input", long, replay=Replay("typing", 8.0, enter)),
        RunSpec(
            "support-dictation",
            "long-input",
            long // 2,
            ("static", "keystroke", "oracle"),
            Replay("dictation", 1.0, enter),
        ),
    ]


def load_suite(quick: bool) -> list[RunSpec]:
    """N typists at once on the demo database, each with its own cache and sharing one."""
    typists, cases = ((1, 4), 4) if quick else ((1, 2, 4, 8), 8)
    return [
        RunSpec(
            f"load-{cache}-n{n}",
            "text-to-sql",
            cases,
            ("cold", "static", "keystroke"),
            Replay(),
            n,
            cache,
        )
        for cache in ("own", "shared")
        for n in typists
    ]


SUITES: dict[str, Callable[[bool], list[RunSpec]]] = {
    "suite": default_suite,
    "load": load_suite,
}


async def run_suite(session: EvalSession, specs: list[RunSpec], out: Path) -> str:
    rows: list[dict[str, Any]] = []
    for spec in specs:
        report = await session.evaluate(spec.plan())
        session.write(report, out / spec.name)
        rows += summary_rows(spec.name, report)
        write_summary(rows, out)  # after every run: a cut-short suite keeps what it measured
    return (out / "summary.md").read_text()


def summary_rows(name: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    settings = report["settings"]
    rows = []
    for mode in ("keystroke", "static", "oracle", "cold"):
        row = report["modes"].get(mode)
        if row is None:
            continue
        rows.append(
            {
                "run": name,
                "mode": mode,
                "dataset": report["dataset"],
                "submit_pause": settings["submit_pause"],
                "replay": settings["replay"],
                "speedup": settings["typing_speedup"],
                "concurrency": settings["concurrency"],
                "context_cache": settings["context_cache"],
                "p50": row["ttft_ms"]["p50"],
                "p95": row["ttft_ms"]["p95"],
                "cached": row["cached_tokens_mean"],
                "prompt": row["prompt_tokens_mean"],
                "warm_per_final": row["warm_prefill_tokens_per_final"],
                "busy": row.get("engine_busy_share"),
                "identical": row["identical_outputs"],
                "failures": len(row["failures"]),
                "figures": report["figures"],
            }
        )
    return rows


def write_summary(rows: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "| run | mode | submit | replay | typists | cache | TTFT p50 ms | TTFT p95 ms "
        "| cached / prompt | warm prefill / final | busy | identical | failures "
        "| vs static | vs oracle |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        by_static = by_oracle = ""
        if r["mode"] == "keystroke":
            by_static = fmt(r["figures"]["keystroke_over_static_p50"], ".3f")
            by_oracle = fmt(r["figures"]["keystroke_over_oracle_p50"], ".3f")
        lines.append(
            f"| {r['run']} | {r['mode']} | {r['submit_pause']} | {r['replay']} x{r['speedup']:g} "
            f"| {r['concurrency']} | {r['context_cache']} | {fmt(r['p50'])} | {fmt(r['p95'])} "
            f"| {fmt(r['cached'], '.0f')} / {fmt(r['prompt'], '.0f')} "
            f"| {fmt(r['warm_per_final'], '.0f')} | {fmt(r['busy'], '.2f')} | {r['identical']} "
            f"| {r['failures']} | {by_static} | {by_oracle} |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
