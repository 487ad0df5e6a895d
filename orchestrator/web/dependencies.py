"""What a route handler takes from its request: the services, the tenant, the cache salt."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from orchestrator.core.engine.salt import routing_key, tenant_salt
from orchestrator.core.services import LiveSession
from orchestrator.errors import InvalidRequest
from orchestrator.web.auth import Audience, audience_for, bearer, check_admin, tenant_for_key
from orchestrator.web.services import Services

SESSION_HEADER = "x-session-id"


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.app.state.services
    return services


async def http_tenant(request: Request) -> str:
    """FastAPI dependency: the caller's tenant, or 401 in the OpenAI envelope."""
    return tenant_for_key(services_of(request).settings, bearer(request))


Tenant = Annotated[str, Depends(http_tenant)]


async def http_audience(request: Request) -> Audience:
    """FastAPI dependency: an admin or a tenant (`/metrics`, `/status`); 401 for a bad key."""
    host = request.client.host if request.client else None
    return audience_for(services_of(request).settings, bearer(request), host)


async def http_admin(request: Request) -> None:
    """FastAPI dependency: an admin, or a loopback client when no key is configured."""
    host = request.client.host if request.client else None
    check_admin(services_of(request).settings, bearer(request), host)


Reader = Annotated[Audience, Depends(http_audience)]


def session_for(services: Services, request: Request, tenant: str) -> LiveSession:
    """The tenant's live WebSocket session named by `X-Session-Id` (400 if there is none)."""
    session_id = request.headers.get(SESSION_HEADER, "")
    session = services.sessions.get(session_id, tenant)
    if session is None:
        raise InvalidRequest(
            f"no live session {session_id!r}", param=SESSION_HEADER, code="unknown_session"
        )
    return session


def route_for(services: Services, request: Request, tenant: str) -> str:
    """The routing key of the associated WebSocket session, or of the tenant's untied requests
    (sent upstream as `X-Session-ID`: replicas behind a router keep them together)."""
    session_id = (
        session_for(services, request, tenant).id if request.headers.get(SESSION_HEADER) else None
    )
    if session_id is None:
        return tenant_route(services, tenant)
    return routing_key(services.settings.server_secret, tenant, session_id)


def tenant_route(services: Services, tenant: str) -> str:
    """The routing key of the tenant's untied requests and of all its named states: a
    state's warm-ups, keep-alives and generates land on the replica that holds it."""
    return routing_key(services.settings.server_secret, tenant)


def salt_for(services: Services, request: Request, tenant: str) -> str:
    """The associated WebSocket session's salt, or the tenant's; never the client's."""
    if request.headers.get(SESSION_HEADER):
        return session_for(services, request, tenant).salt
    return tenant_salt(services.settings.server_secret, tenant)
