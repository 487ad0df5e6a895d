"""The scorecard on the real vLLM: a typed session's final request, over the socket and over
HTTP through the stock `openai` SDK, hits exactly what its warm-ups left cached."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
from openai import AsyncOpenAI
from websockets.asyncio.client import ClientConnection

from orchestrator.core.planning.planner import usable_blocks
from orchestrator.core.planning.prompt import PromptRenderer
from tests.engine.test_session_engine import SYSTEM, long_question

pytestmark = pytest.mark.engine
TEXT = long_question(words_wanted=160)


async def block_size(url: str) -> int:
    async with httpx.AsyncClient() as http:
        block: int = (await http.get(f"{url}/health")).json()["vllm"]["block_size"]
    return block


async def next_frame(ws: ClientConnection, timeout_s: float = 300) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout_s))
    assert frame["type"] != "error", frame
    return frame


@asynccontextmanager
async def warmed_session(url: str, text: str, cached: int) -> AsyncIterator[tuple[Any, str]]:
    """A session (its own cache) whose `text` was typed key by key, yielded once a warm frame
    says `cached` tokens of the submit-ready prompt are cached: its socket and its id."""
    ws_url = url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        start = {"type": "start", "context": {"system": SYSTEM}}
        await ws.send(json.dumps({**start, "cache_namespace": secrets.token_hex(8)}))
        ready = await next_frame(ws, 120)
        assert ready["type"] == "ready", ready
        for end in range(1, len(text) + 1):
            await ws.send(json.dumps({"type": "input", "text": text[:end], "seq": end}))
            await asyncio.sleep(0.004)
        frame = ready
        while not (frame["type"] == "warm" and frame["cached_tokens"] >= cached):
            frame = await next_frame(ws)  # a typing pause warms the submit-ready prompt
        yield ws, str(ready["session_id"])


async def test_the_done_frames_scorecard_hits_what_the_warmups_left(
    app_url: str, renderer: PromptRenderer
) -> None:
    block = await block_size(app_url)
    final = renderer.session_prompt(SYSTEM).final_tokens(TEXT)
    whole = usable_blocks(len(final), block) * block  # all a request of the prompt can hit
    async with warmed_session(app_url, TEXT, whole) as (ws, _):
        await ws.send(json.dumps({"type": "submit", "text": TEXT, "seq": len(TEXT)}))
        done = await next_frame(ws)
        while done["type"] != "done":
            done = await next_frame(ws)
    card = done["scorecard"]
    print("scorecard (socket):", card, "prompt", done["prompt_tokens"])
    assert done["prompt_tokens"] == len(final)
    assert "hit_tokens" not in card  # it is `cached_tokens`, vLLM's own figure
    assert card["warmed_tokens"] == whole
    # An idle engine evicts nothing: every block the warm-ups cached is hit, and no block
    # past them can be (the final's last token is never a hit).
    assert done["cached_tokens"] == card["warmed_tokens"]
    assert card["warm_prefill_tokens"] > 0
    assert 0 <= card["wasted_prefill_tokens"] <= card["warm_prefill_tokens"]
    assert "ttft_ms" not in card  # it is the frame's `ttft_ms`
    if card["cold_ttft_ms"] is not None:
        assert card["saved_ms"] == pytest.approx(card["cold_ttft_ms"] - done["ttft_ms"], abs=0.02)


async def test_the_http_answers_usage_extension_through_the_openai_sdk(
    app_url: str, renderer: PromptRenderer
) -> None:
    block = await block_size(app_url)
    final = renderer.session_prompt(SYSTEM).final_tokens(TEXT)
    whole = usable_blocks(len(final), block) * block
    async with warmed_session(app_url, TEXT, whole) as (_, session_id):
        sdk = AsyncOpenAI(
            base_url=f"{app_url}/v1", api_key="unused", default_headers={"X-Session-Id": session_id}
        )
        raw = await sdk.chat.completions.with_raw_response.create(
            model="ignored", messages=[{"role": "user", "content": TEXT}], max_tokens=8
        )
        stream = await sdk.chat.completions.create(
            model="ignored", messages=[{"role": "user", "content": TEXT}], max_tokens=8,
            stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = [chunk async for chunk in stream]
    answer = raw.parse()
    usage = answer.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.model_extra is not None
    card = usage.model_extra["prefill_ahead"]
    print("scorecard (HTTP):", card)
    assert card["hit_tokens"] == usage.prompt_tokens_details.cached_tokens == whole
    assert card["warmed_tokens"] == whole
    assert card["warm_prefill_tokens"] > 0
    assert raw.headers["X-Prefill-Hit-Tokens"] == str(whole)

    (last,) = [chunk for chunk in chunks if chunk.usage is not None]
    assert last.usage is not None
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.model_extra is not None
    streamed = last.usage.model_extra["prefill_ahead"]
    print("scorecard (HTTP, streamed):", streamed)
    assert streamed["hit_tokens"] == last.usage.prompt_tokens_details.cached_tokens == whole
    assert streamed["warm_prefill_tokens"] == 0  # no warm-up since the first answer
    assert isinstance(streamed["ttft_ms"], float)
