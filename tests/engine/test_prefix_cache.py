"""On the real vLLM: a max_tokens=1 warm-up makes the final request hit the prefix cache.

These are the facts the whole product rests on, checked through the orchestrator's own
prompt renderer (token ids) and vLLM client.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.core.engine.vllm_client import Usage, VLLMClient, make_http_client
from orchestrator.core.planning.planner import usable_blocks
from orchestrator.core.planning.prompt import PromptRenderer

pytestmark = pytest.mark.engine

TABLES = [
    "customers",
    "orders",
    "products",
    "suppliers",
    "shipments",
    "invoices",
    "reviews",
    "stores",
]


def schema_document() -> str:
    """A deterministic system prompt of several hundred tokens."""
    lines = ["You translate questions into one PostgreSQL query. The schema:"]
    for index, table in enumerate(TABLES):
        columns = ", ".join(f"{table[:-1]}_{name} {kind}" for name, kind in _columns(index))
        lines.append(f"CREATE TABLE {table} (id serial primary key, {columns});")
    return "\n".join(lines)


def _columns(index: int) -> list[tuple[str, str]]:
    names = ["name", "created_at", "status", "amount", "region", "notes", "score", "owner"]
    kinds = ["text", "timestamptz", "varchar(20)", "numeric(10,2)", "text", "text", "int", "int"]
    return [(f"{name}{index}", kind) for name, kind in zip(names, kinds, strict=True)]


@pytest.fixture
async def client(vllm_url: str) -> AsyncIterator[VLLMClient]:
    http = make_http_client(vllm_url, connect_timeout_s=3, timeout_s=120)
    try:
        yield VLLMClient(http)
    finally:
        await http.aclose()


async def timed_completion(client: VLLMClient, body: dict[str, Any]) -> tuple[float, str, Usage]:
    """Stream a completion: (seconds to the first token, the text, the usage)."""
    started = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    usage = Usage(0, 0, 0)
    async for chunk in client.stream_completion(body):
        for choice in chunk.get("choices", []):
            if first is None:
                first = time.perf_counter() - started
            text.append(choice.get("text", ""))
        if chunk.get("usage"):
            usage = Usage.from_body(chunk["usage"])
    assert first is not None, "the stream carried no token"
    return first, "".join(text), usage


def request(model: str, tokens: list[int], salt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "prompt": tokens,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "cache_salt": salt,
    }


async def test_warm_up_then_submit_hits_every_full_block(
    client: VLLMClient, renderer: PromptRenderer
) -> None:
    model = (await client.model_names())[0]
    block = await client.block_size()
    assert block is not None
    frame = renderer.frame(schema_document())
    question = "which customers placed more than three orders last month, by region"
    warm_tokens = renderer.encode(frame.prefix_text(question))
    final_tokens = renderer.encode(frame.full_text(question))
    assert len(warm_tokens) >= 600
    assert final_tokens[: len(warm_tokens)] == warm_tokens

    salt = secrets.token_hex(8)
    warm = await client.complete(request(model, warm_tokens, salt, max_tokens=1))
    assert Usage.from_body(warm["usage"]).prompt_tokens == len(warm_tokens)
    warm_ttft, warm_text, warm_usage = await timed_completion(
        client, request(model, final_tokens, salt, max_tokens=24)
    )
    cold_ttft, cold_text, cold_usage = await timed_completion(
        client, request(model, final_tokens, secrets.token_hex(8), max_tokens=24)
    )

    assert warm_usage.cached_tokens >= usable_blocks(len(warm_tokens), block) * block
    assert cold_usage.cached_tokens == 0
    assert warm_ttft < cold_ttft, (warm_ttft, cold_ttft)
    assert warm_text == cold_text  # greedy output does not depend on the cache


async def test_other_salt_never_hits(client: VLLMClient, renderer: PromptRenderer) -> None:
    model = (await client.model_names())[0]
    tokens = renderer.encode(renderer.frame(schema_document()).full_text("count the orders"))
    await client.complete(request(model, tokens, "tenant-a-" + secrets.token_hex(4), 1))
    _, _, usage = await timed_completion(
        client, request(model, tokens, "tenant-b-" + secrets.token_hex(4), 1)
    )
    assert usage.cached_tokens == 0
