"""`POST /v1/warm`: put a document, a system prompt or a chat history in vLLM's prefix cache.

The prompt is tokenized by vLLM itself (`/tokenize`, with the served chat template), so a later
chat or completion request through the passthrough produces the very same token prefix and
hits every full block warmed here. The warm-up itself takes the sessions' path
(`core/warming/dispatch.py`): the same bound, back-off, gate and priority.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.planning.planner import usable_blocks
from orchestrator.web.dependencies import SESSION_HEADER, Tenant, route_for, salt_for, services_of
from orchestrator.web.openapi_examples import WARM_EXAMPLES

router = APIRouter(tags=["warm-ups"])
# A token id as vLLM takes it (the vocabulary is far smaller; vLLM refuses ids beyond it).
TokenId = Annotated[int, Field(ge=0, lt=2**31)]


class WarmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] | None = Field(
        None, max_length=1000, description="A chat so far: it is warmed without the next turn."
    )
    prompt: str | list[TokenId] | None = Field(None, description="A raw prompt: text or token ids.")

    @model_validator(mode="after")
    def _one_of(self) -> WarmRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages or prompt")
        return self


class WarmResponse(BaseModel):
    prompt_tokens: int = Field(description="Tokens of the rendered prompt.")
    cached_tokens: int = Field(description="Tokens of it now in the cache (whole blocks).")
    hit_tokens: int = Field(description="Tokens that were already cached before this warm-up.")
    block_size: int
    ms: float


@router.post("/v1/warm", summary="Warm the prefix cache; answers how many tokens are cached")
async def warm(
    request: Request,
    body: Annotated[WarmRequest, Body(openapi_examples=WARM_EXAMPLES)],
    tenant: Tenant,
) -> WarmResponse:
    """Block-aligned: only whole blocks can be cached, so the warm-up stops one token past the
    last full block. With `X-Session-Id` it uses that WebSocket session's salt."""
    services = services_of(request)
    salt = salt_for(services, request, tenant)
    facts = await services.engine_facts()
    started = time.perf_counter()
    tokens = await tokenize(request, body, facts.model)
    blocks = usable_blocks(len(tokens), facts.block_size)
    hit = 0
    if blocks:
        warmed = tokens[: blocks * facts.block_size + 1]
        route = route_for(services, request, tenant)
        usage = await services.dispatcher.warm_once(
            facts.model, warmed, salt, route, tenant, block_size=facts.block_size
        )
        hit = usage.cached_tokens
        if not request.headers.get(SESSION_HEADER):  # a session's own are traced by it
            services.record_prefix(tenant, None, warmed, facts.block_size, "warm")
    return WarmResponse(
        prompt_tokens=len(tokens),
        cached_tokens=blocks * facts.block_size,
        hit_tokens=hit,
        block_size=facts.block_size,
        ms=round((time.perf_counter() - started) * 1000, 2),
    )


async def tokenize(request: Request, body: WarmRequest, model: str) -> list[int]:
    if isinstance(body.prompt, list):
        return body.prompt
    services = services_of(request)
    payload: dict[str, Any] = {"model": model}
    if body.messages is not None:
        payload |= {"messages": body.messages, "add_generation_prompt": False}
    else:
        payload["prompt"] = body.prompt
    reply = await services.vllm.request("POST", "/tokenize", json=payload)
    return [int(token) for token in reply.json()["tokens"]]
