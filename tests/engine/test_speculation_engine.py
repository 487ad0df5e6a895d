"""Answer before Enter on the real vLLM: a question typed key by key that ends with `?` is
answered speculatively, Enter comes 240 ms later, and the attached answer equals a cold one."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from eval.serving import serve_in_thread
from orchestrator.settings import Settings
from orchestrator.web.app import create_app
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


async def ask(url: str, text: str, *, typed: bool, **start: Any) -> dict[str, Any]:
    """Type `text` key by key (or not), press Enter `ENTER_AFTER_S` later; the `done` frame,
    with the streamed tokens joined as `streamed`."""
    ws_url = url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        first = {"type": "start", "context": {"system": SYSTEM}, **start}
        await ws.send(json.dumps({**first, "cache_namespace": secrets.token_hex(8)}))
        if typed:
            for end in range(1, len(text) + 1):
                await ws.send(json.dumps({"type": "input", "text": text[:end], "seq": end}))
                await asyncio.sleep(0.03)
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
    assert done["speculative"] is True
    assert cold["speculative"] is False
    assert done["completion_tokens"] > BUDGET  # the continuation was needed
    assert done["text"] == done["streamed"] == cold["text"]
    assert done["completion_tokens"] == cold["completion_tokens"]
    assert done["finish_reason"] == cold["finish_reason"]
