"""Answer before Enter on the real vLLM: a question typed key by key that ends with `?` is
answered speculatively, Enter comes 240 ms later (as a `submit`, or as a chat completion over
HTTP with the session's X-Session-Id), and the attached answer equals a cold one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import serve_in_thread
from tests.conftest import Engine
from tests.engine.conftest import kv_events_of

pytestmark = pytest.mark.engine

SYSTEM = "You are a helpful assistant. Answer in full sentences."
BUDGET = 4  # tokens speculated before the submit: the continuation must pick up after them
ENTER_AFTER_S = 0.24


@pytest.fixture(scope="module")
def speculating_url(engine: Engine, data_dir: Path) -> Iterator[str]:
    settings = Settings(
        vllm_url=engine.url,
        **kv_events_of(engine),
        data_dir=data_dir,
        enable_database=False,
        max_tokens=48,
        speculate="on",
        speculate_tokens=BUDGET,
        ws_frames_per_second=1000,
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


@contextlib.asynccontextmanager
async def opened(url: str, **start: Any) -> AsyncIterator[websockets.ClientConnection]:
    """A session on the app at `url`, its `start` frame sent under a fresh cache namespace."""
    ws_url = url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        first = {"type": "start", "context": {"system": SYSTEM}, **start}
        await ws.send(json.dumps({**first, "cache_namespace": secrets.token_hex(8)}))
        yield ws


async def type_keys(ws: websockets.ClientConnection, text: str) -> None:
    """Type `text` key by key, 30 ms a key."""
    for end in range(1, len(text) + 1):
        await ws.send(json.dumps({"type": "input", "text": text[:end], "seq": end}))
        await asyncio.sleep(0.03)


async def ask(url: str, text: str, *, typed: bool, **start: Any) -> dict[str, Any]:
    """Type `text` key by key (or not), press Enter `ENTER_AFTER_S` later; the `done` frame,
    with the streamed tokens joined as `streamed`."""
    async with opened(url, **start) as ws:
        if typed:
            await type_keys(ws, text)
        await asyncio.sleep(ENTER_AFTER_S)
        await ws.send(json.dumps({"type": "submit", "text": text, "seq": len(text) + 1}))
        tokens: list[str] = []
        async for raw in ws:
            frame = json.loads(raw)
            assert frame["type"] != "error", frame
            if frame["type"] == "token":
                tokens.append(frame["text"])
            if frame["type"] == "done":
                return {**frame, "streamed": "".join(tokens)}
    raise AssertionError("the socket closed before the done frame")


@pytest.mark.parametrize(
    "question",
    ["What is the capital of France?", "Why is the sky blue? Explain it to a child."],
)
async def test_an_attached_speculation_answers_as_a_cold_request(
    speculating_url: str, question: str
) -> None:
    done = await asyncio.wait_for(ask(speculating_url, question, typed=True), timeout=120)
    cold = await asyncio.wait_for(
        ask(speculating_url, question, typed=False, warmups="off", speculate=False), timeout=120
    )
    assert done["scorecard"]["speculative"] is True
    assert cold["scorecard"]["speculative"] is False
    assert done["completion_tokens"] > BUDGET  # the continuation was needed
    assert done["text"] == done["streamed"] == cold["text"]
    assert done["completion_tokens"] == cold["completion_tokens"]
    assert done["finish_reason"] == cold["finish_reason"]


async def test_a_chat_completion_with_the_session_id_attaches_like_a_submit(
    speculating_url: str,
) -> None:
    """Keystrokes over the socket, Enter as a chat completion from the stock `openai` SDK."""
    question = "What is the capital of France?"
    async with opened(speculating_url) as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
        assert ready["type"] == "ready", ready
        await type_keys(ws, question)
        await asyncio.sleep(ENTER_AFTER_S)
        async with AsyncOpenAI(
            base_url=f"{speculating_url}/v1",
            api_key="unused",
            default_headers={"X-Session-Id": ready["session_id"]},
        ) as http:
            raw = await asyncio.wait_for(
                http.chat.completions.with_raw_response.create(
                    model="ignored", messages=[{"role": "user", "content": question}]
                ),
                timeout=120,
            )
    answer = raw.parse()
    cold = await asyncio.wait_for(
        ask(speculating_url, question, typed=False, warmups="off", speculate=False), timeout=120
    )
    assert answer.usage is not None
    assert answer.usage.model_extra is not None
    assert answer.usage.model_extra["prefill_ahead"]["speculative"] is True
    assert raw.headers["X-Prefill-Speculative"] == "true"
    assert answer.usage.completion_tokens > BUDGET  # the continuation was needed
    assert answer.choices[0].message.content == cold["text"]
    assert answer.usage.completion_tokens == cold["completion_tokens"]
