"""A command that starts a real vLLM, interrupted (Ctrl-C) while vLLM runs its engine core,
exits within seconds and leaves no process of the engine behind. It starts an engine of its
own (eager, interrupted before it finishes loading): the shared one is not touched."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from testkit.serving import free_port
from tests.conftest import ROOT
from vllm_launch.server import answers

pytestmark = pytest.mark.engine

API_SERVER = "vllm.entrypoints.openai.api_server"


def engine_processes(command: psutil.Process) -> list[psutil.Process]:
    """The command's vLLM API server and everything under it (empty until it runs)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in command.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if API_SERVER in " ".join(child.cmdline()):
                    return [child, *child.children(recursive=True)]
    return []


def is_engine_core(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        return "EngineCore" in process.name() + " ".join(process.cmdline())
    return False


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie (killed, orphaned and not yet collected by init)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return process.status() != psutil.STATUS_ZOMBIE
    return False


def group_of(pgid: int) -> list[int]:
    alive = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
    return alive


def test_vllm_launch_serve_stops_its_engine_on_ctrl_c(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "vllm_launch", "--data-dir", str(data_dir), "serve"]
    command += ["--port", str(port), "--no-kv-events", "--enforce-eager", "--kv-cache-gib", "1"]
    log = tmp_path / "serve.out"
    with log.open("wb") as out:
        serve = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        # Wait until vLLM runs its engine core (or answers): the process that was left busy.
        deadline = time.monotonic() + 300
        while not any(map(is_engine_core, engine := engine_processes(psutil.Process(serve.pid)))):
            assert serve.poll() is None, log.read_text()
            assert not answers(f"http://127.0.0.1:{port}"), "vLLM answers: no engine core seen"
            assert time.monotonic() < deadline, "vLLM did not start its engine core"
            time.sleep(0.5)
        server = engine[0].pid
        assert os.getpgid(server) == server != os.getpgid(serve.pid)
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=30) == 0, log.read_text()
    finally:
        serve.kill()
        serve.wait()
    deadline = time.monotonic() + 10
    while (left := [p.pid for p in engine if running(p)] + group_of(server)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert left == [], f"left running: {left}"
    assert "vLLM stopped." in log.read_text()
