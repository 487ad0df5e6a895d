"""`POST /v1/states/{id}/completions` and `/v1/states/{id}/chat/completions`: generate from a named
state.

The prompt is the state's tokens followed by the request's suffix (a completion's `prompt`, text
or token ids; a chat's `messages` after the state's turns and the assistant header), sent to
vLLM's `/v1/completions` as token ids under the state's salt and the tenant's routing key
(behind a router, the replica its warm-ups went to) at the final-request priority, the way every
final goes (`core/answering/final_request.py`), so it hits every block the state keeps.
Sampling fields (`seed`, `temperature`, `top_p`, ...), `logprobs` and `stream` pass through;
the usage carries vLLM's `cached_tokens`. A chat answer comes back as an OpenAI chat
completion, its log-probabilities in the chat shape.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import TypeAdapter, ValidationError

from orchestrator.core.answering.final_request import FinalRequest, final_priority
from orchestrator.core.states.state import State
from orchestrator.errors import InvalidRequest
from orchestrator.web.chat_format import chat_completion, chat_events
from orchestrator.web.dependencies import Tenant, services_of, tenant_route
from orchestrator.web.openapi_examples import STATE_CHAT_EXAMPLES, STATE_COMPLETION_EXAMPLES
from orchestrator.web.passthrough import request_id
from orchestrator.web.services import Services
from orchestrator.web.session_chat import PASSED_ON
from orchestrator.web.states_api import Message, encode, live_state, messages_suffix

router = APIRouter(tags=["states"])
COMPLETION_FIELDS = PASSED_ON | {"prompt", "logprobs", "echo"}
CHAT_FIELDS = PASSED_ON | {"messages", "max_completion_tokens", "logprobs", "top_logprobs"}
STATE_HEADER = "X-State-Id"
MESSAGES = TypeAdapter(list[Message])


def refuse_unknown(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"not supported from a state: {', '.join(unknown)}", param=unknown[0])


def upstream_body(
    services: Services, state: State, body: dict[str, Any], suffix: list[int], model: str
) -> dict[str, Any]:
    """The `/v1/completions` body: the state's tokens and the suffix, the state's salt."""
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    upstream = {
        **{key: value for key, value in body.items() if key in PASSED_ON},
        "model": body.get("model") or model,
        "prompt": [*state.tokens, *suffix],
        "max_tokens": max_tokens or services.settings.max_tokens,
        "priority": final_priority(body.get("priority"), services.settings.final_priority),
        "cache_salt": state.salt,
    }
    return {key: value for key, value in upstream.items() if value is not None}


def prompt_suffix(services: Services, prompt: Any) -> list[int]:
    if prompt is None or prompt == "":
        return []
    ids_ok = isinstance(prompt, list) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt
    )
    if not (isinstance(prompt, str) or ids_ok):
        raise InvalidRequest("prompt must be a string or a list of token ids", param="prompt")
    return encode(services, prompt, "prompt")


@router.post(
    "/v1/states/{state_id}/completions",
    summary="A completion whose prompt is the state followed by `prompt`",
)
async def state_completions(
    request: Request,
    state_id: str,
    body: Annotated[dict[str, Any], Body(openapi_examples=STATE_COMPLETION_EXAMPLES)],
    tenant: Tenant,
) -> Response:
    services = services_of(request)
    state = await live_state(services, tenant, state_id)
    refuse_unknown(body, COMPLETION_FIELDS)
    suffix = prompt_suffix(services, body.get("prompt"))
    facts = await services.engine_facts()
    payload = upstream_body(services, state, body, suffix, facts.model)
    for key in ("logprobs", "echo"):
        if body.get(key) is not None:
            payload[key] = body[key]
    return await generate(services, request, state, payload, chat=False)


@router.post(
    "/v1/states/{state_id}/chat/completions",
    summary="A chat completion: the state's turns, then `messages`, then the answer",
)
async def state_chat_completions(
    request: Request,
    state_id: str,
    body: Annotated[dict[str, Any], Body(openapi_examples=STATE_CHAT_EXAMPLES)],
    tenant: Tenant,
) -> Response:
    """`messages` may be empty: the answer then follows the state's own last turn."""
    services = services_of(request)
    state = await live_state(services, tenant, state_id)
    refuse_unknown(body, CHAT_FIELDS)
    try:
        messages = MESSAGES.validate_python(body.get("messages", []))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in ("messages", *first["loc"]))
        raise InvalidRequest(f"{where}: {first['msg']}", param="messages") from None
    suffix = messages_suffix(services, state.roles, messages, generation=True)
    facts = await services.engine_facts()
    payload = upstream_body(services, state, body, suffix, facts.model)
    if body.get("logprobs"):
        payload["logprobs"] = int(body.get("top_logprobs") or 0)
    return await generate(services, request, state, payload, chat=True)


async def generate(
    services: Services, request: Request, state: State, payload: dict[str, Any], *, chat: bool
) -> Response:
    """Send `payload` to vLLM as a final request; its answer, streamed or not."""
    final = FinalRequest(
        payload, state.tenant, tenant_route(services, state.tenant), request_id(request), "state"
    )
    reply = await services.finals.open(final)
    headers = {STATE_HEADER: state.id}
    if final.streams:
        events = reply.events(chat_events("")) if chat else reply.events()
        return StreamingResponse(
            reply.closing(events), media_type="text/event-stream", headers=headers
        )
    async with reply:
        answer = await reply.json()
    return JSONResponse(chat_completion(answer, "") if chat else answer, headers=headers)
