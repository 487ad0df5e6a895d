"""`gpu-plan`: the command sequence of one GPU run, printed (or written as a shell script).

It covers the run end to end: the bundle (made where an index is reachable), the install on
the GPU host with no index, the synthetic model, and the eval's `gpu` command, which starts vLLM
with the flags the product relies on (prefix caching, KV events, priority scheduling, `--load-
format dummy`) and runs the workloads, modes and typist counts below (`eval/scenarios/gpu.py`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from vllm_launch.bundle import GPU_VLLM
from vllm_launch.server import DEFAULT_KV_EVENTS_PORT
from vllm_launch.synthetic import SHAPES, shape_of

EVAL_WORKLOADS = (
    "paste-then-ask",
    "long-input at 8k tokens",
    "long-input at 32k tokens",
    "text-to-sql",
)
EVAL_MODES = "cold,static,keystroke,oracle,speculate"
TYPISTS = (1, 8, 32)


@dataclass(frozen=True)
class GpuPlan:
    bundle: str = "bundle-gpu"
    data_dir: str = ".data"
    model: str = "7b"
    python_version: str = "3.11"
    platform: str = "manylinux_2_35_x86_64"  # vLLM 0.26 needs glibc 2.31+ (llguidance)
    vllm: str = GPU_VLLM
    target_has_torch: bool = False
    port: int = 8001
    max_model_len: int = 0  # 0: the shape's max_position_embeddings
    out: str = ""  # the eval's report folder (default: docs/results/gpu-MODEL)

    @property
    def report_dir(self) -> str:
        return self.out or f"docs/results/gpu-{self.model}"

    @property
    def model_len(self) -> int:
        return self.max_model_len or shape_of(self.model).max_positions


def _line(*words: str) -> str:
    return " ".join(shlex.quote(word) for word in words)


def engine_steps(plan: GpuPlan) -> list[str]:
    """The commands, each preceded by what it does (as a shell comment)."""
    launcher = ("python", "-m", "vllm_launch", "--data-dir", plan.data_dir)
    bundle = [*launcher, "bundle", "--out", plan.bundle, "--engine", "gpu"]
    bundle += ["--python-version", plan.python_version, "--platform", plan.platform]
    bundle += ["--vllm", plan.vllm] + (["--target-has-torch"] if plan.target_has_torch else [])
    engine_python = f"{plan.data_dir}/vllm-gpu-venv/bin/python"
    gpu = (engine_python, "-m", "vllm_launch", "--data-dir", plan.data_dir, "--device", "gpu")
    like = SHAPES[plan.model].like
    return [
        "# 1. where a package index is reachable: the GPU engine's wheels and ours",
        _line(*bundle),
        "# 2. copy the bundle folder and this checkout to the GPU host, then, with no index:",
        _line(*launcher, "install", "--from", plan.bundle, "--app-venv", ".venv"),
        f"# 3. the synthetic {plan.model} ({like}'s shape, random weights, SmolLM2 tokenizer)",
        _line(*gpu, "prepare-model", "--synthetic", plan.model),
    ]


def serve_line(plan: GpuPlan) -> str:
    """vLLM alone with the synthetic model, as the eval starts it (for a look by hand)."""
    gpu = (f"{plan.data_dir}/vllm-gpu-venv/bin/python", "-m", "vllm_launch")
    serve = [*gpu, "--data-dir", plan.data_dir, "--device", "gpu", "serve"]
    serve += ["--synthetic", plan.model, "--port", str(plan.port)]
    serve += ["--kv-events-port", str(DEFAULT_KV_EVENTS_PORT)]
    return _line(*serve, "--max-model-len", str(plan.model_len))


def eval_command(plan: GpuPlan) -> list[str]:
    """The eval's GPU run: it starts vLLM itself (and stops it) and writes the reports."""
    python = (".venv/bin/python", "-m", "eval")
    return [*python, "gpu", "--model", plan.model, "--out", plan.report_dir]


def eval_steps(plan: GpuPlan) -> list[str]:
    typists = ", ".join(str(n) for n in TYPISTS)
    env = [f"PREFILL_DATA_DIR={plan.data_dir}", f"PREFILL_VLLM_URL=http://127.0.0.1:{plan.port}"]
    if plan.max_model_len:
        env.append("PREFILL_EVAL_VLLM_ARGS=" + shlex.quote(f"--max-model-len {plan.model_len}"))
    lines = [
        "# 4. the eval: vLLM started with prefix caching, prompt-token details, priority "
        "scheduling, KV events, block size 16 and --load-format dummy; then",
    ]
    lines += [f"#    {workload}: modes {EVAL_MODES}" for workload in EVAL_WORKLOADS]
    lines += [
        f"#    then {typists} typists at once (cold, static, keystroke); one report folder per "
        f"run, summary.md and run.json (model shape, GPU, vLLM version) under {plan.report_dir}",
        f"#    (vLLM alone, by hand: {serve_line(plan)})",
        " ".join([*env, _line(*eval_command(plan))]),
    ]
    return lines


def render(plan: GpuPlan) -> str:
    return "\n".join(["#!/bin/sh", "set -e", *engine_steps(plan), *eval_steps(plan)]) + "\n"


def write_plan(plan: GpuPlan, out: Path | None) -> str:
    """The plan as text; also written to `out` (executable) when given."""
    text = render(plan)
    if out is not None:
        out.write_text(text)
        out.chmod(0o755)
    return text
