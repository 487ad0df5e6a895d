"""`/v1/states`: named prefix states, created, forked, listed, read and deleted.

A state is a prompt prefilled once (block-aligned, like `POST /v1/warm`) under the tenant's
salt and kept under an unguessable id until its TTL ends; the state keeper
(`core/states/keeper.py`) keeps its blocks resident meanwhile. A fork extends its parent's
tokens, so its warm-up computes only the new blocks. Every lookup is by tenant and id, so
another tenant's id is answered exactly as a missing one: 404 `state_not_found`.
Generating from a state: `web/state_completions.py`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.core.states.keeper import StateKeeper
from orchestrator.core.states.state import (
    State,
    StateNotFound,
    chat_suffix,
    check_budget,
    check_length,
    full_block_tokens,
    new_state_id,
    suffix_roles,
    ttl_for,
    warm_prefix,
)
from orchestrator.errors import InvalidRequest
from orchestrator.web.dependencies import Tenant, salt_for, services_of, tenant_route
from orchestrator.web.openapi_examples import FORK_EXAMPLES, STATE_EXAMPLES
from orchestrator.web.services import Services
from orchestrator.web.warm_api import TokenId

router = APIRouter(tags=["states"])
Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str


class Keeping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_s: int | None = Field(
        None, ge=1, description="Seconds to keep the state; default and most: the settings'."
    )
    store_text: bool = Field(
        True, description="Keep the state's text too (false: token ids alone are stored)."
    )


class CreateState(Keeping):
    messages: list[Message] | None = Field(
        None, max_length=1000, description="Chat turns, rendered with the chat template."
    )
    prompt: str | list[TokenId] | None = Field(None, description="A raw prompt: text or token ids.")
    parent: str | None = Field(None, description="A state this one extends (as a fork does).")

    @model_validator(mode="after")
    def _one_of(self) -> CreateState:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages or prompt")
        return self


class ForkState(Keeping):
    append: str | list[TokenId] | None = Field(None, description="Text or token ids to append.")
    messages: list[Message] | None = Field(
        None, max_length=1000, description="Chat turns after the parent's."
    )

    @model_validator(mode="after")
    def _one_of(self) -> ForkState:
        if (self.messages is None) == (self.append is None):
            raise ValueError("give exactly one of append or messages")
        return self


class StateOut(BaseModel):
    id: str
    object: Literal["state"] = "state"
    parent: str | None = Field(description="The state it extends, if any.")
    kind: Literal["chat", "text"] = Field(description="chat: it ends after a chat turn.")
    prompt_tokens: int = Field(description="Tokens of the state's prompt.")
    cached_tokens: int = Field(description="Tokens its warm-up found cached at creation.")
    resident_tokens: int = Field(description="Tokens of it in vLLM's cache now (whole blocks).")
    resident_source: Literal["kv-events", "belief"] = Field(
        description="kv-events: vLLM's own word; belief: what the last warm-up left (always "
        "in the answer to a creation: the warm-up's KV events may still be on their way)."
    )
    block_size: int
    created_at: float = Field(description="Unix time, seconds.")
    expires_at: float = Field(description="Unix time, seconds: after it, 404.")
    ttl_s: float
    input: dict[str, Any] | None = Field(
        None, description="What it was made of (its own part), unless stored as tokens alone."
    )


class StateList(BaseModel):
    object: Literal["list"] = "list"
    data: list[StateOut]


class Deleted(BaseModel):
    id: str
    object: Literal["state"] = "state"
    deleted: bool = True


def keeper_of(services: Services) -> StateKeeper:
    if services.state_keeper is None:
        raise InvalidRequest("named states are not served here", code="states_unavailable")
    return services.state_keeper


async def live_state(services: Services, tenant: str, state_id: str) -> State:
    """The tenant's live state of this id, or 404 (missing, expired, or another tenant's)."""
    state = await services.states.get(tenant, state_id, time.time())
    if state is None:
        raise StateNotFound(state_id)
    return state


async def block_size_of(services: Services) -> int:
    """The configured block size, or the served one (read from vLLM once, then kept)."""
    return services.settings.block_size or (await services.engine_facts()).block_size


def encode(services: Services, text: str | list[int], param: str) -> list[int]:
    if isinstance(text, list):
        return text
    if services.renderer is None:
        raise InvalidRequest(
            "this server loads no tokenizer: give token ids", param=param, code="no_tokenizer"
        )
    return services.renderer.encode(text)


def messages_suffix(
    services: Services, roles: tuple[str, ...] | None, messages: list[Message], generation: bool
) -> list[int]:
    """Token ids of `messages` (and the assistant header when `generation`) after a state
    whose turns had `roles`."""
    if services.renderer is None:
        encode(services, "", "messages")  # the same refusal
    assert services.renderer is not None
    turns = [message.model_dump() for message in messages]
    return services.renderer.encode(chat_suffix(services.renderer, roles, turns, generation))


def state_out(
    services: Services, state: State, block_size: int, *, fresh: bool = False
) -> StateOut:
    """`fresh`: just created, its warm-up's KV events may still be on their way."""
    feed = services.kv_feed
    if feed is not None and feed.live and not fresh:
        resident = feed.index.resident_tokens(state.salt, state.tokens, block_size)
        source: Literal["kv-events", "belief"] = "kv-events"
    else:
        resident, source = keeper_of(services).warmed_tokens(state.id), "belief"
    return StateOut(
        id=state.id,
        parent=state.parent,
        kind="chat" if state.roles else "text",
        prompt_tokens=len(state.tokens),
        cached_tokens=state.cached_tokens,
        resident_tokens=resident,
        resident_source=source,
        block_size=block_size,
        created_at=round(state.created_at, 3),
        expires_at=round(state.expires_at, 3),
        ttl_s=round(state.ttl_s, 3),
        input=state.source,
    )


