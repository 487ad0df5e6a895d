"""The tiny synthetic model on the real vLLM: random weights from a config alone
(`--load-format dummy`, added by the launcher), served next to any other vLLM on this machine
(its own ports, a 1 GiB KV cache), greedy and deterministic, and usable through the product."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import free_port, serve_in_thread
from vllm_launch.engine_env import EngineEnv, engine_root
from vllm_launch.model import default_model_dir
from vllm_launch.server import EngineProcess, ServeOptions
from vllm_launch.synthetic import SHAPES, write_synthetic

pytestmark = pytest.mark.engine

NAME = "synthetic-tiny"


@pytest.fixture(scope="module")
def tiny_model(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = default_model_dir(data_dir)
    if not (base / "config.json").is_file():
        pytest.fail(f"no default model folder at {base}: run `make setup-engine` first")
    return write_synthetic(tmp_path_factory.mktemp("models") / NAME, "tiny", base)


@pytest.fixture(scope="module")
def tiny_url(data_dir: Path, tiny_model: Path) -> Iterator[str]:
    engine = EngineEnv(engine_root(data_dir, "cpu"))
    opts = ServeOptions(
        model=str(tiny_model),
        served_model_name=NAME,
        port=free_port(),
        kv_cache_gib=1,  # beside the shared engine, which holds the default share
        enforce_eager=True,
        max_model_len=4096,
        kv_events_port=free_port(),
        startup_timeout_s=600.0,
    )
    log = data_dir / "logs" / f"test-synthetic-{opts.port}.log"
    with EngineProcess(engine, opts, log) as process:
        assert "--load-format" in process.command()
        yield opts.base_url


def complete(url: str, **body: Any) -> dict[str, Any]:
    body = {"model": NAME, "temperature": 0, "max_tokens": 16, "ignore_eos": True, **body}
    reply = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    reply.raise_for_status()
    data: dict[str, Any] = reply.json()
    return data


def test_the_shape_is_served(tiny_url: str) -> None:
    models = httpx.get(f"{tiny_url}/v1/models", timeout=10).json()["data"]
    assert [model["id"] for model in models] == [NAME]
    assert models[0]["max_model_len"] == 4096
    assert SHAPES["tiny"].max_positions >= 4096


def test_two_greedy_requests_give_the_same_tokens(tiny_url: str) -> None:
    prompt = "SELECT name FROM customers WHERE"
    first = complete(tiny_url, prompt=prompt, return_token_ids=True)
    second = complete(tiny_url, prompt=prompt, return_token_ids=True)
    ids = first["choices"][0]["token_ids"]
    assert len(ids) == 16  # noise, but 16 tokens of it
    assert second["choices"][0]["token_ids"] == ids
    assert first["usage"]["completion_tokens"] == 16


def test_a_repeated_prompt_hits_the_prefix_cache(tiny_url: str) -> None:
    prompt = list(range(1000, 1200))  # 200 token ids: six full blocks of 32
    complete(tiny_url, prompt=prompt, max_tokens=1, cache_salt="synthetic")
    again = complete(tiny_url, prompt=prompt, max_tokens=1, cache_salt="synthetic")
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == 192


def test_a_chat_through_the_orchestrator(tiny_url: str, tiny_model: Path, tmp_path: Path) -> None:
    settings = Settings(
        vllm_url=tiny_url, data_dir=tmp_path, tokenizer=str(tiny_model), enable_database=False
    )
    with serve_in_thread(create_app(settings)) as app_url:
        client = openai.OpenAI(base_url=f"{app_url}/v1", api_key="unused", max_retries=0)
        asks = [{"role": "user", "content": "How many orders shipped last week?"}]
        replies = [
            client.chat.completions.create(model=NAME, messages=asks, max_tokens=8, temperature=0)  # type: ignore[arg-type]
            for _ in range(2)
        ]
        client.close()
    texts = [reply.choices[0].message.content for reply in replies]
    assert texts[0] == texts[1]
    assert all(reply.usage and reply.usage.completion_tokens > 0 for reply in replies)
