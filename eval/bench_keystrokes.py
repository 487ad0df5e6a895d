"""Keystroke load on the orchestrator: N typing sessions against a fake vLLM.

    python -m eval.bench_keystrokes [--sessions 50 500] [--keys-per-s 8] [--seconds 20]
                                    [--ramp-s 5]

For each N: the fake vLLM (`eval/fake_vllm.py`) and the orchestrator (`python -m orchestrator`,
default tokenizer, no database) run in two subprocesses on free ports. This process opens N
`/ws/session` WebSockets; each sends `start` with the same ~1,000-token system prompt (padded
so that the chat head is a whole number of KV blocks: the first stable word typed, and every
32 tokens after it, makes a keystroke warm-up), then types its own deterministic question key
by key (one `input` frame with the whole text so far per key, at `--keys-per-s` with seeded
jitter) for `--seconds`, starting at a seeded random moment within the first `--ramp-s` (people
do not all type their first word in the same second; `--ramp-s 0` is that worst case: every
session's first warm-up lands in the same second). A keystroke that falls more than one
interval behind its schedule is skipped, not sent in a burst, so the achieved rate says whether
this client kept up.

Measured per N:

- dispatch latency: when the fake received the warm-up `warm-<session>-<seq>-<n>` minus when
  this process sent keystroke `seq` (both `time.time()`; the context warm-up, seq 0, and
  typing-pause warm-ups, known from the `warm` frames' `submit_ready`, are left out);
- CPU per keystroke: the orchestrator's user+system CPU time (/proc/<pid>/stat) from the first
  keystroke until it has handled the last one (each session ends with a bad frame whose error
  answer comes after all its earlier frames), divided by the keystrokes sent;
- memory per session: the orchestrator's RSS after all sessions started and typed, minus its
  RSS before they connected, divided by N.

`--profile DIR` runs the orchestrator under cProfile (slower: its figures are not the ones
to quote) and writes `DIR/orchestrator-N<n>.prof`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from eval.serving import free_port
from orchestrator.core.prompt import PromptRenderer
from orchestrator.errors import SetupError
from orchestrator.settings import Settings
from vllm_launch.signals import exits_on_signals, spawn_group

ROOT = Path(__file__).resolve().parent.parent
WARMUPS_PER_SECOND = 100_000  # so the global gate never holds a warm-up back
MODEL_NAME = "SmolLM2-135M-Instruct"
BLOCK_SIZE = 32  # what the fake vLLM's /metrics says
IDLE_S = 3.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

WORDS_TEXT = (
    "which customers orders products invoices placed bought returned shipped more than three "
    "five ten the last quarter month year total value average price per customer region "
    "category sorted from highest lowest and with without any of in for by show list count "
    "sum all distinct where whose between before after during each every only"
)
WORDS = tuple(WORDS_TEXT.split())


# --- the texts -------------------------------------------------------------------------------


def system_prompt() -> str:
    """A deterministic schema description of about 1,000 tokens (SmolLM2's tokenizer)."""
    lines = [
        "You translate questions about a shop's database into one PostgreSQL query.",
        "Answer with the SQL only. The schema:",
    ]
    tables = {
        "customers": ["customer_id", "name", "email", "region", "signup_date", "segment"],
        "orders": ["order_id", "customer_id", "order_date", "status", "total", "currency"],
        "order_items": ["order_id", "product_id", "quantity", "unit_price", "discount"],
        "products": ["product_id", "name", "category", "price", "supplier_id", "stock"],
        "suppliers": ["supplier_id", "name", "country", "rating", "contact_email"],
        "invoices": ["invoice_id", "order_id", "issued_on", "due_on", "amount", "paid"],
        "payments": ["payment_id", "invoice_id", "paid_on", "amount", "method"],
        "returns": ["return_id", "order_id", "product_id", "returned_on", "reason"],
        "shipments": ["shipment_id", "order_id", "carrier", "shipped_on", "delivered_on"],
        "reviews": ["review_id", "product_id", "customer_id", "stars", "written_on", "body"],
        "categories": ["category", "parent_category", "description"],
        "regions": ["region", "country", "manager", "target"],
    }
    types = ("integer", "text", "date", "numeric(12,2)", "boolean", "varchar(64)")
    for index, (table, columns) in enumerate(tables.items()):
        lines.append(f"CREATE TABLE {table} (")
        for position, column in enumerate(columns):
            kind = "integer" if column.endswith("_id") else types[(index + position) % len(types)]
            key = " PRIMARY KEY" if position == 0 and column.endswith("_id") else ""
            lines.append(f"  {column} {kind}{key},  -- the {column.replace('_', ' ')} of {table}")
        lines.append(");")
    lines.append("Use only these tables and columns; join on the id columns.")
    return "\n".join(lines)


def aligned_system_prompt(tokenizer_path: str, block_size: int) -> tuple[str, int]:
    """`system_prompt()`, padded so the chat head (what the context warm-up sends) is a whole
    number of blocks: then the first stable word typed adds a usable block, and every
    `block_size` tokens after it, so each session makes keystroke warm-ups early on.
    Returns the prompt and the head's length in tokens."""
    renderer = PromptRenderer.load(tokenizer_path)
    base = system_prompt()
    for pad in range(4 * block_size):
        text = base + ("\nNotes:" + " ok" * pad if pad else "")
        head = len(renderer.session_prompt(text).head_tokens)
        if head % block_size == 0:
            return text, head
    return base, len(renderer.session_prompt(base).head_tokens)


def question(rng: random.Random, min_chars: int) -> str:
    words: list[str] = []
    while sum(len(word) + 1 for word in words) < min_chars:
        words.append(rng.choice(WORDS))
    return " ".join(words).capitalize() + "?"


# --- the orchestrator process ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its threads included), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_kib(pid: int) -> int:
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * PAGE_KIB


@dataclass
class Processes:
    fake: subprocess.Popen[bytes]
    orchestrator: subprocess.Popen[bytes]
    fake_url: str
    app_url: str
    logs: Path


def sources_digest() -> str:
    """A fingerprint of the orchestrator's code that was measured."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "orchestrator").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"{url}: the process exited with {process.returncode}\n{log_tail(log)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout_s} s\n{log_tail(log)}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> int:
    """Ctrl-C (uvicorn shuts down gracefully, then re-raises the signal: Python's own SIGINT
    handler turns it into KeyboardInterrupt, a clean exit that lets cProfile write its file;
    SIGTERM would end the process there); SIGTERM, then SIGKILL, if it does not stop."""
    for ask, wait_s in ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            break
        process.send_signal(ask)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait_s)
    return process.returncode


@contextlib.contextmanager
def started(sessions: int, logs: Path, profile: Path | None) -> Iterator[Processes]:
    """The fake vLLM and the orchestrator, each in its own process; both stopped after."""
    fake_port, app_port = free_port(), free_port()
    fake_log, app_log = logs / f"fake-vllm-N{sessions}.log", logs / f"orchestrator-N{sessions}.log"
    fake_cmd = [sys.executable, "-m", "eval.fake_vllm", "--port", str(fake_port)]
    fake_cmd += ["--model", MODEL_NAME, "--block-size", str(BLOCK_SIZE)]
    env = {
        **os.environ,
        "PREFILL_HOST": "127.0.0.1",
        "PREFILL_PORT": str(app_port),
        "PREFILL_VLLM_URL": f"http://127.0.0.1:{fake_port}",
        "PREFILL_ENABLE_DATABASE": "false",
        "PREFILL_WARMUPS_PER_SECOND": str(WARMUPS_PER_SECOND),
        # Every session here is the anonymous tenant: let all N in (default 200 per tenant).
        "PREFILL_MAX_SESSIONS_PER_TENANT": str(max(sessions, 200)),
        "PREFILL_MAX_SESSIONS": str(max(sessions, 2000)),
    }
    app_cmd = [sys.executable, "-m", "orchestrator"]
    if profile is not None:
        out = profile / f"orchestrator-N{sessions}.prof"
        app_cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "orchestrator"]
    with fake_log.open("wb") as fake_out, app_log.open("wb") as app_out:
        fake = spawn_group(fake_cmd, fake_out, cwd=ROOT)
        orchestrator: subprocess.Popen[bytes] | None = None
        try:
            fake_url = f"http://127.0.0.1:{fake_port}"
            wait_for(f"{fake_url}/v1/models", fake, fake_log, 60)
            orchestrator = spawn_group(app_cmd, app_out, env, ROOT)
            app_url = f"http://127.0.0.1:{app_port}"
            wait_for(f"{app_url}/health", orchestrator, app_log, 120)
            yield Processes(fake, orchestrator, fake_url, app_url, logs)
        finally:
            codes = []
            if orchestrator is not None:
                codes.append(f"orchestrator exited {stop(orchestrator)}")
            codes.append(f"fake vLLM exited {stop(fake)}")
            print(f"  ({', '.join(codes)})", flush=True)


# --- the sessions ----------------------------------------------------------------------------


@dataclass
class TypingSession:
    index: int
    ws: ClientConnection
    text: str
    session_id: str = ""
    sends: dict[int, float] = field(default_factory=dict)  # seq -> time.time() of the send
    skipped: int = 0  # keystrokes dropped because this client fell behind its schedule
    warm_frames: list[tuple[int, bool]] = field(default_factory=list)  # (seq, submit_ready)
    errors: list[dict[str, Any]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._read()
        self.ready.set()  # nothing more will come: release whoever waits
        self.drained.set()

    async def _read(self) -> None:
        async for message in self.ws:
            frame = json.loads(message)
            kind = frame.get("type")
            if kind == "warm":
                self.warm_frames.append((int(frame["seq"]), bool(frame["submit_ready"])))
            elif kind == "ready":
                self.session_id = str(frame["session_id"])
                self.ready.set()
            elif kind == "error" and "'barrier'" in str(frame.get("message")):
                self.drained.set()
            elif kind == "error":
                self.errors.append(frame)

    async def type(
        self, rng: random.Random, interval: float, jitter: float, start: float, end: float
    ) -> None:
        """Type `self.text` key by key from `start` until the loop's clock reaches `end`."""
        due = start + rng.uniform(0, interval)
        loop = asyncio.get_running_loop()
        seq = 0
        while True:
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
                now = loop.time()
            if now >= end or seq >= len(self.text):
                break
            if now > due + interval:  # fell behind by a whole interval: skip, do not burst
                self.skipped += int((now - due) / interval)
                due = now
            seq += 1
            frame = json.dumps({"type": "input", "text": self.text[:seq], "seq": seq})
            self.sends[seq] = time.time()
            await self.ws.send(frame)
            due += interval * rng.uniform(1 - jitter, 1 + jitter)
        # Handled after every earlier frame: its error answer says the session is drained.
        await self.ws.send('{"type":"barrier"}')


async def open_session(
    url: str, index: int, text: str, system: str, gate: asyncio.Semaphore, compression: bool
) -> TypingSession:
    async with gate:
        ws = await connect(
            url,
            open_timeout=60,
            close_timeout=5,
            proxy=None,
            compression="deflate" if compression else None,
        )
        session = TypingSession(index, ws, text)
        session.reader = asyncio.create_task(session.read())
        await ws.send(json.dumps({"type": "start", "context": {"system": system}}))
        await asyncio.wait_for(session.ready.wait(), timeout=60)
        if not session.session_id:
            await close_session(session)
            raise RuntimeError(f"session {index} was not started: {session.errors}")
        return session


async def close_session(session: TypingSession) -> None:
    with contextlib.suppress(ConnectionClosed, OSError):
        await session.ws.close()
    if session.reader is not None:
        await session.reader


# --- one run ---------------------------------------------------------------------------------


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


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


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
    pid = procs.orchestrator.pid
    interval = 1.0 / keys_per_s
    min_chars = int(keys_per_s * seconds * 2) + 50
    texts = [question(random.Random(seed * 1_000_003 + i), min_chars) for i in range(n)]
    url = procs.app_url.replace("http://", "ws://") + "/ws/session"
    client_cpu0 = time.process_time()
    fake_cpu0 = cpu_seconds(procs.fake.pid)

    rss_before = rss_kib(pid)
    gate = asyncio.Semaphore(25)
    connected = time.perf_counter()
    opened = await asyncio.gather(
        *(open_session(url, i, texts[i], system, gate, compression) for i in range(n)),
        return_exceptions=True,
    )
    sessions = [session for session in opened if isinstance(session, TypingSession)]
    failures = [error for error in opened if isinstance(error, BaseException)]
    if failures:
        await asyncio.gather(*(close_session(session) for session in sessions))
        raise RuntimeError(f"{len(failures)} of {n} sessions did not start: {failures[0]!r}")
    print(f"  {n} sessions started in {time.perf_counter() - connected:.1f} s", flush=True)
    try:
        await settle(procs.fake_url, quiet_s=0.5)  # the context warm-ups have landed
        idle0 = cpu_seconds(pid)  # what the orchestrator burns with N quiet sessions open
        await asyncio.sleep(IDLE_S)
        idle_per_s = (cpu_seconds(pid) - idle0) / IDLE_S

        loop = asyncio.get_running_loop()
        begin = loop.time()
        cpu0 = cpu_seconds(pid)
        typing = []
        for session in sessions:
            rng = random.Random(seed + 7919 * session.index)
            start = begin + rng.uniform(0, ramp_s)
            typing.append(
                asyncio.create_task(session.type(rng, interval, 0.5, start, start + seconds))
            )
        await asyncio.gather(*typing)
        typed = loop.time()
        await asyncio.wait_for(
            asyncio.gather(*(session.drained.wait() for session in sessions)), timeout=300
        )
        drained = loop.time()
        cpu1 = cpu_seconds(pid)
        rss_after = rss_kib(pid)
        await settle(procs.fake_url)  # typing-pause warm-ups of the last keystrokes
    finally:
        await asyncio.gather(*(close_session(session) for session in sessions))
    async with httpx.AsyncClient(timeout=30) as http:
        records: list[dict[str, Any]] = (await http.get(f"{procs.fake_url}/fake/requests")).json()

    latencies, context, keystroke, pause, finals = classify(records, sessions)
    raw = {
        "records": records,
        "sessions": {
            s.session_id: {"sends": s.sends, "warm_frames": s.warm_frames, "errors": s.errors}
            for s in sessions
        },
    }
    (procs.logs / f"run-N{n}.json").write_text(json.dumps(raw))
    keystrokes = sum(len(session.sends) for session in sessions)
    head_tokens = next(
        (r["prompt_tokens"] for r in records if str(r.get("request_id")).endswith("-0-0")), None
    )
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
        cpu_us_per_key=(cpu1 - cpu0) / max(keystrokes, 1) * 1e6,
        idle_cpu_ms_per_s=idle_per_s * 1000,
        net_cpu_us_per_key=(cpu1 - cpu0 - idle_per_s * (drained - begin))
        / max(keystrokes, 1)
        * 1e6,
        load=os.getloadavg()[0],
        kib_per_session=(rss_after - rss_before) / n,
        rss_before_kib=rss_before,
        rss_after_kib=rss_after,
        drain_s=drained - typed,
        head_tokens=head_tokens,
        client_cpu_s=time.process_time() - client_cpu0,
        fake_cpu_s=cpu_seconds(procs.fake.pid) - fake_cpu0,
        errors=dict(
            Counter(str(error.get("code")) for session in sessions for error in session.errors)
        ),
    )


