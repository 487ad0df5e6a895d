"""`python -m eval gpu`: the product's eval on the engine with a synthetic model, one command.

It writes the synthetic model (`vllm_launch.synthetic`: a real architecture's shape, random
weights, answers that are noise and timings that are the shape's), starts vLLM with it as
every eval run does (prefix caching, KV events, priority scheduling: `launched`), and runs, in
this order: paste-then-ask, long input at about 8k and 32k tokens (the long-context dataset's
documents cut or repeated to the target) and text-to-SQL, each in the modes cold, static,
keystroke, oracle and speculate; then 1, 8 and 32 typists at once on text-to-SQL (the load
suite's runs: cold, static, keystroke). Every run writes its report folder under --out; the
summary (`summary.md`, `summary.json`) and `run.json` record the model's shape, the device and
vLLM's version. The replay is typing sped up 8 times, so that the full form fits one short GPU
lease (about 10 minutes with the engine's start); the reports record it.

`--quick` is the small form that runs on a CPU in minutes: the tiny model, one case per
workload, one repeat, a 1k-token long input, 1 and 2 typists.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from eval.engine.facts import count_tokens
from eval.harness.modes import DEFAULT_MODES, SPECULATE, EvalError
from eval.harness.rounds import rounds
from eval.harness.runner import RunPlan
from eval.harness.schedule import Schedule
from eval.harness.stack import EvalStack, launched
from eval.scenarios.run import DEFAULT_OUT
from eval.scenarios.suites import RunSpec, summary_rows, write_summary
from eval.workloads.context_length import with_context_tokens
from eval.workloads.replay import Replay
from orchestrator.settings import Settings
from vllm_launch.engine_env import detect_device, ensure_engine_env
from vllm_launch.synthetic import MARKER_NAME, SHAPES, prepare_synthetic

EVERY_MODE = (*DEFAULT_MODES, SPECULATE)
LOAD_MODES = ("cold", "static", "keystroke")  # as the load suite
LONG_DATASET = "library-context"
ROUND_OVERHEAD_S = 1.0  # a round beyond its replay: sessions, the answer, the oracle's primer


@dataclass(frozen=True)
class Form:
    """How big a GPU run is: the full form or `--quick`."""

    model: str
    cases: int  # of paste-then-ask and each long input
    sql_cases: int  # of text-to-SQL (and the fewest of a load run)
    long_tokens: tuple[int, ...]  # the long input's sizes
    typists: tuple[int, ...]  # the load runs
    repeats: int
    speedup: float  # of the typing replay
    max_tokens: int  # of the answers (noise: only their first token is timed)
    stagger_s: float  # between typists' starts in a load run


FULL = Form("7b", 2, 2, (8192, 32768), (1, 8, 32), 2, 8.0, 32, 0.1)
QUICK = Form("tiny", 1, 1, (1024,), (1, 2), 1, 8.0, 32, 0.1)


@dataclass(frozen=True)
class GpuRun:
    """One run of the GPU command: a suite run, its long input's size, its typists' stagger."""

    spec: RunSpec
    context_tokens: int | None = None  # long input: the system prompt fit to about this
    stagger_s: float = 1.5

    @property
    def name(self) -> str:
        return self.spec.name

    def plan(self) -> RunPlan:
        """The run's plan, its long input at the dataset's own length."""
        return dataclasses.replace(self.spec.plan(), stagger_s=self.stagger_s)


def tokens_label(tokens: int) -> str:
    return f"{tokens // 1024}k" if tokens % 1024 == 0 else str(tokens)


def gpu_runs(form: Form) -> list[GpuRun]:
    """The runs of one GPU command, in order."""
    replay = Replay(speedup=form.speedup)  # Enter one drawn interval after the last key

    def spec(name: str, kind: Any, cases: int, **more: Any) -> RunSpec:
        fixed = {"replay": replay, "repeats": form.repeats, "max_tokens": form.max_tokens}
        return RunSpec(name, kind, cases, **{"modes": EVERY_MODE, **fixed, **more})

    runs = [GpuRun(spec("paste-then-ask", "paste-then-ask", form.cases))]
    runs += [
        GpuRun(
            spec(f"long-input-{tokens_label(t)}", "long-input", form.cases, dataset=LONG_DATASET),
            context_tokens=t,
        )
        for t in form.long_tokens
    ]
    runs.append(GpuRun(spec("text-to-sql", "text-to-sql", form.sql_cases)))
    load = {"modes": LOAD_MODES}
    runs += [
        GpuRun(
            spec(f"load-n{n}", "text-to-sql", max(n, form.sql_cases), concurrency=n, **load),
            stagger_s=form.stagger_s,
        )
        for n in form.typists
    ]
    return runs


def estimate_s(plan: RunPlan) -> float:
    """The run's wall time as planned: each round's last submit, plus a fixed overhead."""
    total = 0.0
    for round_ in rounds(plan.workload.cases, plan.arms, plan.concurrency, plan.repeats):
        schedules = [Schedule.of(plan.replay, c.text, plan.seed, c.pasted) for c in round_.cases]
        last = max(i * plan.stagger_s + s.submit_s for i, s in enumerate(schedules))
        total += last + ROUND_OVERHEAD_S
    return total


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        choices=tuple(SHAPES),
        default=None,
        help=f"the synthetic model's shape (default: {FULL.model}; with --quick {QUICK.model})",
    )
    parser.add_argument("--quick", action="store_true", help="the small form (a CPU, minutes)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of every run")
    parser.add_argument(
        "--enforce-eager", action="store_true", help="start vLLM eager (no compile; recorded)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: data/reports/gpu-MODEL)"
    )
    return parser


def form_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Form:
    form = QUICK if args.quick else FULL
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error("--repeats must be at least 1")
        form = dataclasses.replace(form, repeats=args.repeats)
    return dataclasses.replace(form, model=args.model or form.model)


def synthetic_model(name: str) -> Path:
    """The synthetic model's folder, written (once) under the data folder."""
    data_dir = Settings().data_dir
    return prepare_synthetic(name, data_dir, ensure_engine_env(data_dir, detect_device()))


