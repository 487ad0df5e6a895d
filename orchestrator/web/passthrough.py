"""The OpenAI-compatible passthrough: `/v1/models`, `/v1/completions`, `/v1/chat/completions`.

Existing OpenAI clients point at the orchestrator instead of vLLM. Each request is relayed
with the tenant's (or the associated WebSocket session's) `cache_salt` and the final-request
priority; streams are passed through event by event as they arrive, errors always come back
in the OpenAI envelope, and a client that goes away closes the upstream stream (vLLM aborts).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from orchestrator.core.salt import ROUTE_HEADER
from orchestrator.core.warm_scheduler import FinalTicket
from orchestrator.errors import InvalidRequest
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
from orchestrator.web.upstream_errors import dropped_stream_event, normalise_error

log = logging.getLogger(__name__)
router = APIRouter(tags=["OpenAI-compatible"])

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade", "host", "content-length", "content-encoding",
    }
)  # fmt: skip
REQUEST_ID_HEADER = "x-request-id"


def forwarded_headers(headers: httpx.Headers | Any) -> dict[str, str]:
    """Headers minus the hop-by-hop ones, those `Connection` names, and those recomputed."""
    named = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    dropped = HOP_BY_HOP | named
    return {key: value for key, value in headers.items() if key.lower() not in dropped}


def request_id(request: Request) -> str:
    return request.headers.get(REQUEST_ID_HEADER) or f"prefill-{uuid.uuid4().hex}"


def prepared_body(
    services: Services, request: Request, body: dict[str, Any], tenant: str
) -> dict[str, Any]:
    prepared = {key: value for key, value in body.items() if key != "cache_salt"}
    prepared["cache_salt"] = salt_for(services, request, tenant)
    final = services.settings.final_priority
    asked = body.get("priority", final)
    # A client may lower its own priority (a larger value), never jump ahead of final requests.
    prepared["priority"] = max(asked, final) if isinstance(asked, int) else final
    return prepared


async def relay(request: Request, path: str, body: dict[str, Any] | None, tenant: str) -> Response:
    services = services_of(request)
    rid = request_id(request)
    headers = forwarded_headers(request.headers)
    headers.pop("authorization", None)  # the orchestrator's key is not vLLM's
    headers.pop(SESSION_HEADER, None)  # ours, and never the client's routing key upstream
    headers[REQUEST_ID_HEADER] = rid
    headers[ROUTE_HEADER] = route_for(services, request, tenant)
    payload = None if body is None else prepared_body(services, request, body, tenant)
    method = "GET" if body is None else "POST"
    try:
        upstream = services.http.build_request(method, path, json=payload, headers=headers)
    except ValueError:  # NaN or Infinity: Python's JSON reads them, JSON itself has none
        raise InvalidRequest(
            "the body holds a number JSON does not allow (NaN or Infinity)"
        ) from None
    # A final request like a session's: fewer warm-up pieces run until its first token.
    ticket = services.dispatcher.scheduler.final_started(None, tenant) if body else None
    try:
        response = await services.vllm.send(upstream, stream=True)
    except BaseException:
        end_final(ticket)
        raise
    reply_headers = {**forwarded_headers(response.headers), REQUEST_ID_HEADER: rid}
    if response.status_code >= 400 or not (payload or {}).get("stream"):
        end_final(ticket)  # after the whole answer
    if response.status_code >= 400:
        content = await response.aread()
        await response.aclose()
        services.metrics.upstream_status(response.status_code)
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        log.log(level, "vLLM answered %d to %s %s", response.status_code, method, path)
        envelope = normalise_error(response.status_code, content)
        return JSONResponse(
            envelope, status_code=response.status_code, headers={REQUEST_ID_HEADER: rid}
        )
    if not (payload or {}).get("stream"):
        content = await response.aread()
        await response.aclose()
        return Response(content, status_code=response.status_code, headers=reply_headers)
    return StreamingResponse(
        sse_events(response, ticket), status_code=response.status_code, headers=reply_headers
    )


def end_final(ticket: FinalTicket | None) -> None:
    if ticket is not None:
        ticket.close()


async def sse_events(
    response: httpx.Response, ticket: FinalTicket | None = None
) -> AsyncIterator[bytes]:
    """Pass SSE lines through as they arrive; errors become OpenAI-shaped error events.

    When the client goes away Starlette cancels this generator, and `finally` closes the
    upstream response: vLLM sees the disconnect and aborts the request.
    """
    try:
        async for line in response.aiter_lines():
            if line.startswith("data:") and ticket is not None:
                ticket.first_token()
            if line.startswith("data:") and '"error"' in line:
                line = "data: " + json.dumps(normalise_error(500, line[5:].strip().encode()))
            yield (line + "\n").encode()
    except (httpx.TransportError, httpx.TimeoutException) as error:
        yield dropped_stream_event(error)
    finally:
        end_final(ticket)
        await response.aclose()


@router.get("/v1/models", summary="Models served by vLLM")
async def models(request: Request, tenant: Tenant) -> Response:
    return await relay(request, "/v1/models", None, tenant)


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
        headers = {
            REQUEST_ID_HEADER: request_id(request),
            ROUTE_HEADER: route_for(services, request, tenant),
        }
        return await session_chat(services, session, body, headers)
    return await relay(request, "/v1/chat/completions", body, tenant)
