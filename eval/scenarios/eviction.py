"""`python -m eval eviction`: the hit rate at submit under KV cache pressure, with vLLM's KV
events and without them, side by side on one engine.

One vLLM with a deliberately small KV cache (`--cache-blocks` blocks), N typists with caches
of their own typing the long-input workload at once (staggered starts), each thinking
`--think-s` seconds before Enter. A typist who starts warms a whole manual and evicts what
the others, thinking, had warmed. With events the orchestrator sees those evictions and warms
the thinking sessions again; without them it believes its own arithmetic and the submit
recomputes what was evicted. The two orchestrators take turns on the same engine (`--rounds`
times each, the arm that goes first alternating from round to round, so neither always meets
the cache the other left). Reports go to `--out`, `summary.md` on top.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

from eval.harness.own_engine import engine_options, run_once
from eval.harness.own_engine import write_summary as write_table
from eval.harness.runner import RunPlan
from eval.harness.stack import EvalStack
from eval.reports.markdown import fmt
from eval.workloads.replay import Replay, SubmitPause
from eval.workloads.workload import DEFAULT_DATASETS, WorkloadKind, load_workload
from orchestrator.settings import Settings
from orchestrator.web.services import Services
from vllm_launch.server import EngineProcess, build_command

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "reports" / "eviction"


@dataclass(frozen=True)
class EvictionPlan:
    cache_blocks: int = 160  # ~2 manuals with their reports: 3 typists do not fit at once
    typists: int = 3
    cases: int = 6
    think_s: float = 3.0
    speedup: float = 8.0
    rounds: int = 1
    seed: int = 7
    max_model_len: int = 2560
    workload: WorkloadKind = "long-input"

    def run_plan(self) -> RunPlan:
        workload = load_workload(DEFAULT_DATASETS[self.workload], self.cases, self.workload)
        replay = Replay("typing", self.speedup, SubmitPause(self.think_s))
        return RunPlan(workload, ("keystroke",), replay, self.seed, 64, self.typists, repeats=1)


def parse(argv: list[str]) -> tuple[EvictionPlan, Path]:
    parser = argparse.ArgumentParser(prog="python -m eval eviction", description=__doc__)
    defaults = EvictionPlan()
    parser.add_argument("--cache-blocks", type=int, default=defaults.cache_blocks)
    parser.add_argument("--typists", type=int, default=defaults.typists)
    parser.add_argument("--cases", type=int, default=defaults.cases)
    parser.add_argument("--think-s", type=float, default=defaults.think_s)
    parser.add_argument("--speedup", type=float, default=defaults.speedup)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workload", choices=get_args(WorkloadKind), default=defaults.workload)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    plan = EvictionPlan(
        args.cache_blocks,
        args.typists,
        args.cases,
        args.think_s,
        args.speedup,
        args.rounds,
        args.seed,
        workload=args.workload,
    )
    return plan, args.out


def small_cache_engine(plan: EvictionPlan, data_dir: Path) -> tuple[EngineProcess, list[str]]:
    engine, opts = engine_options(
        data_dir,
        kv_cache_gib=1,
        max_model_len=plan.max_model_len,
        extra_args=("--num-gpu-blocks-override", str(plan.cache_blocks)),
    )
    log = data_dir / "logs" / f"vllm-eviction-{opts.port}.log"
    return EngineProcess(engine, opts, log), build_command(engine, opts)[3:]


async def one_run(
    plan: EvictionPlan, process: EngineProcess, flags: list[str], events: bool
) -> dict[str, Any]:
    urls = process.opts.kv_events_urls if events else None
    settings = {
        "vllm_url": process.opts.base_url,
        "enable_database": plan.workload == "text-to-sql",  # its contexts are database schemas
        "kv_events_url": urls[0] if urls else None,
        "kv_events_replay_url": urls[1] if urls else None,
    }

    def describe(services: Services) -> dict[str, Any]:
        return {
            **asdict(plan),
            "kv_events": events,
            "cache_view": services.cache_view_status(),
            "rewarms_after_eviction": services.rewarms_after_eviction,
        }

    return await run_once(plan.run_plan(), flags, settings, describe)


def summary_row(report: dict[str, Any]) -> dict[str, Any]:
    row = report["modes"]["keystroke"]
    eviction = report["settings"]["run"]
    cached, prompt = row["cached_tokens_mean"], row["prompt_tokens_mean"]
    return {
        "kv_events": eviction["kv_events"],
        "hit_rate": cached / prompt if cached is not None and prompt else None,
        "cached": cached,
        "prompt": prompt,
        "p50": row["ttft_ms"]["p50"],
        "p95": row["ttft_ms"]["p95"],
        "rewarms": eviction["rewarms_after_eviction"],
        "warm_per_final": row["warm_prefill_tokens_per_final"],
        "failures": len(row["failures"]),
    }


def write_summary(rows: list[dict[str, Any]], plan: EvictionPlan, out: Path) -> str:
    lines = [
        f"KV cache of {plan.cache_blocks} blocks; {plan.typists} typists with caches of their "
        f"own, {plan.workload} workload at x{plan.speedup:g}, {plan.think_s:g} s before Enter, "
        f"{plan.cases} cases, seed {plan.seed}.",
        "",
        "| round | KV events | hit rate at submit | cached / prompt | TTFT p50 ms | TTFT p95 ms "
        "| re-warms after eviction | warm prefill / final | failures |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['round']}{' (went first)' if r['first'] else ''} "
            f"| {'on' if r['kv_events'] else 'off'} | {fmt(r['hit_rate'], '.3f')} "
            f"| {fmt(r['cached'], '.0f')} / {fmt(r['prompt'], '.0f')} | {fmt(r['p50'])} "
            f"| {fmt(r['p95'])} | {r['rewarms']} | {fmt(r['warm_per_final'], '.0f')} "
            f"| {r['failures']} |"
        )
    return write_table(lines, rows, out)


def main(argv: list[str]) -> int:
    plan, out = parse(argv)
    process, flags = small_cache_engine(plan, Settings().data_dir)
    print(f"Starting vLLM with a KV cache of {plan.cache_blocks} blocks; log: {process.log_path}")
    rows: list[dict[str, Any]] = []
    with process:
        for round_ in range(plan.rounds):
            order = (False, True) if round_ % 2 == 0 else (True, False)
            for position, events in enumerate(order):
                report = asyncio.run(one_run(plan, process, flags, events))
                EvalStack.write(report, out / f"events-{'on' if events else 'off'}-{round_}")
                rows.append({**summary_row(report), "round": round_, "first": position == 0})
                summary = write_summary(rows, plan, out)
    print(summary)
    print(f"reports in {out}")
    return 0
