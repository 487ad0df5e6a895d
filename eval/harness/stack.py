"""The eval's running parts: vLLM (started unless one answers), the orchestrator in a thread,
and what turns a run's case results into a report (settings, engine facts, scores)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from eval.engine.facts import engine_settings
from eval.harness.runner import Runner, RunPlan, Upstream
from eval.reports.report import build_report, write_reports
from eval.workloads.scoring import gold_orders, results_match
from eval.workloads.workload import Case, Workload
from orchestrator.core.engine.salt import tenant_salt
from orchestrator.errors import ServiceError
from orchestrator.launch import launched_vllm, with_kv_events
from orchestrator.settings import Settings
from orchestrator.text_to_sql.runner import run_query
from orchestrator.web.auth import ANONYMOUS_TENANT
from orchestrator.web.services import Services
from testkit.serving import serve_in_thread
from vllm_launch.engine_env import detect_device

VLLM_ARGS_ENV = "PREFILL_EVAL_VLLM_ARGS"  # extra vLLM flags for an engine the eval starts
EVAL_FRAMES_PER_SECOND = 2000.0
# A cold 7,700-token prefill (the long-context workload) takes over a minute on a shared 2-core
# CPU: the eval's own orchestrator waits longer for vLLM than a service would (recorded;
# PREFILL_REQUEST_TIMEOUT_S overrides it).
EVAL_REQUEST_TIMEOUT_S = 600.0


class EvalStack:
    def __init__(self, app: FastAPI, app_url: str, vllm_flags: list[str] | None) -> None:
        self.app, self.app_url, self.vllm_flags = app, app_url, vllm_flags
        self.services: Services = app.state.services
        self.vllm_url = self.services.settings.vllm_base_url

    @property
    def ws_url(self) -> str:
        return self.app_url.replace("http://", "ws://") + "/ws/session"

    async def evaluate(self, plan: RunPlan) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30) as http:
            engine = (await http.get(f"{self.app_url}/health")).json()["vllm"]
            if not engine["ok"]:
                raise ServiceError(f"vLLM is not healthy: {engine['error']}")
            served = await engine_settings(http, self.vllm_url)
        workload = plan.workload
        seconds = plan.repeats * sum(plan.replay.seconds(c.text, plan.seed) for c in workload.cases)
        print(
            f"{workload.name}: {len(workload.cases)} cases x {len(plan.arms)} modes "
            f"x {plan.repeats} repeats, "
            f"{plan.concurrency} typist(s), submit {plan.replay.submit_pause.label}; "
            f"the replay alone {seconds:.0f} s per mode",
            flush=True,
        )
        upstream = Upstream(
            self.ws_url,
            self.vllm_url,
            self.salt_of,
            self.services.settings.kv_events_url,
            int(engine["block_size"]),
        )
        outcome = await Runner(plan, upstream, self.scorer(workload)).run()
        meta = {
            "model": engine["model"],
            "backend": {"device": detect_device(), "block_size": engine["block_size"]},
            "dataset": workload.name,
            "workload": workload.kind,
            "cases": len(workload.cases),
            "settings": {
                **plan.settings(),
                "model": engine["model"],
                "block_size": engine["block_size"],
                "dtype": served.get("dtype") or self.flag("--dtype"),
                "vllm_version": served.get("vllm_version"),
                "vllm_flags": portable(self.vllm_flags),
                "vllm_served": served,
                **self.orchestrator_settings(),
            },
        }
        engine_warm = {label: warm.as_dict() for label, warm in outcome.engine.items()}
        meta["settings"]["warm_prefill_source"] = (
            "kv-events: blocks vLLM stored per case salt, less the final's own"
            if engine_warm
            else "done frames only (landed warm-ups): no KV events from vLLM"
        )
        return build_report(outcome.results, meta, plan.labels, outcome.busy, engine_warm)

    def salt_of(self, namespace: str) -> str:
        """The cache salt the orchestrator gives the eval's sessions in `namespace`."""
        return tenant_salt(self.services.settings.server_secret, ANONYMOUS_TENANT, namespace)

    def orchestrator_settings(self) -> dict[str, Any]:
        """The orchestrator's settings that move the figures."""
        settings = self.services.settings
        names = (
            "typing_pause_ms",
            "typing_pause_factor",
            "warm_priority",
            "final_priority",
            "warmups_per_second",
            "max_warmups_in_flight",
            "ws_frames_per_second",
            "request_timeout_s",
            "warm_piece_tokens",
            "warm_pieces_in_flight",
            "warm_pieces_while_finals",
            "final_room_s",
            "engine_step_tokens",
            "engine_chunk_tokens",
            "speculate",
            "rewarm_top_k",
        )
        chosen = {name: getattr(settings, name) for name in names}
        scheduler = self.services.dispatcher.scheduler
        bounds = {
            "warm_pieces_limit": scheduler.limit,
            "warm_pieces_limit_while_finals": scheduler.limit_while_finals,
        }
        return {**chosen, **bounds, "cache_view": self.services.cache_view_status()}

    def flag(self, name: str) -> str | None:
        flags = self.vllm_flags or []
        return flags[flags.index(name) + 1] if name in flags[:-1] else None

    def scorer(self, workload: Workload) -> Any:
        if workload.kind != "text-to-sql":

            async def no_score(case: Case, done: dict[str, Any]) -> bool | None:
                return None

            return no_score
        reader_url = self.services.sql.get(workload.database).reader_url

        async def execution_match(case: Case, done: dict[str, Any]) -> bool | None:
            if not done.get("sql") or done.get("refused") or case.gold_sql is None:
                return False
            try:
                gold = await run_query(reader_url, case.gold_sql, max_rows=100_000)
                predicted = await run_query(reader_url, done["sql"], max_rows=100_000)
            except ServiceError:
                return False
            return results_match(gold, predicted, ordered=gold_orders(case.gold_sql))

        return execution_match

    @staticmethod
    def write(report: dict[str, Any], out: Path) -> None:
        write_reports(report, out)


