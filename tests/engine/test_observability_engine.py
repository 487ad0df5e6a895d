"""Observability on the real vLLM: a short typed session moves our counters, and `/status`
carries vLLM's own figures (KV cache usage, prefix-cache hit rate)."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.engine

SYSTEM = "You are a careful analyst of a small shop's orders. Answer in one short sentence."
QUESTION = "Which of our customers ordered the most this month, and how much did they spend?"


def figures(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


async def typed_session(url: str) -> dict[str, Any]:
    """Type QUESTION key by key, pause, submit: the `done` frame."""
    ws_url = url.replace("http://", "ws://") + "/ws/session"
    async with websockets.connect(ws_url) as ws:
        start = {"type": "start", "context": {"system": SYSTEM}}
        await ws.send(json.dumps({**start, "cache_namespace": secrets.token_hex(8)}))
        for end in range(1, len(QUESTION) + 1):
            await ws.send(json.dumps({"type": "input", "text": QUESTION[:end], "seq": end}))
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # a pause: the submit-ready warm-up lands
        await ws.send(json.dumps({"type": "submit", "text": QUESTION, "seq": len(QUESTION)}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
            if frame["type"] in ("done", "error"):
                return dict(frame)


async def test_a_real_session_shows_in_metrics_and_status(app_url: str) -> None:
    async with httpx.AsyncClient(base_url=app_url, timeout=30) as http:
        before = figures((await http.get("/metrics")).text)
        done = await typed_session(app_url)
        after = figures((await http.get("/metrics")).text)
        status = (await http.get("/status")).json()

    assert done["type"] == "done", done
    keystrokes = "prefill_ahead_keystrokes_total"
    assert after[keystrokes] - before[keystrokes] == len(QUESTION)
    landed = 'prefill_ahead_warmups_total{outcome="landed"}'
    assert after[landed] - before[landed] == done["warm_pieces"]["landed"] >= 1  # each one counted
    ttft = 'prefill_ahead_final_ttft_seconds_count{mode="keystroke"}'
    assert after[ttft] - before[ttft] == 1
    cached = "prefill_ahead_final_cached_tokens_total"
    assert after[cached] - before[cached] == done["cached_tokens"] > 0

    engine = status["engine"]
    assert engine["ok"] is True
    assert engine["model"] == "SmolLM2-135M-Instruct"
    assert engine["block_size"] in (16, 32)
    assert isinstance(engine["kv_cache_usage"], float)
    assert 0.0 <= engine["kv_cache_usage"] <= 1.0
    assert isinstance(engine["prefix_cache_hit_rate"], float)
    assert 0.0 < engine["prefix_cache_hit_rate"] <= 1.0  # our warm-ups were hits
    assert status["kv_events"]["source"]
    assert isinstance(status["warmups"]["in_flight"], int)
