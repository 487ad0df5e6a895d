"""The OpenAI-compatible passthrough: `/v1/models`, `/v1/completions`, `/v1/chat/completions`.

Existing OpenAI clients point at the orchestrator instead of vLLM. Each completion is relayed as
a final request (`core/answering/final_request.py`) with the tenant's (or the associated WebSocket
session's) `cache_salt`, routing key and the final-request priority; streams are passed through
event by event as they arrive, errors always come back in the OpenAI envelope with vLLM's status
(`errors.upstream_error`, as on every path), and a client that goes away closes the upstream
stream (vLLM aborts).
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Request
from fastapi.responses import Response, StreamingResponse

from orchestrator.core.answering.final_request import (
    REQUEST_ID_HEADER,
    FinalRequest,
    final_priority,
)
from orchestrator.core.engine.salt import ROUTE_HEADER
from orchestrator.web.dependencies import (
    SESSION_HEADER,
    Tenant,
    route_for,
    salt_for,
    services_of,
    session_for,
)
from orchestrator.web.openapi_examples import CHAT_EXAMPLES, COMPLETION_EXAMPLES
from orchestrator.web.services import Services
from orchestrator.web.session_chat import session_chat

router = APIRouter(tags=["OpenAI-compatible"])

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade", "host", "content-length", "content-encoding",
    }
)  # fmt: skip


def forwarded_headers(headers: httpx.Headers | Any) -> dict[str, str]:
    """Headers minus the hop-by-hop ones, those `Connection` names, and those recomputed."""
    named = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    dropped = HOP_BY_HOP | named
    return {key: value for key, value in headers.items() if key.lower() not in dropped}


def request_id(request: Request) -> str:
    """The request's id (the `RequestId` middleware gave every request one)."""
    return request.headers.get(REQUEST_ID_HEADER, "")


def client_headers(request: Request) -> dict[str, str]:
    """The client's headers that go on to vLLM: not hop-by-hop, not its key (the
    orchestrator's is not vLLM's), not `X-Session-Id` (ours: never a routing key upstream)."""
    headers = forwarded_headers(request.headers)
    return {k: v for k, v in headers.items() if k.lower() not in {"authorization", SESSION_HEADER}}


def prepared_body(
    services: Services, request: Request, body: dict[str, Any], tenant: str
) -> dict[str, Any]:
    prepared = {key: value for key, value in body.items() if key != "cache_salt"}
    prepared["cache_salt"] = salt_for(services, request, tenant)
    prepared["priority"] = final_priority(body.get("priority"), services.settings.final_priority)
    return prepared


async def relay(request: Request, path: str, body: dict[str, Any], tenant: str) -> Response:
    """A client's completion, relayed as a final request with the tenant's (or the tied
    session's) salt and routing key, passed back event by event as it streams."""
    services = services_of(request)
    final = FinalRequest(
        prepared_body(services, request, body, tenant), tenant,
        route_for(services, request, tenant), request_id(request), "relay", path=path,
        headers=client_headers(request),
    )  # fmt: skip
    reply = await services.finals.open(final)
    headers = forwarded_headers(reply.headers)
    if final.streams:
        return StreamingResponse(reply.closing(reply.events()), headers=headers)
    async with reply:
        content = await reply.read()
    return Response(content, headers=headers)


@router.get("/v1/models", summary="Models served by vLLM")
async def models(request: Request, tenant: Tenant) -> Response:
    services = services_of(request)
    headers = {**client_headers(request), ROUTE_HEADER: route_for(services, request, tenant)}
    response = await services.vllm.request("GET", "/v1/models", headers=headers)
    return Response(response.content, headers=forwarded_headers(response.headers))


@router.post("/v1/completions", summary="Completions, relayed to vLLM with the tenant's salt")
async def completions(
    request: Request,
    body: Annotated[dict[str, Any], Body(openapi_examples=COMPLETION_EXAMPLES)],
    tenant: Tenant,
) -> Response:
    return await relay(request, "/v1/completions", body, tenant)


@router.post("/v1/chat/completions", summary="Chat completions, relayed with the tenant's salt")
async def chat_completions(
    request: Request,
    body: Annotated[dict[str, Any], Body(openapi_examples=CHAT_EXAMPLES)],
    tenant: Tenant,
) -> Response:
    if request.headers.get(SESSION_HEADER):  # a session's final request: its own prompt
        services = services_of(request)
        session = session_for(services, request, tenant)
        return await session_chat(services, session, body, request_id(request))
    return await relay(request, "/v1/chat/completions", body, tenant)
