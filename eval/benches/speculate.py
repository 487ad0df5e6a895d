"""Answer before Enter, measured: keystroke warm-ups with and without speculative finals,
side by side on a real vLLM, modes interleaved case by case.

    python -m eval bench-speculate [--vllm-url URL] [--kv-events-url tcp://...]
        [--sql-cases 6] [--long-cases 2] [--sql-speedup 4] [--long-speedup 8]

Workloads: the demo text-to-SQL questions over its schema prompt (as a chat context: no
database, the SQL is not run) and the support workload's long inputs over its manual. Each
case is typed by the seeded replay (`eval/workloads/replay.py`, sped up as given) once the session's
context warm-up has landed (both modes wait alike: sped up, typing alone is shorter than
the context's cold prefill), then submitted at once (Enter: one unscaled inter-key interval
after the last key, as a real Enter key) and after a 0.8 s pause; in each, the `speculate`
and `keystroke` modes run one after the other, their order alternating case by case, each
with a fresh cache namespace. Per case a `cold` session (no warm-up) submits the text once,
then again: the second TTFT is the `oracle` floor. TTFT is the server's (`done.ttft_ms`:
submit received to first token sent).

Printed: TTFT p50 per workload, submit timing and mode (with the case count), the fraction of
answers identical to cold's, the attach rate, and the generated tokens thrown away.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

from eval.workloads.replay import Replay, SubmitPause
from eval.workloads.workload import DEFAULT_DATASETS, load_workload
from orchestrator.core.planning.planner import usable_blocks
from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.settings import Settings
from orchestrator.text_to_sql.prompt import schema_prompt
from orchestrator.web.app import create_app
from testkit.serving import serve_in_thread
from vllm_launch.signals import exits_on_signals

PAUSES = (SubmitPause(None), SubmitPause(0.8))
MODES = ("speculate", "keystroke")
SEED = 7


@dataclass(frozen=True)
class Bench:
    name: str
    system: str
    texts: tuple[str, ...]
    speedup: float
    head_tokens: int  # the context's prompt: what the warm-up at start covers


@dataclass
class Row:
    """One workload, submit timing and mode: what its cases gave."""

    ttft_ms: list[float] = field(default_factory=list)
    identical: list[bool] = field(default_factory=list)
    attached: int = 0
    wasted_tokens: int = 0


def benches(args: argparse.Namespace, renderer: PromptRenderer) -> Iterator[Bench]:
    def head(system: str) -> int:
        return len(renderer.session_prompt(system).head_tokens)

    if args.sql_cases:
        sql = load_workload(DEFAULT_DATASETS["text-to-sql"], args.sql_cases)
        system = schema_prompt((sql.path / "schema.sql").read_text(), sql.name)
        texts = tuple(c.text for c in sql.cases)
        yield Bench("text-to-sql", system, texts, args.sql_speedup, head(system))
    if args.long_cases:
        long = load_workload(DEFAULT_DATASETS["long-input"], args.long_cases)
        texts, system = tuple(c.text for c in long.cases), long.system or ""
        yield Bench("long-input", system, texts, args.long_speedup, head(system))


async def run_session(
    url: str, bench: Bench, text: str, *, mode: str, pause: SubmitPause | None
) -> list[dict[str, Any]]:
    """One session: type `text` (unless cold), submit after `pause`; cold submits twice.
    The `done` frames."""
    ws_url = url.replace("http://", "ws://") + "/ws/session"
    start: dict[str, Any] = {"type": "start", "context": {"system": bench.system}}
    start |= {"cache_namespace": secrets.token_hex(8), "speculate": mode == "speculate"}
    start |= {"warmups": "off"} if mode == "cold" else {}
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        await ws.send(json.dumps(start))
        ready = await expect(ws, "ready")
        seq = 0
        if pause is not None:
            block = int(ready["block_size"])
            last_piece = usable_blocks(bench.head_tokens, block) * block + 1
            if last_piece > 1:
                await expect(ws, "warm", lambda frame: frame["tokens"] >= last_piece)
            replay = Replay(speedup=bench.speedup)
            for seq, key in enumerate(replay.events(text, SEED), start=1):
                await asyncio.sleep(key.delay_s)
                await ws.send(json.dumps({"type": "input", "text": key.text, "seq": seq}))
            enter = Replay(submit_pause=pause).submit_delay(text, SEED)  # never scaled
            await asyncio.sleep(enter)
        dones = []
        for _ in range(2 if mode == "cold" else 1):
            await ws.send(json.dumps({"type": "submit", "text": text, "seq": seq + 1}))
            dones.append(await expect(ws, "done"))
        return dones


async def expect(
    ws: websockets.ClientConnection,
    kind: str,
    where: Callable[[dict[str, Any]], bool] = lambda frame: True,
) -> dict[str, Any]:
    async for raw in ws:
        frame: dict[str, Any] = json.loads(raw)
        if frame["type"] == "error" and frame["code"] != "warmup_failed":
            raise RuntimeError(f"error frame: {frame}")
        if frame["type"] == kind and where(frame):
            return frame
    raise RuntimeError(f"the socket closed before a {kind!r} frame")


async def run_bench(url: str, bench: Bench, rows: dict[tuple[str, str, str], Row]) -> None:
    for index, text in enumerate(bench.texts):
        cold, oracle = await run_session(url, bench, text, mode="cold", pause=None)
        add(rows, (bench.name, "-", "cold"), cold, cold)
        add(rows, (bench.name, "-", "oracle"), oracle, cold)
        for pause in PAUSES:
            order = MODES if index % 2 == 0 else MODES[::-1]
            for mode in order:
                (done,) = await run_session(url, bench, text, mode=mode, pause=pause)
                add(rows, (bench.name, pause.label, mode), done, cold)
                print(
                    f"  {bench.name} case {index + 1} {pause.label:>5} {mode:<9} "
                    f"ttft {done['ttft_ms']:8.1f} ms  "
                    f"speculative {done['scorecard']['speculative']}  "
                    f"identical {done['text'] == cold['text']}  "
                    f"wasted {done['scorecard']['speculation_wasted_tokens']}",
                    flush=True,
                )


def add(
    rows: dict[tuple[str, str, str], Row],
    key: tuple[str, str, str],
    done: dict[str, Any],
    cold: dict[str, Any],
) -> None:
    row = rows.setdefault(key, Row())
    if done["ttft_ms"] is not None:
        row.ttft_ms.append(float(done["ttft_ms"]))
    row.identical.append(done["text"] == cold["text"])
    row.attached += bool(done["scorecard"]["speculative"])
    row.wasted_tokens += int(done["scorecard"]["speculation_wasted_tokens"])


def report(rows: dict[tuple[str, str, str], Row]) -> str:
    head = f"{'workload':<12} {'submit':>6} {'mode':<10} {'cases':>5} {'TTFT p50 ms':>11} "
    head += f"{'x oracle':>8} {'identical':>9} {'attached':>8} {'wasted tok':>10}"
    lines = [head, "-" * len(head)]
    for (name, submit, mode), row in rows.items():
        p50 = statistics.median(row.ttft_ms) if row.ttft_ms else float("nan")
        oracle = rows.get((name, "-", "oracle"))
        floor = statistics.median(oracle.ttft_ms) if oracle and oracle.ttft_ms else float("nan")
        n = len(row.identical)
        lines.append(
            f"{name:<12} {submit:>6} {mode:<10} {n:>5} {p50:>11.1f} {p50 / floor:>8.2f} "
            f"{sum(row.identical) / n:>9.2f} {row.attached / n:>8.2f} {row.wasted_tokens:>10}"
        )
    return "\n".join(lines)


def settings(args: argparse.Namespace) -> Settings:
    events = {"kv_events_url": args.kv_events_url} if args.kv_events_url else {}
    return Settings(
        vllm_url=args.vllm_url,
        **events,
        enable_database=False,
        speculate="on",
        speculate_tokens=args.speculate_tokens,
        max_tokens=args.max_tokens,
        ws_frames_per_second=1000,
        data_dir=Path(os.environ.get("PREFILL_DATA_DIR", ".data")),
    )


@exits_on_signals
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval bench-speculate", description=__doc__)
    parser.add_argument(
        "--vllm-url", default=os.environ.get("PREFILL_VLLM_URL", "http://127.0.0.1:8001")
    )
    parser.add_argument("--kv-events-url", default=None)
    parser.add_argument("--sql-cases", type=int, default=5)
    parser.add_argument("--long-cases", type=int, default=2)
    parser.add_argument("--sql-speedup", type=float, default=4.0)
    parser.add_argument("--long-speedup", type=float, default=8.0)
    parser.add_argument("--speculate-tokens", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    rows: dict[tuple[str, str, str], Row] = {}
    began = time.monotonic()
    config = settings(args)
    renderer = PromptRenderer.load(config.tokenizer_path)
    with serve_in_thread(create_app(config)) as url:
        for bench in benches(args, renderer):
            asyncio.run(run_bench(url, bench, rows))
    print(report(rows))
    print(
        f"speculate_tokens={args.speculate_tokens} max_tokens={args.max_tokens} "
        f"speed-ups: text-to-sql x{args.sql_speedup:g}, long-input x{args.long_speedup:g}; "
        f"{time.monotonic() - began:.0f} s"
    )
    return 0
