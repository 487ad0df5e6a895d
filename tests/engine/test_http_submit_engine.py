"""Keystrokes over the socket, the submit over HTTP (the stock `openai` SDK with X-Session-Id):
the chat completion finds the blocks the session's warm-ups left, on the real vLLM."""

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

from orchestrator.core.planning.planner import usable_blocks
from orchestrator.core.planning.prompt import PromptRenderer
from tests.engine.test_session_engine import SYSTEM, long_question

pytestmark = pytest.mark.engine


@asynccontextmanager
async def typed_session(
    url: str,
    context: dict[str, Any],
    text: str,
    *,
    warm_context: bool = False,
    cached_at_least: int | None = None,
) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A session whose `text` was typed key by key (once its context was warm, if it has a
    full block to warm); yields its id and its warm frames once the warm-ups have settled:
    a warm frame says `cached_at_least` tokens are cached, or no new frame came for 1.5 s."""
    ws_url = url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        start = {"type": "start", "context": context, "cache_namespace": secrets.token_hex(8)}
        await ws.send(json.dumps(start))
        ready = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
        assert ready["type"] == "ready", ready
        warms: list[dict[str, Any]] = []
        if warm_context:
            warms.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=300)))
            assert warms[0]["type"] == "warm", warms  # the context's own warm-up
        for end in range(1, len(text) + 1):
            await ws.send(json.dumps({"type": "input", "text": text[:end], "seq": end}))
            await asyncio.sleep(0.004)
        wanted = cached_at_least
        while not (wanted and warms and warms[-1]["cached_tokens"] >= wanted):
            try:
                wait_s = 300 if wanted else 1.5  # a slow engine still lands them
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=wait_s))
            except TimeoutError:
                assert not wanted, f"the warm-ups never cached {wanted} tokens: {warms}"
                break
            assert frame["type"] != "error", frame
            warms += [frame] if frame["type"] == "warm" else []
        yield ready["session_id"], warms


def client(url: str, session_id: str) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=f"{url}/v1", api_key="unused", default_headers={"X-Session-Id": session_id}
    )


async def test_http_chat_after_typing_hits_the_warmed_blocks(
    app_url: str, renderer: PromptRenderer
) -> None:
    text = long_question(words_wanted=160)
    async with httpx.AsyncClient() as http:
        block = (await http.get(f"{app_url}/health")).json()["vllm"]["block_size"]
    stable = renderer.session_prompt(SYSTEM).warm_tokens(text)  # what typing warms at least
    need = usable_blocks(len(stable), block) * block
    typed = typed_session(app_url, {"system": SYSTEM}, text, cached_at_least=need)
    async with typed as (session_id, warms):
        assert warms
        http = client(app_url, session_id)
        answer = await http.chat.completions.create(
            model="ignored", messages=[{"role": "user", "content": text}], max_tokens=8
        )
        stream = await http.chat.completions.create(
            model="ignored",
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    usage = answer.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    warmed = max(frame["cached_tokens"] for frame in warms)  # what the warm-ups left
    assert usage.prompt_tokens >= 200
    assert usage.prompt_tokens_details.cached_tokens >= warmed > 0
    assert answer.choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer.choices[0].message.content  # greedy: the same answer
    last = chunks[-1].usage
    assert last is not None
    assert last.prompt_tokens_details is not None
    assert last.prompt_tokens_details.cached_tokens >= warmed


async def test_http_chat_of_a_text_to_sql_session_keeps_its_prompt(sql_app_url: str) -> None:
    question = "How many customers are in the gold loyalty tier, by country?"
    context = {"database": "demo"}
    typed = typed_session(sql_app_url, context, question, warm_context=True)
    async with typed as (session_id, warms):
        answer = await client(sql_app_url, session_id).chat.completions.create(
            model="ignored", messages=[{"role": "user", "content": question}], max_tokens=24
        )
    usage = answer.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens > 1000  # the schema prompt, as in a submit over the socket
    assert usage.prompt_tokens_details.cached_tokens >= max(f["cached_tokens"] for f in warms)
    content = answer.choices[0].message.content or ""
    assert content.startswith("```sql")  # the answer's opening was part of the prompt