def run_async(coroutine: Coroutine[Any, Any, Result]) -> Result:
    """On uvloop where installed (uvicorn's `standard` extra brings it), as the server runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


# --- the report ------------------------------------------------------------------------------


def report(results: list[Result]) -> None:
    header = (
        f"{'N':>5}{'keys sent':>11}{'keys/s (target)':>18}{'warm-ups':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'CPU us/key':>12}{'KiB/session':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rate = f"{r.keys_per_s:.0f} ({r.target_keys_per_s:.0f})"
        print(
            f"{r.sessions:>5}{r.keystrokes:>11}{rate:>18}{r.warmups:>10}"
            f"{percentile(r.latencies_ms, 50):>9.2f}{percentile(r.latencies_ms, 99):>9.2f}"
            f"{r.cpu_us_per_key:>12.0f}{r.kib_per_session:>13.1f}"
        )
    print()
    for r in results:
        print(
            f"N={r.sessions}: keystrokes skipped by the client {r.skipped}; "
            f"warm-ups: {r.context_warmups} context + {r.keystroke_warmups} keystroke "
            f"({len(r.latencies_ms)} latency samples, max "
            f"{max(r.latencies_ms, default=float('nan')):.1f} ms) + {r.pause_warmups} "
            f"typing-pause; final requests {r.finals}; error frames {r.errors or 'none'}; "
            f"orchestrator drained {r.drain_s * 1000:.0f} ms after the last key; "
            f"RSS {r.rss_before_kib / 1024:.1f} -> {r.rss_after_kib / 1024:.1f} MiB; "
            f"orchestrator idle CPU {r.idle_cpu_ms_per_s:.1f} ms/s, CPU per key less idle "
            f"{r.net_cpu_us_per_key:.0f} us; CPU s: client {r.client_cpu_s:.1f}, "
            f"fake vLLM {r.fake_cpu_s:.1f}; load average {r.load:.2f}; "
            f"context tokens {r.head_tokens}"
        )


@exits_on_signals
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_keystrokes", description=__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--keys-per-s", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="each session types this long")
    parser.add_argument(
        "--ramp-s", type=float, default=5.0, help="sessions start typing within this window"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="do not offer permessage-deflate (browsers do offer it)",
    )
    parser.add_argument("--profile", type=Path, help="run the orchestrator under cProfile")
    args = parser.parse_args(argv)
    default_tokenizer = Settings(enable_database=False).tokenizer_path
    try:
        system, head_tokens = aligned_system_prompt(default_tokenizer, BLOCK_SIZE)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="bench-keystrokes-"))
    print(
        f"orchestrator: PREFILL_WARMUPS_PER_SECOND={WARMUPS_PER_SECOND} (global gate out of "
        f"the way), PREFILL_MAX_SESSIONS_PER_TENANT=max(N, 200), PREFILL_ENABLE_DATABASE=false, "
        f"tokenizer {default_tokenizer}, sources sha256 {sources_digest()}; "
        f"client: {args.keys_per_s:g} keys/s per session (jitter +-50%) for {args.seconds:g} s, "
        f"starting within {args.ramp_s:g} s, "
        f"permessage-deflate {'off' if args.no_compression else 'offered'}; "
        f"system prompt: chat head of {head_tokens} tokens; logs {logs}",
        flush=True,
    )
    results: list[Result] = []
    for n in args.sessions:
        print(f"N={n}:", flush=True)
        with started(n, logs, args.profile) as procs:
            results.append(
                run_async(
                    run_sessions(
                        procs,
                        n,
                        system,
                        args.keys_per_s,
                        args.seconds,
                        args.ramp_s,
                        args.seed,
                        not args.no_compression,
                    )
                )
            )
    print()
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
