"""Hostile input, bounded: `python -m eval hostile [--frames 10000] [--connections 50]`.

The orchestrator (`python -m orchestrator`, its default settings, no database) runs on
loopback against the fake vLLM (`testkit/fake_vllm.py`, fast mode: it computes nothing, so what
is measured is the orchestrator; block size 4, so that the well-behaved session's keystrokes
send a warm-up every few keys). Of the connections, four in five are WebSockets sending
malformed, wrong-shaped, out-of-order, fuzzed, deeply nested and oversized frames
(`eval/benches/hostile_frames.py`), reconnecting when the server closes them; the rest send bad HTTP
requests. Each connection sends 10 a second, under the per-session frame limit, so frames are
parsed rather than dropped. Meanwhile one well-behaved session types a question, key by key.

It prints the crashes (HTTP 5xx answers, WebSocket closes with 1011, tracebacks in the
orchestrator's log, the process gone: all must be 0), the error frames and HTTP errors by
code, and the p50/p99 of the well-behaved session's keystroke-to-warm-up dispatch (its input
frame sent to the fake receiving that warm-up), alone before the flood and during it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from eval.benches.hostile_frames import SYSTEM, FrameMaker, http_request
from eval.benches.processes import stop, wait_for
from eval.reports.results import quantile
from testkit.serving import free_port
from vllm_launch.signals import spawn_group

ROOT = Path(__file__).resolve().parents[2]
QUESTION = (
    "Which customers placed more than three orders in the last quarter, and what was the total "
    "value of those orders per customer, sorted from the highest to the lowest? Leave out the "
    "orders that were cancelled or refunded, and show each customer's city and the date of the "
    "first order they ever placed with us, with the number of items in that order."
)
KEY_INTERVAL_S = 0.04
FRAME_INTERVAL_S = 0.1  # 10 frames a second a connection: under the per-session limit (60)
BLOCK_SIZE = 4  # the fake's: a warm-up every few keys, for enough latency samples
CRASH_MARKS = ("Traceback", "Exception in ASGI application")


@dataclass
class Tally:
    ws_errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    http: Counter[str] = field(default_factory=Counter)
    frames: int = 0
    http_requests: int = 0


@contextlib.contextmanager
def started(logs: Path) -> Iterator[tuple[str, str, Path]]:
    """The fake vLLM and the orchestrator (defaults, no database) in processes of their own."""
    fake_port, app_port = free_port(), free_port()
    fake_log, app_log = logs / "fake-vllm.log", logs / "orchestrator.log"
    env = {
        **os.environ,
        "PREFILL_HOST": "127.0.0.1",
        "PREFILL_PORT": str(app_port),
        "PREFILL_VLLM_URL": f"http://127.0.0.1:{fake_port}",
        "PREFILL_ENABLE_DATABASE": "false",
    }
    fake_cmd = [sys.executable, "-m", "testkit.fake_vllm", "--port", str(fake_port)]
    fake_cmd += ["--block-size", str(BLOCK_SIZE)]
    with fake_log.open("wb") as fake_out, app_log.open("wb") as app_out:
        fake = spawn_group(fake_cmd, fake_out, cwd=ROOT)
        app: subprocess.Popen[bytes] | None = None
        try:
            fake_url = f"http://127.0.0.1:{fake_port}"
            wait_for(f"{fake_url}/v1/models", fake, fake_log, 60)
            app_cmd = [sys.executable, "-m", "orchestrator"]
            app = spawn_group(app_cmd, app_out, env, ROOT)
            app_url = f"http://127.0.0.1:{app_port}"
            wait_for(f"{app_url}/health", app, app_log, 120)
            yield fake_url, app_url, app_log
            if app.poll() is not None:
                raise RuntimeError(f"the orchestrator exited with {app.returncode}")
        finally:
            if app is not None:
                stop(app)
            stop(fake)


async def read_frames(
    ws: ClientConnection,
    tally: Tally,
    into: list[dict[str, object]],
    ready: asyncio.Event | None = None,
) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            frame = json.loads(message)
            into.append(frame)
            if frame.get("type") == "error":
                tally.ws_errors[str(frame.get("code"))] += 1
            if frame.get("type") == "ready" and ready is not None:
                ready.set()


async def hostile_ws(url: str, frames: int, seed: int, tally: Tally) -> None:
    """`frames` hostile frames over one connection slot (reconnecting after a close)."""
    maker = FrameMaker(random.Random(seed))
    sent = 0
    while sent < frames:
        async with connect(url, open_timeout=30, close_timeout=2, max_size=None) as ws:
            reader = asyncio.create_task(read_frames(ws, tally, []))
            with contextlib.suppress(ConnectionClosed):
                while sent < frames:
                    frame = maker.next()
                    sent += 1
                    tally.frames += 1
                    await ws.send(frame)
                    await asyncio.sleep(FRAME_INTERVAL_S)
            await ws.close()
            await reader
            if ws.close_code not in (None, 1000):
                tally.closes[ws.close_code] += 1
            maker.started, maker.seq, maker.text = False, 0, ""


async def hostile_http(app_url: str, requests: int, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=app_url, timeout=30) as http:
        for _ in range(requests):
            method, path, headers, body = http_request(rng)
            tally.http_requests += 1
            try:
                reply = await http.request(method, path, headers=headers, content=body)
            except httpx.TransportError:  # the server answered (413) before the body ended
                tally.http["connection closed by the server"] += 1
                continue
            code = "ok" if reply.status_code < 400 else "(no error envelope)"
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                code = reply.json()["error"]["code"]
            tally.http[f"{reply.status_code} {code}"] += 1
            await asyncio.sleep(FRAME_INTERVAL_S)


async def good_session(app_url: str, fake_url: str) -> list[float]:
    """Type QUESTION key by key; the dispatch latency (ms) of each keystroke's warm-up."""
    url = app_url.replace("http://", "ws://") + "/ws/session"
    frames: list[dict[str, object]] = []
    sends: dict[int, float] = {}
    async with connect(url, open_timeout=30) as ws:
        ready = asyncio.Event()
        reader = asyncio.create_task(read_frames(ws, Tally(), frames, ready))
        await ws.send(json.dumps({"type": "start", "context": {"system": SYSTEM}}))
        await asyncio.wait_for(ready.wait(), timeout=60)
        session_id = next(str(f["session_id"]) for f in frames if f.get("type") == "ready")
        for seq in range(1, len(QUESTION) + 1):
            sends[seq] = time.time()
            await ws.send(json.dumps({"type": "input", "text": QUESTION[:seq], "seq": seq}))
            await asyncio.sleep(KEY_INTERVAL_S)
        await asyncio.sleep(1.0)
        await ws.close()
        await reader
    async with httpx.AsyncClient(timeout=30) as http:
        records = (await http.get(f"{fake_url}/fake/requests")).json()
    first: dict[int, float] = {}
    for record in records:
        parts = str(record.get("request_id") or "").split("-")
        if len(parts) == 4 and parts[0] == "warm" and parts[1] == session_id:
            seq = int(parts[2])
            first[seq] = min(first.get(seq, float("inf")), float(record["at"]))
    return [(at - sends[seq]) * 1000 for seq, at in first.items() if seq in sends]


