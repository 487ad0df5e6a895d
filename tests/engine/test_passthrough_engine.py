"""The stock `openai` SDK against the orchestrator in front of the real vLLM."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import serve_in_thread

pytestmark = pytest.mark.engine

MODEL = "SmolLM2-135M-Instruct"
DOCUMENT = "Answer from this document only. " + " ".join(
    f"Fact {i}: shelf {i} holds {i * 7} boxes of item {i * 3}." for i in range(60)
)


@pytest.fixture(scope="module")
def app_url(vllm_url: str, data_dir: Path) -> Iterator[str]:
    settings = Settings(vllm_url=vllm_url, data_dir=data_dir, enable_database=False)
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
def client(app_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{app_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def async_client(app_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{app_url}/v1", api_key="unused", max_retries=0)


def test_models_and_chat(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0


def test_streamed_completion_arrives_in_pieces(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model=MODEL,
        prompt="Count slowly: one, two, three,",
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    texts = [chunk.choices[0].text for chunk in chunks if chunk.choices]
    assert len(texts) >= 2
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12


async def test_async_chat_stream(async_client: openai.AsyncOpenAI) -> None:
    stream = await async_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        stream=True,
    )
    pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    assert len(pieces) >= 2
    reply = await async_client.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 2


def test_errors_come_in_the_openai_envelope(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    assert missing.value.code == "not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt="x", max_tokens=-1)
    assert bad.value.code == "invalid_request"
    assert bad.value.param == "max_tokens"


def test_warm_then_chat_hits_the_cache(client: openai.OpenAI, app_url: str) -> None:
    system = {"role": "system", "content": DOCUMENT}
    warmed = httpx.post(f"{app_url}/v1/warm", json={"messages": [system]}, timeout=120).json()
    assert warmed["cached_tokens"] >= warmed["prompt_tokens"] - warmed["block_size"]
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[system, {"role": "user", "content": "How many boxes are on shelf 4?"}],
        max_tokens=4,
    )
    assert reply.usage is not None
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == warmed["cached_tokens"]


def test_client_salt_is_not_trusted(client: openai.OpenAI, app_url: str) -> None:
    system = {"role": "system", "content": DOCUMENT + " Second copy."}
    httpx.post(f"{app_url}/v1/warm", json={"messages": [system]}, timeout=120)
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[system, {"role": "user", "content": "Shelf 2?"}],
        max_tokens=2,
        extra_body={"cache_salt": "chosen-by-the-client"},
    )
    assert reply.usage is not None
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens > 0  # the server's salt was used


async def running_requests(vllm_url: str) -> float:
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{vllm_url}/metrics")).text
    found = re.findall(r"^vllm:num_requests_running\{[^}]*\} ([0-9.]+)", metrics, re.MULTILINE)
    return sum(float(value) for value in found)


async def test_disconnect_mid_stream_aborts_the_request(app_url: str, vllm_url: str) -> None:
    body = {"model": MODEL, "prompt": "Write a long story.", "max_tokens": 2000, "stream": True}
    async with (
        httpx.AsyncClient(timeout=60) as http,
        http.stream("POST", f"{app_url}/v1/completions", json=body) as response,
    ):
        assert response.status_code == 200
        received = 0
        async for _ in response.aiter_lines():
            received += 1
            if received >= 5:
                break
    for _ in range(50):  # 10 s; left running, the request would take minutes
        if await running_requests(vllm_url) == 0:
            break
        await asyncio.sleep(0.2)
    assert await running_requests(vllm_url) == 0
