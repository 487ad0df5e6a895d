"""Tenant isolation on the real vLLM: what tenant A warmed is in the cache for A only.

Tenant A types a prompt over its WebSocket until the warm-ups have landed. Tenant B then sends
A's exact prompt (the same token ids) through the passthrough with its own key and finds
nothing cached; A's own submit of the same prompt finds the blocks its warm-ups left. A fresh
nonce in the system prompt keeps earlier runs against a reused vLLM out of the picture.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import serve_in_thread

pytestmark = pytest.mark.engine

MODEL = "SmolLM2-135M-Instruct"
KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
SYSTEM = "You are a careful analyst for a chain of bookshops. " + " ".join(
    f"Shop {i} sells {i * 40} books a week and employs {i + 2} people." for i in range(1, 16)
)
QUESTION = (
    "Compare the shops that sell more than three hundred books a week with the others, and "
    "say which of them would gain most from one more employee on Saturdays."
)


@pytest.fixture(scope="module")
def app_url(vllm_url: str, data_dir: Path) -> Iterator[str]:
    settings = Settings(
        vllm_url=vllm_url,
        data_dir=data_dir,
        enable_database=False,
        api_keys=KEYS,
        typing_pause_ms=300,
        max_tokens=4,
        ws_frames_per_second=1000,  # typing is time-compressed here
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


def cached_tokens(reply: httpx.Response) -> int:
    assert reply.status_code == 200, reply.text
    details = reply.json()["usage"]["prompt_tokens_details"] or {}
    return int(details.get("cached_tokens") or 0)


async def test_another_tenant_does_not_hit_a_prompt_tenant_a_warmed(
    app_url: str, renderer: PromptRenderer
) -> None:
    system = f"[run {secrets.token_hex(6)}] {SYSTEM}"
    prompt = renderer.session_prompt(system).final_tokens(QUESTION)
    ws_url = app_url.replace("http://", "ws://") + "/ws/session"
    frames: list[dict[str, Any]] = []

    async with (
        websockets.connect(ws_url, subprotocols=[Subprotocol("prefill.bearer.key-a")]) as ws,
        httpx.AsyncClient(base_url=app_url, timeout=120) as http,
    ):

        async def receive(within: float) -> dict[str, Any]:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=within)))
            assert frames[-1]["type"] != "error", frames[-1]
            return frames[-1]

        async def until_quiet(seconds: float) -> None:
            """Read warm frames until none has come for `seconds`."""
            while True:
                try:
                    frame = await receive(seconds)
                except TimeoutError:
                    return
                assert frame["type"] == "warm", frame

        # Tenant A types; its warm-ups land (the context, the typed text, the pause).
        await ws.send(json.dumps({"type": "start", "context": {"system": system}}))
        session_id = (await receive(60))["session_id"]
        words = QUESTION.split(" ")
        for seq in range(1, len(words) + 1):
            await ws.send(json.dumps({"type": "input", "text": " ".join(words[:seq]), "seq": seq}))
            await asyncio.sleep(0.02)
        await until_quiet(2.0)
        warms = [frame for frame in frames if frame["type"] == "warm"]
        assert len(warms) >= 2, frames
        warmed = max(frame["cached_tokens"] for frame in warms)
        assert warmed > 0

        # Tenant B sends A's exact prompt with its own key: nothing of it is cached for B,
        # and it cannot borrow A's session either.
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 1, "temperature": 0}
        as_b = {"Authorization": "Bearer key-b"}
        assert cached_tokens(await http.post("/v1/completions", json=body, headers=as_b)) == 0
        borrowed = await http.post(
            "/v1/completions", json=body, headers={**as_b, "X-Session-Id": session_id}
        )
        assert borrowed.status_code == 400
        assert borrowed.json()["error"]["code"] == "unknown_session"

        # Tenant A submits the same prompt: the blocks its warm-ups left are hits.
        await ws.send(json.dumps({"type": "submit", "text": QUESTION, "seq": len(words)}))
        while (await receive(120))["type"] != "done":
            pass
        done = frames[-1]
        assert done["prompt_tokens"] == len(prompt)
        assert done["cached_tokens"] >= warmed > 0

    # And through the passthrough with A's key (A's salt, no namespace): a hit as well.
    async with httpx.AsyncClient(base_url=app_url, timeout=120) as http:
        as_a = {"Authorization": "Bearer key-a"}
        assert cached_tokens(await http.post("/v1/completions", json=body, headers=as_a)) > 0
