"""The whole path on the real vLLM: keystrokes over /ws/session warm the prompt before submit."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import pytest
import websockets

from orchestrator.core.engine.vllm_client import parse_block_size

pytestmark = pytest.mark.engine

SYSTEM = "You are a careful analyst. Answer in one short paragraph."
TOPICS = [
    "monthly revenue by region",
    "the churn of customers who joined during the spring campaign",
    "late shipments from suppliers in the north",
    "returns of electronics bought with a discount code",
    "average basket size on weekends compared with weekdays",
    "support tickets that were reopened more than twice",
]


def long_question(words_wanted: int = 470) -> str:
    """A deterministic question of about 600 tokens, typed key by key in the test."""
    sentences: list[str] = []
    index = 0
    while sum(len(s.split()) for s in sentences) < words_wanted:
        topic = TOPICS[index % len(TOPICS)]
        sentences.append(
            f"Point {index + 1}: look at {topic}, compare this quarter with the same quarter "
            f"last year, and say whether the change is larger than {5 + index} percent."
        )
        index += 1
    return " ".join(sentences)


async def type_and_submit(url: str, text: str, key_interval_s: float) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    ws_url = url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        start = {"type": "start", "context": {"system": SYSTEM}}
        await ws.send(json.dumps({**start, "cache_namespace": secrets.token_hex(8)}))

        async def read_until_done() -> None:
            async for raw in ws:
                frames.append(json.loads(raw))
                if frames[-1]["type"] in ("done", "error"):
                    return

        reader = asyncio.create_task(read_until_done())
        for end in range(1, len(text) + 1):
            await ws.send(json.dumps({"type": "input", "text": text[:end], "seq": end}))
            await asyncio.sleep(key_interval_s)
        await asyncio.sleep(1.0)  # a pause before submit, as people do
        await ws.send(json.dumps({"type": "submit", "text": text, "seq": len(text)}))
        await asyncio.wait_for(reader, timeout=300)
    return frames


async def test_typed_prompt_is_cached_at_submit(app_url: str) -> None:
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{app_url}/health")).json()
    block = health["vllm"]["block_size"]
    text = long_question()

    frames = await type_and_submit(app_url, text, key_interval_s=0.004)

    errors = [frame for frame in frames if frame["type"] == "error"]
    assert not errors, errors
    done = frames[-1]
    assert done["type"] == "done"
    assert done["prompt_tokens"] >= 600
    template_tail = 5  # "<|im_end|>\n<|im_start|>assistant\n"
    assert done["cached_tokens"] >= done["prompt_tokens"] - block - template_tail
    assert done["scorecard"]["warm_prefill_tokens"] <= 1.2 * done["prompt_tokens"]
    warms = [frame for frame in frames if frame["type"] == "warm"]
    assert len(warms) == done["warm_pieces"]["landed"] >= 2
    assert any(frame["type"] == "token" for frame in frames)


async def test_cold_session_sends_no_warm_up_and_misses(app_url: str) -> None:
    ws_url = app_url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(ws_url) as ws:
        start = {"type": "start", "context": {"system": SYSTEM}, "warmups": "off"}
        await ws.send(json.dumps({**start, "cache_namespace": secrets.token_hex(8)}))
        assert json.loads(await ws.recv())["warmups"] == "off"
        await ws.send(json.dumps({"type": "input", "text": "how many orders", "seq": 1}))
        await ws.send(json.dumps({"type": "submit", "text": "how many orders shipped?"}))
        frames = [json.loads(await ws.recv())]
        while frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=120)))
    assert frames[-1]["type"] == "done"
    assert frames[-1]["cached_tokens"] == 0
    assert frames[-1]["warm_pieces"]["landed"] == 0
    assert not [frame for frame in frames if frame["type"] == "warm"]


def test_health_reports_model_and_block_size(app_url: str, vllm_url: str) -> None:
    served_block_size = parse_block_size(httpx.get(f"{vllm_url}/metrics").text)
    assert served_block_size is not None
    response = httpx.get(f"{app_url}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["vllm"]["model"] == "SmolLM2-135M-Instruct"
    assert body["vllm"]["block_size"] == served_block_size  # 16 on GPUs, 32 on CPUs
