"""Named sets of runs on one engine: `suite` (what `make eval` runs) and `load` (N typists).

Each run writes its own report folder under the output folder; the suite adds `summary.md`
and `summary.json` with one row per run and mode, led by keystroke against static (with its
interval). The suite's text-to-SQL, long-input and paste-then-ask runs (Enter at once and after
the 0.8 s pause) also run the `speculate` mode: keystroke warm-ups plus answers before Enter.
`load` also runs the mixed-load scenario: half the typists with keystroke warm-ups, half with
none (`mixed:keystroke`, `mixed:cold`), and half speculating, half with none
(`mixed-speculate:speculate`, `mixed-speculate:cold`), interleaved with the same rounds where
every typist has none (`cold`): what warm-ups and speculation cost the users who do neither.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.harness.modes import DEFAULT_MODES, SPECULATE
from eval.harness.rounds import MIXED, MIXED_SPECULATE, Arm
from eval.harness.runner import ContextCache, RunPlan
from eval.harness.stack import EvalStack
from eval.reports.figures import ratio_name
from eval.reports.markdown import fmt, ordered_modes, speculated
from eval.workloads.replay import Replay, SubmitPause
from eval.workloads.workload import DATASETS, DEFAULT_DATASETS, WorkloadKind, load_workload

DEFAULT_REPLAY = Replay()
PAUSE_PAST_TYPING_PAUSE_S = 0.8  # longer than the orchestrator's 400 ms typing pause


@dataclass(frozen=True)
class RunSpec:
    name: str
    workload: WorkloadKind
    cases: int
    modes: tuple[str, ...] = DEFAULT_MODES
    replay: Replay = DEFAULT_REPLAY
    concurrency: int = 1
    context_cache: ContextCache = "own"
    seed: int = 7
    max_tokens: int = 96
    repeats: int = 3
    mixed: tuple[Arm, ...] = ()
    dataset: str | None = None  # a folder under datasets/ (default: the workload's)

    def plan(self) -> RunPlan:
        folder = DATASETS / self.dataset if self.dataset else DEFAULT_DATASETS[self.workload]
        workload = load_workload(folder, self.cases, self.workload)
        return RunPlan(
            workload,
            self.modes,
            self.replay,
            self.seed,
            self.max_tokens,
            self.concurrency,
            context_cache=self.context_cache,
            repeats=self.repeats,
            mixed=self.mixed,
        )


def default_suite(quick: bool, repeats: int = 3) -> list[RunSpec]:
    enter, pause = SubmitPause(None), SubmitPause(PAUSE_PAST_TYPING_PAUSE_S)
    sql, long, paste = (4, 2, 2) if quick else (8, 5, 6)
    some = ("static", "keystroke", "oracle")
    every = (*DEFAULT_MODES, SPECULATE)
    return [
        RunSpec(
            "demo-enter", "text-to-sql", sql, every, Replay(submit_pause=enter), repeats=repeats
        ),
        RunSpec(
            "demo-pause", "text-to-sql", sql - 2, every, Replay(submit_pause=pause), repeats=repeats
        ),
        RunSpec(
            "support-enter-x8",
            "long-input",
            long,
            every,
            Replay("typing", 8.0, enter),
            repeats=repeats,
        ),
        RunSpec(
            "support-dictation",
            "long-input",
            long // 2,
            some,
            Replay("dictation", 1.0, enter),
            repeats=repeats,
        ),
        RunSpec(
            "library-paste-enter",
            "paste-then-ask",
            paste,
            every,
            Replay(submit_pause=enter),
            repeats=repeats,
        ),
        RunSpec(
            "library-context-enter",
            "long-input",
            paste,
            every,
            Replay(submit_pause=enter),
            repeats=repeats,
            dataset="library-context",
        ),
    ]


def load_suite(quick: bool, repeats: int = 3) -> list[RunSpec]:
    """N typists at once on the demo database, each with its own cache and sharing one; then
    the mixed-load scenario for every N > 1."""
    typists, cases = ((1, 4), 4) if quick else ((1, 2, 4, 8), 8)
    matrix = [
        RunSpec(
            f"load-{cache}-n{n}",
            "text-to-sql",
            cases,
            ("cold", "static", "keystroke"),
            Replay(),
            n,
            cache,
            repeats=repeats,
        )
        for cache in ("own", "shared")
        for n in typists
    ]
    mixed = [
        RunSpec(
            f"load-mixed-{cache}-n{n}",
            "text-to-sql",
            cases,
            ("cold",),
            Replay(),
            n,
            cache,
            repeats=repeats,
            mixed=(MIXED, MIXED_SPECULATE),
        )
        for cache in ("own", "shared")
        for n in typists
        if n > 1
    ]
    return matrix + mixed


SUITES: dict[str, Callable[[bool, int], list[RunSpec]]] = {
    "suite": default_suite,
    "load": load_suite,
}


async def run_suite(session: EvalStack, specs: list[RunSpec], out: Path) -> str:
    rows: list[dict[str, Any]] = []
    for spec in specs:
        report = await session.evaluate(spec.plan())
        session.write(report, out / spec.name)
        rows += summary_rows(spec.name, report)
        write_summary(rows, out)  # after every run: a cut-short suite keeps what it measured
    return (out / "summary.md").read_text()


COMPARED = {  # the ratios a summary row shows, by mode label
    "keystroke": (("static", "keystroke_over_static_p50"), ("oracle", "keystroke_over_oracle_p50")),
    "mixed:cold": (("all off", "mixed_cold_over_cold_p50"),),
    SPECULATE: (
        ("keystroke", "speculate_over_keystroke_p50"),
        ("static", "speculate_over_static_p50"),
    ),
    "mixed-speculate:cold": (("all off", ratio_name("mixed-speculate:cold", "cold")),),
}


def summary_rows(name: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    settings = report["settings"]
    rows = []
    for mode in ordered_modes(report):
        row = report["modes"][mode]
        engine = row.get("engine_warm") or {}
        ratios = report.get("ratios") or {}
        versus = {against: ratios[key] for against, key in COMPARED.get(mode, ()) if key in ratios}
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
                "repeats": settings.get("repeats", 1),
                "p50": row["ttft_ms"]["p50"],
                "p95": row["ttft_ms"]["p95"],
                "cached": row["cached_tokens_mean"],
                "prompt": row["prompt_tokens_mean"],
                "warm_per_final": engine.get(
                    "warm_prefill_tokens_per_final", row["warm_prefill_tokens_per_final"]
                ),
                "warm_source": engine.get("source", "done frames"),
                "busy": row.get("engine_busy_share"),
                "identical": row["identical_outputs"],
                "attach_rate": row.get("attach_rate"),
                "speculation_wasted_tokens": row.get("speculation_wasted_tokens"),
                "speculates": speculated(mode, row),
                "failures": len(row["failures"]),
                "versus": versus,
            }
        )
    return rows


def interval(r: dict[str, Any]) -> str:
    return f"{r['ratio']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"


def write_summary(rows: list[dict[str, Any]], out: Path, header: str = "") -> None:
    """`summary.json` (the rows) and `summary.md` (`header`, then one table row per row)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "summary.md").write_text(header + "\n".join(summary_table(rows)) + "\n")


def summary_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| run | mode | submit | replay | typists | cache | repeats | TTFT p50 ms | TTFT p95 ms "
        "| cached / prompt | warm prefill / final | busy | identical | attached (wasted tokens) "
        "| failures | ratio of p50s [95% interval] |",
        "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        versus = "; ".join(f"vs {name} {interval(v)}" for name, v in r["versus"].items())
        attached = (
            f"{fmt(r['attach_rate'], '.2f')} ({r['speculation_wasted_tokens']})"
            if r.get("speculates")
            else ""
        )
        lines.append(
            f"| {r['run']} | {r['mode']} | {r['submit_pause']} | {r['replay']} x{r['speedup']:g} "
            f"| {r['concurrency']} | {r['context_cache']} | {r['repeats']} | {fmt(r['p50'])} "
            f"| {fmt(r['p95'])} | {fmt(r['cached'], '.0f')} / {fmt(r['prompt'], '.0f')} "
            f"| {fmt(r['warm_per_final'], '.0f')} | {fmt(r['busy'], '.2f')} | {r['identical']} "
            f"| {attached} | {r['failures']} | {versus} |"
        )
    return lines
