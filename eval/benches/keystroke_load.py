"""One run of the keystroke load benchmark (`eval/benches/keystrokes.py`): N typing sessions
against the orchestrator in front of the fake vLLM, and what it measured (`Result`)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from eval.benches.processes import Processes, cpu_seconds, rss_kib
from eval.benches.typing_sessions import TypingSession, close_session, open_session
from eval.workloads.keystroke_texts import question

IDLE_S = 3.0


@dataclass
class Result:
    sessions: int
    keystrokes: int
    skipped: int
    seconds: float
    target_keys_per_s: float
    warmups: int
    context_warmups: int
    keystroke_warmups: int
    pause_warmups: int
    finals: int
    latencies_ms: list[float]
    cpu_us_per_key: float
    idle_cpu_ms_per_s: float
    net_cpu_us_per_key: float  # less what the orchestrator burns idle
    load: float  # the machine's 1-minute load average at the end of the run
    kib_per_session: float
    rss_before_kib: int
    rss_after_kib: int
    drain_s: float
    head_tokens: int | None
    client_cpu_s: float
    fake_cpu_s: float
    errors: dict[str, int]  # error frames by code

    @property
    def keys_per_s(self) -> float:
        return self.keystrokes / self.seconds


async def settle(fake_url: str, quiet_s: float = 1.0, within_s: float = 60.0) -> None:
    """Wait until the fake has seen no new request for `quiet_s` (pause warm-ups included)."""
    async with httpx.AsyncClient(timeout=30) as http:
        deadline = time.monotonic() + within_s
        count, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_count = len((await http.get(f"{fake_url}/fake/requests")).json())
            if now_count != count:
                count, since = now_count, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            await asyncio.sleep(0.25)


def classify(
    records: list[dict[str, Any]], sessions: list[TypingSession]
) -> tuple[list[float], int, int, int, int]:
    """Latencies (ms) of keystroke warm-ups; counts of context, keystroke, pause, final."""
    by_id = {session.session_id: session for session in sessions}
    warms: dict[str, list[tuple[int, int, float]]] = {}  # session -> (n, seq, arrival)
    finals = 0
    for record in records:
        parts = str(record.get("request_id") or "").split("-")
        if len(parts) != 4 or parts[0] != "warm":
            finals += 1
            continue
        warms.setdefault(parts[1], []).append((int(parts[3]), int(parts[2]), record["at"]))
    latencies: list[float] = []
    context = keystroke = pause = 0
    for session_id, requests in warms.items():
        session = by_id.get(session_id)
        frames = session.warm_frames if session is not None else []
        for position, (_, seq, arrived) in enumerate(sorted(requests)):
            # One warm-up in flight per session and the fake never fails: the k-th `warm`
            # frame answers the k-th request.
            frame = frames[position] if position < len(frames) else None
            if seq == 0:
                context += 1
            elif frame is not None and frame == (seq, True):
                pause += 1
            else:
                keystroke += 1
                sent = session.sends.get(seq) if session is not None else None
                if sent is not None:
                    latencies.append((arrived - sent) * 1000)
    return latencies, context, keystroke, pause, finals


@dataclass(frozen=True)
class Baseline:
    """The counters read before the sessions connect."""

    client_cpu_s: float  # this process's CPU time
    fake_cpu_s: float  # the fake vLLM's CPU time
    rss_kib: int  # the orchestrator's RSS


@dataclass(frozen=True)
class Typed:
    """What the orchestrator's process did while the sessions typed (loop times)."""

    begin: float  # the typing began
    typed: float  # the last session stopped typing
    drained: float  # the orchestrator had handled every keystroke
    cpu_s: float  # its CPU time from `begin` to `drained`
    idle_cpu_per_s: float  # what it burns with the sessions open and quiet
    rss_after_kib: int


async def open_sessions(
    url: str, texts: list[str], system: str, compression: bool
) -> list[TypingSession]:
    """All sessions started (25 connecting at a time), or none left open and an error."""
    gate = asyncio.Semaphore(25)
    connected = time.perf_counter()
    opened = await asyncio.gather(
        *(open_session(url, i, text, system, gate, compression) for i, text in enumerate(texts)),
        return_exceptions=True,
    )
    sessions = [session for session in opened if isinstance(session, TypingSession)]
    failures = [error for error in opened if isinstance(error, BaseException)]
    if failures:
        await asyncio.gather(*(close_session(session) for session in sessions))
        raise RuntimeError(
            f"{len(failures)} of {len(texts)} sessions did not start: {failures[0]!r}"
        )
    print(f"  {len(texts)} sessions started in {time.perf_counter() - connected:.1f} s", flush=True)
    return sessions


async def idle_cpu_per_s(pid: int) -> float:
    """The process's CPU seconds per second over `IDLE_S` of doing nothing asked."""
    idle0 = cpu_seconds(pid)
    await asyncio.sleep(IDLE_S)
    return (cpu_seconds(pid) - idle0) / IDLE_S