async def admit(
    services: Services,
    tenant: str,
    salt: str,
    parent: State | None,
    suffix: list[int],
    roles: tuple[str, ...] | None,
    source: dict[str, Any],
    keeping: Keeping,
) -> StateOut:
    """Check the new state against the model and the tenant's budget, warm it, keep it."""
    settings, keeper = services.settings, keeper_of(services)
    ttl = ttl_for(keeping.ttl_s, settings.state_default_ttl_s, settings.state_max_ttl_s)
    facts = await services.engine_facts()
    tokens = (*(parent.tokens if parent else ()), *suffix)
    check_length(tokens, facts.max_model_len)
    async with services.state_locks[tenant]:
        held = await services.states.of_tenant(tenant, time.time())
        check_budget(
            held,
            tokens,
            facts.block_size,
            settings.states_max_per_tenant,
            settings.states_max_tokens_per_tenant,
        )
        warmed = warm_prefix(tokens, facts.block_size)
        cached = 0
        if warmed is not None:
            usage = await services.dispatcher.warm_once(
                facts.model,
                warmed,
                salt,
                tenant_route(services, tenant),
                tenant=tenant,
                block_size=facts.block_size,
            )
            cached = usage.cached_tokens
        now = time.time()
        state = State(
            id=new_state_id(),
            tenant=tenant,
            salt=salt,
            tokens=tokens,
            created_at=now,
            expires_at=now + ttl,
            parent=parent.id if parent else None,
            roles=roles,
            source=source if keeping.store_text else None,
            cached_tokens=cached,
        )
        await services.states.put(state)
    warmed_tokens = full_block_tokens(tokens, facts.block_size) if warmed else 0
    keeper.added(state, warmed_tokens, facts.block_size)
    return state_out(services, state, facts.block_size, fresh=True)


@router.post(
    "/v1/states",
    status_code=201,
    summary="Create a named state: a prompt prefilled once and kept until its TTL ends",
)
async def create_state(
    request: Request,
    body: Annotated[CreateState, Body(openapi_examples=STATE_EXAMPLES)],
    tenant: Tenant,
) -> StateOut:
    """With `parent`, it extends that state as a fork does. With `X-Session-Id` it lives
    under that WebSocket session's salt."""
    services = services_of(request)
    keeper_of(services)
    parent = await live_state(services, tenant, body.parent) if body.parent else None
    parent_roles = parent.roles if parent else None
    if body.messages is not None:
        suffix = messages_suffix(services, parent_roles, body.messages, generation=False)
        source: dict[str, Any] = {"messages": [m.model_dump() for m in body.messages]}
    else:
        assert body.prompt is not None
        suffix, source = encode(services, body.prompt, "prompt"), {"prompt": body.prompt}
    roles = suffix_roles(parent_roles, [m.model_dump() for m in body.messages or []] or None)
    salt = parent.salt if parent else salt_for(services, request, tenant)
    return await admit(services, tenant, salt, parent, suffix, roles, source, body)


@router.post(
    "/v1/states/{state_id}/fork",
    status_code=201,
    summary="Fork a state: a new state that extends it and shares its blocks",
)
async def fork_state(
    request: Request,
    state_id: str,
    body: Annotated[ForkState, Body(openapi_examples=FORK_EXAMPLES)],
    tenant: Tenant,
) -> StateOut:
    services = services_of(request)
    keeper_of(services)
    parent = await live_state(services, tenant, state_id)
    if body.messages is not None:
        suffix = messages_suffix(services, parent.roles, body.messages, generation=False)
        turns = [m.model_dump() for m in body.messages]
        source: dict[str, Any] = {"messages": turns}
        roles = suffix_roles(parent.roles, turns)
    else:
        assert body.append is not None
        suffix, source = encode(services, body.append, "append"), {"append": body.append}
        roles = parent.roles
    if not suffix:
        raise InvalidRequest("nothing to append", param="append")
    return await admit(services, tenant, parent.salt, parent, suffix, roles, source, body)


@router.get("/v1/states", summary="The tenant's live states, oldest first")
async def list_states(request: Request, tenant: Tenant) -> StateList:
    services = services_of(request)
    keeper_of(services)
    states = await services.states.of_tenant(tenant, time.time())
    block_size = await block_size_of(services)
    return StateList(data=[state_out(services, state, block_size) for state in states])


@router.get("/v1/states/{state_id}", summary="A state: its tokens, resident tokens, expiry")
async def get_state(request: Request, state_id: str, tenant: Tenant) -> StateOut:
    services = services_of(request)
    keeper_of(services)
    state = await live_state(services, tenant, state_id)
    return state_out(services, state, await block_size_of(services))


@router.delete("/v1/states/{state_id}", summary="Delete a state (vLLM may still evict it later)")
async def delete_state(request: Request, state_id: str, tenant: Tenant) -> Deleted:
    services = services_of(request)
    keeper = keeper_of(services)
    await live_state(services, tenant, state_id)
    if not await services.states.delete(tenant, state_id):
        raise StateNotFound(state_id)
    keeper.removed(state_id)
    return Deleted(id=state_id)