async def flood(app_url: str, fake_url: str, args: argparse.Namespace, tally: Tally) -> list[float]:
    ws_slots = args.connections * 4 // 5
    http_slots = args.connections - ws_slots
    per_slot = args.frames // args.connections
    url = app_url.replace("http://", "ws://") + "/ws/session"
    tasks = [hostile_ws(url, per_slot, args.seed + i, tally) for i in range(ws_slots)]
    tasks += [
        hostile_http(app_url, per_slot, args.seed + 1000 + i, tally) for i in range(http_slots)
    ]
    flooding = asyncio.gather(*tasks)
    await asyncio.sleep(2.0)  # the flood under way
    latencies = await good_session(app_url, fake_url)
    await flooding
    return latencies


def crashes(tally: Tally, log: Path, alive: bool) -> dict[str, int]:
    text = log.read_text(errors="replace")
    return {
        "HTTP 5xx answers": sum(n for key, n in tally.http.items() if key.startswith("5")),
        "WebSocket closes with 1011": tally.closes.get(1011, 0),
        "tracebacks in the orchestrator's log": sum(text.count(mark) for mark in CRASH_MARKS),
        "orchestrator gone": 0 if alive else 1,
    }


def report(
    tally: Tally, found: dict[str, int], quiet: list[float], busy: list[float], s: float
) -> None:
    print(
        f"hostile input: {tally.frames} WebSocket frames + {tally.http_requests} HTTP requests "
        f"= {tally.frames + tally.http_requests} in {s:.1f} s"
    )
    print(
        f"upstream: the fake vLLM (testkit/fake_vllm.py, fast mode, block size {BLOCK_SIZE}); "
        "the orchestrator's default settings, no database"
    )
    print(f"crashes: {sum(found.values())} ({', '.join(f'{k}: {v}' for k, v in found.items())})")
    print("WebSocket error frames by code: " + fmt(tally.ws_errors))
    print("WebSocket closes by code: " + fmt(tally.closes))
    print("HTTP answers by status and code: " + fmt(tally.http))
    for name, values in (("alone", quiet), ("during the flood", busy)):
        p50, p99 = quantile(values, 0.50), quantile(values, 0.99)
        print(
            f"well-behaved session, keystroke to warm-up dispatch, {name}: "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(values)} warm-ups)"
        )


def fmt(counts: Counter[str] | Counter[int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in counts.most_common()) or "none"


async def run(args: argparse.Namespace, logs: Path) -> int:
    tally = Tally()
    with started(logs) as (fake_url, app_url, app_log):
        quiet = await good_session(app_url, fake_url)
        began = time.monotonic()
        busy = await flood(app_url, fake_url, args, tally)
        seconds = time.monotonic() - began
        async with httpx.AsyncClient(timeout=30) as http:
            alive = (await http.get(f"{app_url}/health")).status_code == 200
        found = crashes(tally, app_log, alive)
    report(tally, found, quiet, busy, seconds)
    return 1 if sum(found.values()) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval hostile", description=__doc__)
    parser.add_argument("--frames", type=int, default=10_000, help="frames and requests in all")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs here")
    args = parser.parse_args(argv)
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        return asyncio.run(run(args, args.logs))
    with tempfile.TemporaryDirectory(prefix="hostile-") as logs:
        return asyncio.run(run(args, Path(logs)))