def eval_timeouts() -> dict[str, Any]:
    """The eval's longer wait for vLLM, unless the environment sets one."""
    if "PREFILL_REQUEST_TIMEOUT_S" in os.environ:
        return {}
    return {"request_timeout_s": EVAL_REQUEST_TIMEOUT_S}


def portable(flags: list[str] | None) -> list[str] | None:
    """vLLM's flags with this machine's paths cut to their last part (reports get committed)."""
    if flags is None:
        return None
    return [Path(flag).name if flag.startswith("/") else flag for flag in flags]


@contextlib.contextmanager
def staged(workloads: list[Workload]) -> Iterator[Path]:
    """A folder of the text-to-SQL datasets among `workloads`, each linked under its database
    name (a folder may be named anything: `library-large` is served as `library_large`)."""
    with tempfile.TemporaryDirectory(prefix="prefill-eval-datasets-") as folder:
        for workload in workloads:
            if workload.kind == "text-to-sql":
                link = Path(folder) / workload.database
                if not link.exists():
                    link.symlink_to(workload.path.resolve(), target_is_directory=True)
        yield Path(folder)


def eval_settings(datasets_dir: Path, speculating: bool, model: str | None = None) -> Settings:
    """The eval's orchestrator: the user's settings (PREFILL_*) but for what a run must fix.
    A sped-up replay sends more keystrokes a second than a person: they are let through. No
    re-warm at start: the popular prefixes in the data folder's trace are earlier runs' (salts
    no case uses again), and warming them would keep the engine busy through this run's first
    cases. The report records both. `model`: the folder vLLM serves (and the tokenizer's),
    instead of the user's (a synthetic model, `eval/scenarios/gpu.py`)."""
    return Settings(
        datasets_dir=datasets_dir,
        **model_for(model),
        ws_frames_per_second=EVAL_FRAMES_PER_SECOND,
        rewarm_top_k=0,
        **eval_timeouts(),
        **speculation_for(speculating),
    )


def model_for(model: str | None) -> dict[str, Any]:
    return {} if model is None else {"model": model}


def speculation_for(speculating: bool) -> dict[str, Any]:
    """Speculative finals (`on`) only for a run with the `speculate` mode, whose sessions alone
    ask for them: every other mode's sessions opt out in their start frame (`modes.py`), so
    their figures stay those of warm-ups. PREFILL_SPECULATE, when set, decides; the report
    records the setting either way."""
    if "PREFILL_SPECULATE" in os.environ:
        return {}
    return {"speculate": "on" if speculating else "off"}


@contextlib.contextmanager
def launched(
    workloads: list[Workload],
    enforce_eager: bool = False,
    speculating: bool = False,
    model: str | None = None,
) -> Iterator[EvalStack]:
    """vLLM (compiled, as users run it, unless `enforce_eager`) unless one answers, and the
    orchestrator on a port, serving the text-to-SQL datasets among `workloads`, speculating
    when some run has the `speculate` mode (`speculating`); `model`: a model folder to serve
    instead of the user's."""
    from orchestrator.web.app import create_app  # the app pulls in the tokenizer stack

    with staged(workloads) as datasets_dir:
        settings = eval_settings(datasets_dir, speculating, model)
        if speculating and settings.speculate == "off":
            print("note: PREFILL_SPECULATE=off: the speculate mode runs as keystroke", flush=True)
        settings = with_kv_events(settings)  # as `python -m orchestrator --launch-vllm` runs
        extra = tuple(os.environ.get(VLLM_ARGS_ENV, "").split())
        with launched_vllm(settings, enforce_eager=enforce_eager, extra_args=extra) as flags:
            app = create_app(settings)
            with serve_in_thread(app, timeout_s=300) as app_url:
                yield EvalStack(app, app_url, flags)