def main(argv: list[str]) -> int:
    args = (options := parser()).parse_args(argv)
    form = form_of(args, options)
    out: Path = args.out or DEFAULT_OUT.with_name(
        f"gpu-{form.model}{'-quick' if args.quick else ''}"
    )
    runs = gpu_runs(form)
    plans = [run.plan() for run in runs]
    planned = sum(estimate_s(plan) for plan in plans)
    print(
        f"{len(runs)} runs ({', '.join(r.name for r in runs)}) on the synthetic {form.model}: "
        f"about {planned / 60:.0f} min of replay, without the engine's start",
        flush=True,
    )
    folder = synthetic_model(form.model)
    started = time.monotonic()
    facts = run_facts(form, folder, args.quick, planned, argv)
    with launched([p.workload for p in plans], args.enforce_eager, True, str(folder)) as session:
        facts["seconds"]["engine_start"] = round(time.monotonic() - started, 1)
        summary = asyncio.run(run_all(session, runs, out, facts))
    facts["seconds"]["total"] = round(time.monotonic() - started, 1)
    write_facts(facts, out)
    print(summary)
    print(f"reports in {out}")
    return 0


def run_facts(
    form: Form, folder: Path, quick: bool, planned_s: float, argv: list[str]
) -> dict[str, Any]:
    """What `run.json` records beside the reports (vLLM's version once it answers)."""
    return {
        "command": ["python", "-m", "eval", "gpu", *argv],
        "form": "quick" if quick else "full",
        "plan": {**dataclasses.asdict(form), "runs": [run.name for run in gpu_runs(form)]},
        "model": json.loads((folder / MARKER_NAME).read_text()),
        "device": device_facts(),
        "vllm_version": None,
        "seconds": {"planned_replay": round(planned_s, 1)},
    }


def device_facts() -> dict[str, Any]:
    """The device the engine runs on: the GPUs nvidia-smi names, or the CPU's model."""
    kind = detect_device()
    if kind == "gpu":
        query = "--query-gpu=name,memory.total,driver_version"
        smi = ["nvidia-smi", query, "--format=csv,noheader"]
        done = subprocess.run(smi, capture_output=True, text=True, check=False)
        return {"kind": kind, "gpus": [line.strip() for line in done.stdout.splitlines()]}
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
        if line.startswith("model name")
    ]
    return {"kind": kind, "cpu": names[0] if names else None, "cores": os.cpu_count()}


async def run_all(session: EvalStack, runs: list[GpuRun], out: Path, facts: dict[str, Any]) -> str:
    """Every run's report under `out`; the summary after each (a cut-short run keeps it)."""
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=120) as http:
        await check_served(http, session.vllm_url, str(facts["model"]["name"]))

        async def count(text: str) -> int:
            return await count_tokens(http, session.vllm_url, text)

        for run in runs:
            plan, sized = run.plan(), None
            if run.context_tokens is not None:
                workload, sized = await with_context_tokens(
                    plan.workload, run.context_tokens, count
                )
                plan = dataclasses.replace(plan, workload=workload)
            report = await session.evaluate(plan)
            report["settings"]["gpu_run"] = {
                "context_tokens_target": run.context_tokens,
                "system_tokens": sized,
                "model": facts["model"],
                "device": facts["device"],
            }
            facts["vllm_version"] = report["settings"].get("vllm_version")
            session.write(report, out / run.name)
            rows += summary_rows(run.name, report)
            facts["seconds"]["eval"] = round(time.monotonic() - began, 1)
            write_summary(rows, out, header(facts))
            write_facts(facts, out)
    return (out / "summary.md").read_text()


async def check_served(http: httpx.AsyncClient, vllm_url: str, name: str) -> None:
    """EvalError unless vLLM serves the synthetic model (one already running may not)."""
    served = [m["id"] for m in (await http.get(f"{vllm_url}/v1/models")).json()["data"]]
    wanted = f"synthetic-{name}"
    if wanted not in served:
        raise EvalError(
            f"the vLLM at {vllm_url} serves {', '.join(served)}, not {wanted}: stop it, or "
            "point PREFILL_VLLM_URL at a free port"
        )


def header(facts: dict[str, Any]) -> str:
    """The summary's first lines: model, device, vLLM, times."""
    model, device = facts["model"], facts["device"]
    shape = model["shape"]
    where = ", ".join(device.get("gpus") or []) or f"{device.get('cpu')} ({device.get('cores')})"
    return (
        f"# GPU run ({facts['form']}): synthetic {model['name']}\n\n"
        f"- model: {model['like']}'s shape, random weights (answers are noise, timings the "
        f"shape's): {shape['layers']} layers, hidden {shape['hidden']}, heads "
        f"{shape['heads']} / {shape['kv_heads']} KV, {model['parameters']:,} parameters\n"
        f"- device: {device['kind']}: {where}\n"
        f"- vLLM: {facts['vllm_version']}\n"
        f"- seconds: {json.dumps(facts['seconds'])}\n\n"
    )


def write_facts(facts: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(facts, indent=2) + "\n")
