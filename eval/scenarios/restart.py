"""`python -m eval restart`: the first request of each popular context after vLLM restarts,
with the prefix index's re-warm and without it, against the steady warm state.

One vLLM, two orchestrators in front of it (each with a server secret of its own, so neither
warms the other's cache): one keeps the prefix trace and re-warms its top contexts when vLLM
comes back, the other keeps nothing. Traffic first: `--rounds` rounds, each a new question on
every context, through both orchestrators in turn (round 0 is cold; the later rounds are the
steady state: the context cached, the question computed). Then vLLM is stopped and started
again (its cache is empty); as soon as the re-warm has started, each context gets a new
question through both orchestrators (users arriving while the re-warm still runs: `during`),
and once it has finished, one more (`first`). Requests are final requests with no warm-up of
their own (`warmups: "off"`, submitted at once): their TTFT shows what the cache holds for them.
Reports go to `--out`: `report.json`, `report.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from pydantic import SecretStr

from eval.harness.modes import Client
from eval.workloads.workload import read_jsonl
from orchestrator.settings import Settings
from orchestrator.text_to_sql.prompt import schema_prompt
from testkit.serving import free_port, serve_in_thread
from vllm_launch.engine_env import detect_device, ensure_engine_env
from vllm_launch.model import prepare_model, served_name
from vllm_launch.server import EngineProcess, ServeOptions, build_command

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "datasets"
DEFAULT_OUT = ROOT / "data" / "reports" / "restart"
ARMS = ("index", "none")  # the orchestrator with the prefix index's re-warm, and without
REWARM_WAIT_S = 900.0
SHORT = 160  # characters of a support case kept as a short question


@dataclass(frozen=True)
class RestartPlan:
    rounds: int = 4  # traffic rounds before the restart (the first one is cold)
    max_tokens: int = 8
    enforce_eager: bool = True


@dataclass(frozen=True)
class EvalContext:
    name: str
    system: str
    questions: list[str]


def contexts(needed: int) -> list[EvalContext]:
    """The demo schema prompt and the support manual, each with `needed` short questions."""
    demo = DATASETS / "demo"
    sql = [q["question"] for q in read_jsonl(demo / "questions.jsonl", ("question",))]
    support = DATASETS / "support"
    cases = [c["input"] for c in read_jsonl(support / "cases.jsonl", ("input",))]
    short = [case[:SHORT].rsplit(" ", 1)[0] + "?" for case in cases]
    found = [
        EvalContext("demo schema", schema_prompt((demo / "schema.sql").read_text(), "demo"), sql),
        EvalContext("support manual", (support / "system.md").read_text(), short),
    ]
    for context in found:
        if len(context.questions) < needed:
            raise SystemExit(
                f"error: {context.name} has {len(context.questions)} questions, {needed} needed"
            )
    return found


def parse(argv: list[str]) -> tuple[RestartPlan, Path]:
    parser = argparse.ArgumentParser(prog="python -m eval restart", description=__doc__)
    parser.add_argument("--rounds", type=int, default=RestartPlan.rounds)
    parser.add_argument("--max-tokens", type=int, default=RestartPlan.max_tokens)
    parser.add_argument("--compiled", action="store_true", help="vLLM compiled (slower start)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (one cold, then the steady state)")
    return RestartPlan(args.rounds, args.max_tokens, not args.compiled), args.out


def engine_process(plan: RestartPlan, data_dir: Path) -> tuple[EngineProcess, list[str]]:
    device = detect_device()
    engine = ensure_engine_env(data_dir, device)
    model = prepare_model(None, data_dir, engine)
    opts = ServeOptions(
        model=model,
        served_model_name=served_name(None, model),
        device=device,
        port=free_port(),
        kv_cache_gib=2,
        max_model_len=4096,
        enforce_eager=plan.enforce_eager,
        kv_events_port=None,
    )
    log = data_dir / "logs" / f"vllm-restart-{opts.port}.log"
    return EngineProcess(engine, opts, log), build_command(engine, opts)[3:]


def arm_settings(arm: str, vllm_url: str) -> Settings:
    return Settings(
        vllm_url=vllm_url,
        enable_database=False,  # the trace in memory: the orchestrator itself does not restart
        server_secret=SecretStr(f"restart-eval-{arm}-{time.time_ns()}"),
        popularity_enabled=arm == "index",
        max_tokens=8,
    )


async def ask(app_url: str, context: EvalContext, question: str, max_tokens: int) -> dict[str, Any]:
    """One final request on a fresh session, no warm-up: its `done` frame."""
    url = app_url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(url, max_size=2**24) as connection:
        client = Client(connection)
        await client.send(
            {
                "type": "start",
                "context": {"system": context.system},
                "warmups": "off",
                "params": {"max_tokens": max_tokens, "temperature": 0.0},
            }
        )
        await client.until("ready")
        await client.send({"type": "submit", "text": question, "seq": 1})
        return await client.until("done")


def measured(arm: str, phase: str, context: EvalContext, done: dict[str, Any]) -> dict[str, Any]:
    row = {
        "arm": arm,
        "phase": phase,
        "context": context.name,
        "ttft_ms": done.get("ttft_ms"),
        "prompt_tokens": done.get("prompt_tokens"),
        "cached_tokens": done.get("cached_tokens"),
    }
    print(
        f"  {phase:>8} {arm:>5} {context.name:<15} TTFT {row['ttft_ms']} ms, "
        f"cached {row['cached_tokens']}/{row['prompt_tokens']}",
        flush=True,
    )
    return row


async def traffic(
    urls: dict[str, str], found: list[EvalContext], plan: RestartPlan
) -> list[dict[str, Any]]:
    rows = []
    for round_ in range(plan.rounds):
        phase = "cold" if round_ == 0 else "steady"
        for context in found:
            for arm in ARMS:
                done = await ask(urls[arm], context, context.questions[round_], plan.max_tokens)
                rows.append(measured(arm, phase, context, done))
    return rows


async def wait_for_rewarm(url: str, since: float, *, finished: bool) -> dict[str, Any]:
    """The index orchestrator's re-warm after vLLM came back, once it has started (or, with
    `finished`, once it has finished)."""
    deadline = time.monotonic() + REWARM_WAIT_S
    ends = ("done", "waiting_for_engine")
    async with httpx.AsyncClient(timeout=10) as http:
        while time.monotonic() < deadline:
            rewarm = (await http.get(f"{url}/health")).json().get("rewarm") or {}
            started = rewarm.get("started_at") or 0
            reached = rewarm.get("state") in (ends if finished else ("running", *ends))
            if rewarm.get("reason") == "engine_recovered" and started >= since and reached:
                return dict(rewarm)
            await asyncio.sleep(0.1 if not finished else 0.5)
    raise SystemExit("error: the re-warm did not start or finish in time")


async def during_rewarm(
    urls: dict[str, str], found: list[EvalContext], plan: RestartPlan, state: str
) -> list[dict[str, Any]]:
    """A new question on every context through both arms at once, while the re-warm runs
    (`state`: what the re-warm was doing when they went)."""
    question = plan.rounds + 1

    async def one(context: EvalContext, arm: str) -> dict[str, Any]:
        done = await ask(urls[arm], context, context.questions[question], plan.max_tokens)
        return {**measured(arm, "during", context, done), "rewarm_state_at_send": state}

    return list(await asyncio.gather(*(one(c, arm) for c in found for arm in ARMS)))


async def after_restart(
    urls: dict[str, str], found: list[EvalContext], plan: RestartPlan
) -> list[dict[str, Any]]:
    rows = []
    for context in found:
        for arm in ARMS:
            question = context.questions[plan.rounds]
            done = await ask(urls[arm], context, question, plan.max_tokens)
            rows.append(measured(arm, "first", context, done))
    return rows


def summarise(rows: list[dict[str, Any]], found: list[EvalContext]) -> list[dict[str, Any]]:
    table = []
    for context in found:

        def of(arm: str, phase: str, name: str = context.name) -> list[dict[str, Any]]:
            return [
                r
                for r in rows
                if r["arm"] == arm
                and r["phase"] == phase
                and r["context"] == name
                and r["ttft_ms"] is not None
            ]

        steady = statistics.median(
            r["ttft_ms"] for r in of("index", "steady") + of("none", "steady")
        )
        first = {arm: of(arm, "first")[0] for arm in ARMS}
        during = {arm: of(arm, "during")[0] for arm in ARMS}
        cold = statistics.median(r["ttft_ms"] for r in of("index", "cold") + of("none", "cold"))
        table.append(
            {
                "context": context.name,
                "prompt_tokens": first["index"]["prompt_tokens"],
                "cold_ttft_ms": cold,
                "steady_ttft_ms": steady,
                "first_index_ttft_ms": first["index"]["ttft_ms"],
                "first_index_cached": first["index"]["cached_tokens"],
                "first_none_ttft_ms": first["none"]["ttft_ms"],
                "first_none_cached": first["none"]["cached_tokens"],
                "during_index_ttft_ms": during["index"]["ttft_ms"],
                "during_index_cached": during["index"]["cached_tokens"],
                "during_none_ttft_ms": during["none"]["ttft_ms"],
                "during_none_cached": during["none"]["cached_tokens"],
                "index_over_steady": first["index"]["ttft_ms"] / steady,
                "none_over_steady": first["none"]["ttft_ms"] / steady,
            }
        )
    return table


def markdown(table: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"vLLM restart, {meta['engine']}; {meta['rounds']} rounds of traffic before it "
        f"(round 0 cold), requests with no warm-up of their own, {meta['max_tokens']} output "
        f"tokens. Re-warm after the restart: {meta['rewarm']['warmed']} contexts, "
        f"{meta['rewarm']['prefill_tokens']} tokens computed, "
        f"{meta['rewarm_s']:.1f} s. The `during` requests went when the re-warm was "
        f"{meta['during_rewarm_state']} (all at once, both orchestrators).",
        "",
        "| context | prompt tokens | cold ms | steady ms | first after restart, index ms "
        "(cached) | first after restart, no index ms (cached) | index / steady "
        "| no index / steady | during the re-warm, index ms (cached) | during the re-warm, "
        "no index ms (cached) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        lines.append(
            f"| {r['context']} | {r['prompt_tokens']} | {r['cold_ttft_ms']:,.0f} "
            f"| {r['steady_ttft_ms']:,.1f} | {r['first_index_ttft_ms']:,.1f} "
            f"({r['first_index_cached']}) | {r['first_none_ttft_ms']:,.1f} "
            f"({r['first_none_cached']}) | **{r['index_over_steady']:.2f}** "
            f"| {r['none_over_steady']:.1f} | {r['during_index_ttft_ms']:,.1f} "
            f"({r['during_index_cached']}) | {r['during_none_ttft_ms']:,.1f} "
            f"({r['during_none_cached']}) |"
        )
    return "\n".join(lines) + "\n"


def opts_block(process: EngineProcess) -> int:
    return process.opts.effective_block_size


def main(argv: list[str]) -> int:
    from orchestrator.web.app import create_app  # the app pulls in the tokenizer stack

    plan, out = parse(argv)
    found = contexts(plan.rounds + 2)
    process, flags = engine_process(plan, Settings().data_dir)
    engine = "eager" if plan.enforce_eager else "compiled"
    print(f"Starting vLLM ({engine}); log: {process.log_path}", flush=True)
    with process:
        vllm_url = process.opts.base_url
        apps = {arm: create_app(arm_settings(arm, vllm_url)) for arm in ARMS}
        with (
            serve_in_thread(apps["index"], 300) as index_url,
            serve_in_thread(apps["none"], 300) as none_url,
        ):
            urls = {"index": index_url, "none": none_url}
            rows = asyncio.run(traffic(urls, found, plan))
            print("Restarting vLLM", flush=True)
            down = time.time()
            process.stop()
            process.start()
            process.wait_ready()
            up = time.time()
            print(f"vLLM back after {up - down:.0f} s; asking while it re-warms", flush=True)
            started = asyncio.run(wait_for_rewarm(index_url, down, finished=False))
            rows += asyncio.run(during_rewarm(urls, found, plan, str(started.get("state"))))
            rewarm = asyncio.run(wait_for_rewarm(index_url, down, finished=True))
            rows += asyncio.run(after_restart(urls, found, plan))
    table = summarise(rows, found)
    meta = {
        "engine": f"vLLM {engine} on {detect_device()}, block size {opts_block(process)}",
        "vllm_flags": flags,
        "rounds": plan.rounds,
        "max_tokens": plan.max_tokens,
        "plan": asdict(plan),
        "rewarm": rewarm,
        "rewarm_s": (rewarm.get("finished_at") or 0) - (rewarm.get("started_at") or 0),
        "restart_s": up - down,
        "during_rewarm_state": started.get("state"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({**meta, "table": table, "rows": rows}, indent=2))
    text = markdown(table, meta)
    (out / "report.md").write_text(text)
    print(text)
    print(f"reports in {out}")
    return 0
