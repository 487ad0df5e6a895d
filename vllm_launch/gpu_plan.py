"""`gpu-plan`: the command sequence of one GPU run, printed (or written as a shell script).

It covers the engine side end to end: the bundle (made where an index is reachable), the
install on the GPU host with no index, the synthetic model, and vLLM started with the flags the
product relies on (prefix caching, KV events, priority scheduling: `vllm_launch serve` adds
them). The eval steps are listed as the workloads and modes the run needs; their commands are
not wired here.
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
    serve = [*gpu, "serve", "--synthetic", plan.model, "--port", str(plan.port)]
    serve += ["--kv-events-port", str(DEFAULT_KV_EVENTS_PORT)]
    serve += ["--max-model-len", str(plan.model_len)]
    like = SHAPES[plan.model].like
    return [
        "# 1. where a package index is reachable: the GPU engine's wheels and ours",
        _line(*bundle),
        "# 2. copy the bundle folder and this checkout to the GPU host, then, with no index:",
        _line(*launcher, "install", "--from", plan.bundle, "--app-venv", ".venv"),
        f"# 3. the synthetic {plan.model} ({like}'s shape, random weights, SmolLM2 tokenizer)",
        _line(*gpu, "prepare-model", "--synthetic", plan.model),
        "# 4. vLLM: prefix caching, prompt-token details, priority scheduling, KV events, "
        "block size 16, --load-format dummy (the launcher adds them); Ctrl-C stops it",
        _line(*serve) + " &",
        f"until curl -sf http://127.0.0.1:{plan.port}/v1/models >/dev/null; do sleep 5; done",
        f"export PREFILL_VLLM_URL=http://127.0.0.1:{plan.port}",
        f"export PREFILL_KV_EVENTS_URL=tcp://127.0.0.1:{DEFAULT_KV_EVENTS_PORT}",
    ]


def eval_steps(plan: GpuPlan) -> list[str]:
    lines = ["# 5. the eval (its commands are wired separately), with .venv/bin/python:"]
    for workload in EVAL_WORKLOADS:
        lines.append(f"#    {workload}: modes {EVAL_MODES}")
    typists = ", ".join(str(n) for n in TYPISTS)
    lines.append(f"#    then {typists} typists at once; reports under docs/results/ (GPU named)")
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
