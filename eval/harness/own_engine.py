"""Eval commands that start their own engine (a small cache, replicas): its options, and one
run of a plan against an orchestrator built for it, in a thread."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eval.harness.runner import RunPlan
from eval.harness.stack import EVAL_FRAMES_PER_SECOND, EvalStack, eval_timeouts
from orchestrator.settings import Settings
from orchestrator.web.services import Services
from testkit.serving import free_port, serve_in_thread
from vllm_launch.engine_env import EngineEnv, detect_device, ensure_engine_env
from vllm_launch.model import prepare_model, served_name
from vllm_launch.server import ServeOptions

DATASETS = Path(__file__).resolve().parents[2] / "datasets"


def engine_options(data_dir: Path, **overrides: Any) -> tuple[EngineEnv, ServeOptions]:
    """The engine venv and the options of a vLLM on free ports (its KV events too)."""
    device = detect_device()
    engine = ensure_engine_env(data_dir, device)
    model = prepare_model(None, data_dir, engine)
    options: dict[str, Any] = {"port": free_port(), "kv_events_port": free_port(), **overrides}
    opts = ServeOptions(
        model=model, served_model_name=served_name(None, model), device=device, **options
    )
    return engine, opts


async def run_once(
    plan: RunPlan,
    flags: list[str],
    settings: dict[str, Any],
    describe: Callable[[Services], dict[str, Any]],
) -> dict[str, Any]:
    """One report of `plan` through an orchestrator with `settings`; `describe` adds what the
    run's own services say (under `settings.run`)."""
    from orchestrator.web.app import create_app  # the app pulls in the tokenizer stack

    app = create_app(
        Settings(
            datasets_dir=DATASETS,
            ws_frames_per_second=EVAL_FRAMES_PER_SECOND,
            **{**eval_timeouts(), **settings},
        )
    )
    with serve_in_thread(app, timeout_s=300) as url:
        session = EvalStack(app, url, flags)
        report = await session.evaluate(plan)
        report["settings"]["run"] = describe(session.services)
    return report


def write_summary(lines: list[str], rows: list[dict[str, Any]], out: Path) -> str:
    """`summary.md` (the table `lines`) and `summary.json` (its `rows`) in `out`."""
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    return text
