"""The real vLLM's 400 reaches the client as a 400 on every path: the WebSocket's `error`
frame, the passthrough (the stock `openai` SDK), and a session's chat completion over HTTP.

The refusal is vLLM's own: a prompt longer than the model's context. The orchestrator checks
the length itself when it knows the context, so here it is told a larger one (the engine's
`/v1/models`, rewritten on its way in: an engine restarted with a smaller context would do
the same), and the prompt reaches vLLM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import websockets
from openai import AsyncOpenAI

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import serve_in_thread
from tests.conftest import Engine

pytestmark = pytest.mark.engine
BELIEVED = 1_000_000  # the context length the orchestrator is told
TOO_LONG = " count" * 9000  # about 9,000 tokens: past the model's 8,192


class LargerContext(httpx.AsyncBaseTransport):
    """The network to the real vLLM, except that `/v1/models` says a larger context."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/v1/models":
            return response
        body = json.loads(await response.aread())
        for model in body["data"]:
            model["max_model_len"] = BELIEVED
        return httpx.Response(response.status_code, json=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def url(engine: Engine, data_dir: Path) -> Iterator[str]:
    settings = Settings(vllm_url=engine.url, data_dir=data_dir, enable_database=False, max_tokens=8)
    app = create_app(settings, upstream_transport=LargerContext())
    with serve_in_thread(app) as served:
        yield served


def vllm_400(error: openai.APIStatusError) -> str:
    """The message of vLLM's refusal, in our envelope with its status."""
    assert error.status_code == 400
    envelope: dict[str, Any] = error.response.json()["error"]
    assert envelope["code"] == "invalid_request"
    assert envelope["type"] == "invalid_request_error"
    assert "maximum context length" in envelope["message"], envelope
    return str(envelope["message"])


async def test_a_prompt_vllm_refuses_is_an_error_frame_with_status_400(url: str) -> None:
    async with websockets.connect(url.replace("http://", "ws://") + "/ws/session") as ws:
        await ws.send(json.dumps({"type": "start", "warmups": "off"}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        await ws.send(json.dumps({"type": "submit", "text": TOO_LONG, "seq": 1}))
        error = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "submit", "text": "Say hello.", "seq": 2}))
        frames = [json.loads(await ws.recv())]
        while frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(await ws.recv()))
    print("error frame:", error)
    assert (error["type"], error["status"], error["code"]) == ("error", 400, "invalid_request")
    assert "maximum context length" in error["message"]
    assert frames[-1]["type"] == "done", frames[-1]  # the session is usable again


async def test_a_prompt_vllm_refuses_is_a_400_on_the_passthrough(url: str) -> None:
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
        model = (await client.models.list()).data[0].id
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as refused:
                await client.completions.create(
                    model=model, prompt=TOO_LONG, max_tokens=4, stream=stream
                )
            print("completions, stream", stream, ":", vllm_400(refused.value))
            with pytest.raises(openai.BadRequestError) as chat_refused:
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": TOO_LONG}], stream=stream
                )
            print("chat, stream", stream, ":", vllm_400(chat_refused.value))


async def test_a_prompt_vllm_refuses_is_a_400_for_a_session_over_http(url: str) -> None:
    async with websockets.connect(url.replace("http://", "ws://") + "/ws/session") as ws:
        await ws.send(json.dumps({"type": "start", "warmups": "off"}))
        ready = json.loads(await ws.recv())
        headers = {"X-Session-Id": ready["session_id"]}
        async with AsyncOpenAI(
            base_url=f"{url}/v1", api_key="unused", max_retries=0, default_headers=headers
        ) as client:
            for stream in (False, True):
                with pytest.raises(openai.BadRequestError) as refused:
                    await client.chat.completions.create(
                        model="ignored",
                        messages=[{"role": "user", "content": TOO_LONG}],
                        stream=stream,
                    )
                print("session chat, stream", stream, ":", vllm_400(refused.value))
            answer = await client.chat.completions.create(
                model="ignored", messages=[{"role": "user", "content": "Say hello."}]
            )
    assert answer.choices[0].message.content  # the session answers again
