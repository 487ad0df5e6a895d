"""`python -m eval replicas`: final TTFT with N typists at once on one vLLM, then on R vLLM
replicas behind vllm-router (`vllm_launch serve --replicas R`), side by side in one run.

Both set-ups get the same engine flags per vLLM, the same workload (text-to-SQL on the demo
database, caches of their own, Enter right after the last key) and the same cache view: the
orchestrator follows no KV events in either (it follows none behind a router, so the single
engine's arm does without them too). With `--rounds N` the two take turns N times, the one that
goes first alternating from round to round. On a CPU every vLLM runs one
torch thread, so R replicas bring R times the compute where cores allow, as R GPUs would.
Reports go to `--out`, `summary.md` on top.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.harness.own_engine import engine_options, run_once
from eval.harness.own_engine import write_summary as write_table
from eval.harness.runner import RunPlan
from eval.harness.stack import EvalStack
from eval.reports.markdown import fmt
from eval.workloads.replay import Replay, SubmitPause
from eval.workloads.workload import DEFAULT_DATASETS, load_workload
from orchestrator.settings import Settings
from orchestrator.web.services import Services
from testkit.serving import free_port
from vllm_launch.replicas import ReplicaPlan, serving_replicas
from vllm_launch.server import EngineProcess, build_command

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "reports" / "replicas"
MODES = ("static", "keystroke")


@dataclass(frozen=True)
class ReplicasPlan:
    replicas: int = 2
    typists: int = 4
    cases: int = 8
    seed: int = 7
    enforce_eager: bool = False
    rounds: int = 1

    def run_plan(self) -> RunPlan:
        workload = load_workload(DEFAULT_DATASETS["text-to-sql"], self.cases, "text-to-sql")
        replay = Replay(submit_pause=SubmitPause(None))
        return RunPlan(workload, MODES, replay, self.seed, 96, self.typists, repeats=1)


@contextlib.contextmanager
def engines(
    plan: ReplicasPlan, replicas: int, data_dir: Path
) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """One vLLM (following its KV events, as `--launch-vllm` does) or `replicas` behind the
    router; yields the orchestrator settings for it and the vLLM flags."""
    engine, opts = engine_options(data_dir, kv_cache_gib=2, enforce_eager=plan.enforce_eager)
    flags = build_command(engine, opts)[3:]
    logs = data_dir / "logs"
    if replicas == 1:
        with EngineProcess(engine, opts, logs / f"vllm-replicas-{opts.port}.log"):
            yield {"vllm_url": opts.base_url, "kv_events_url": None}, flags  # as behind a router
        return
    placed = ReplicaPlan(opts, replicas, free_port(), free_port())
    with serving_replicas(engine, placed, logs):
        yield {"vllm_url": opts.base_url, "vllm_replica_urls": placed.replica_urls}, flags


def rows_of(report: dict[str, Any], replicas: int) -> list[dict[str, Any]]:
    rows = []
    for mode in MODES:
        row = report["modes"][mode]
        rows.append(
            {
                "replicas": replicas,
                "mode": mode,
                "p50": row["ttft_ms"]["p50"],
                "p95": row["ttft_ms"]["p95"],
                "cached": row["cached_tokens_mean"],
                "prompt": row["prompt_tokens_mean"],
                "failures": len(row["failures"]),
            }
        )
    return rows


def write_summary(rows: list[dict[str, Any]], plan: ReplicasPlan, out: Path) -> str:
    lines = [
        f"{plan.typists} typists at once, text-to-SQL (demo), {plan.cases} cases, Enter at once, "
        f"seed {plan.seed}{', vLLM eager' if plan.enforce_eager else ''}; no KV events in "
        "either set-up; the set-up that goes first alternates by round.",
        "",
        "| round | vLLMs | mode | TTFT p50 ms | TTFT p95 ms | cached / prompt | failures |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['round']} | {r['replicas']} | {r['mode']} | {fmt(r['p50'])} | {fmt(r['p95'])} "
            f"| {fmt(r['cached'], '.0f')} / {fmt(r['prompt'], '.0f')} | {r['failures']} |"
        )
    return write_table(lines, rows, out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval replicas", description=__doc__)
    defaults = ReplicasPlan()
    parser.add_argument("--replicas", type=int, default=defaults.replicas)
    parser.add_argument("--typists", type=int, default=defaults.typists)
    parser.add_argument("--cases", type=int, default=defaults.cases)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    plan = ReplicasPlan(
        args.replicas, args.typists, args.cases, args.seed, args.enforce_eager, args.rounds
    )
    data_dir = Settings().data_dir
    rows: list[dict[str, Any]] = []
    for round_ in range(plan.rounds):
        for replicas in (1, plan.replicas) if round_ % 2 == 0 else (plan.replicas, 1):
            with engines(plan, replicas, data_dir) as (settings, flags):

                def describe(services: Services, replicas: int = replicas) -> dict[str, Any]:
                    return {
                        "replicas": replicas,
                        "replica_urls": services.vllm.replicas,
                        "kv_events": False,
                    }

                report = asyncio.run(run_once(plan.run_plan(), flags, settings, describe))
            EvalStack.write(report, args.out / f"replicas-{replicas}-{round_}")
            rows += [{**row, "round": round_} for row in rows_of(report, replicas)]
            summary = write_summary(rows, plan, args.out)
    print(summary)
    print(f"reports in {args.out}")
    return 0
