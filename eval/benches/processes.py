"""The processes a fake-upstream benchmark measures: the fake vLLM and the orchestrator, each in
its own subprocess on a free port, and what /proc says about them (CPU time, RSS)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from testkit.serving import free_port
from vllm_launch.signals import spawn_group

ROOT = Path(__file__).resolve().parents[2]
WARMUPS_PER_SECOND = 100_000  # so the global gate never holds a warm-up back
MODEL_NAME = "SmolLM2-135M-Instruct"
BLOCK_SIZE = 32  # what the fake vLLM's /metrics says
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


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
    fake_cmd = [sys.executable, "-m", "testkit.fake_vllm", "--port", str(fake_port)]
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