async def type_all(
    procs: Processes,
    sessions: list[TypingSession],
    interval: float,
    seconds: float,
    ramp_s: float,
    seed: int,
) -> Typed:
    """Every session types for `seconds`, starting at a seeded moment within `ramp_s`; then
    waits until the orchestrator has handled every keystroke and the fake has gone quiet."""
    pid = procs.orchestrator.pid
    await settle(procs.fake_url, quiet_s=0.5)  # the context warm-ups have landed
    idle_per_s = await idle_cpu_per_s(pid)  # with N quiet sessions open
    loop = asyncio.get_running_loop()
    begin = loop.time()
    cpu0 = cpu_seconds(pid)
    typing = []
    for session in sessions:
        rng = random.Random(seed + 7919 * session.index)
        start = begin + rng.uniform(0, ramp_s)
        typing.append(asyncio.create_task(session.type(rng, interval, 0.5, start, start + seconds)))
    await asyncio.gather(*typing)
    typed = loop.time()
    await asyncio.wait_for(
        asyncio.gather(*(session.drained.wait() for session in sessions)), timeout=300
    )
    drained = loop.time()
    cpu_s = cpu_seconds(pid) - cpu0
    rss_after = rss_kib(pid)
    await settle(procs.fake_url)  # typing-pause warm-ups of the last keystrokes
    return Typed(begin, typed, drained, cpu_s, idle_per_s, rss_after)


async def fake_records(fake_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as http:
        records: list[dict[str, Any]] = (await http.get(f"{fake_url}/fake/requests")).json()
    return records


def save_raw(path: Path, records: list[dict[str, Any]], sessions: list[TypingSession]) -> None:
    """The fake's records and each session's sends and frames, for a later look."""
    raw = {
        "records": records,
        "sessions": {
            s.session_id: {"sends": s.sends, "warm_frames": s.warm_frames, "errors": s.errors}
            for s in sessions
        },
    }
    path.write_text(json.dumps(raw))


def measured(
    procs: Processes,
    sessions: list[TypingSession],
    records: list[dict[str, Any]],
    baseline: Baseline,
    typed: Typed,
    keys_per_s: float,
    seconds: float,
) -> Result:
    """The run's figures from what the fake recorded and the sessions saw."""
    n = len(sessions)
    latencies, context, keystroke, pause, finals = classify(records, sessions)
    keystrokes = sum(len(session.sends) for session in sessions)
    head_tokens = next(
        (r["prompt_tokens"] for r in records if str(r.get("request_id")).endswith("-0-0")), None
    )
    idle_cpu_s = typed.idle_cpu_per_s * (typed.drained - typed.begin)
    return Result(
        sessions=n,
        keystrokes=keystrokes,
        skipped=sum(session.skipped for session in sessions),
        seconds=seconds,
        target_keys_per_s=keys_per_s * n,
        warmups=context + keystroke + pause,
        context_warmups=context,
        keystroke_warmups=keystroke,
        pause_warmups=pause,
        finals=finals,
        latencies_ms=latencies,
        cpu_us_per_key=typed.cpu_s / max(keystrokes, 1) * 1e6,
        idle_cpu_ms_per_s=typed.idle_cpu_per_s * 1000,
        net_cpu_us_per_key=(typed.cpu_s - idle_cpu_s) / max(keystrokes, 1) * 1e6,
        load=os.getloadavg()[0],
        kib_per_session=(typed.rss_after_kib - baseline.rss_kib) / n,
        rss_before_kib=baseline.rss_kib,
        rss_after_kib=typed.rss_after_kib,
        drain_s=typed.drained - typed.typed,
        head_tokens=head_tokens,
        client_cpu_s=time.process_time() - baseline.client_cpu_s,
        fake_cpu_s=cpu_seconds(procs.fake.pid) - baseline.fake_cpu_s,
        errors=dict(
            Counter(str(error.get("code")) for session in sessions for error in session.errors)
        ),
    )


async def run_sessions(
    procs: Processes,
    n: int,
    system: str,
    keys_per_s: float,
    seconds: float,
    ramp_s: float,
    seed: int,
    compression: bool,
) -> Result:
    """N sessions open, type for `seconds` and close; the figures of that run."""
    min_chars = int(keys_per_s * seconds * 2) + 50
    texts = [question(random.Random(seed * 1_000_003 + i), min_chars) for i in range(n)]
    url = procs.app_url.replace("http://", "ws://") + "/ws/session"
    baseline = Baseline(
        client_cpu_s=time.process_time(),
        fake_cpu_s=cpu_seconds(procs.fake.pid),
        rss_kib=rss_kib(procs.orchestrator.pid),
    )
    sessions = await open_sessions(url, texts, system, compression)
    try:
        typed = await type_all(procs, sessions, 1.0 / keys_per_s, seconds, ramp_s, seed)
    finally:
        await asyncio.gather(*(close_session(session) for session in sessions))
    records = await fake_records(procs.fake_url)
    save_raw(procs.logs / f"run-N{n}.json", records, sessions)
    return measured(procs, sessions, records, baseline, typed, keys_per_s, seconds)


def run_async(coroutine: Coroutine[Any, Any, Result]) -> Result:
    """On uvloop where installed (uvicorn's `standard` extra brings it), as the server runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)
