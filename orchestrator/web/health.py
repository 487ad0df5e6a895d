"""`GET /health`: is the service up; for an admin also vLLM, its model and block size, the
replicas, the re-warm and the database.

Without a key (a load balancer's probe), or with a tenant's, the answer is only whether the
service is up: `{"status": "ok" | "degraded"}` (200 or 503), no upstream URL, no replica list.
An admin key, or a loopback client of a service with no key configured, gets the details.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from orchestrator.web.auth import audience_for, bearer
from orchestrator.web.dependencies import services_of
from orchestrator.web.services import Services

router = APIRouter(tags=["health"])


@router.get("/health", summary="Is the service up (an admin: vLLM's model, block size, ...)")
async def health(request: Request) -> JSONResponse:
    services = services_of(request)
    body = await health_details(services)
    status_code = 200 if body["status"] == "ok" else 503
    if not sees_details(request, services):
        body = {"status": body["status"]}
    return JSONResponse(body, status_code=status_code)


def sees_details(request: Request, services: Services) -> bool:
    """An admin does; a probe without a key (the operator on loopback where no key exists
    excepted) or a tenant does not; a bad key gets 401."""
    key, host = bearer(request), request.client.host if request.client else None
    if key is None and services.settings.api_keys:
        return False
    return audience_for(services.settings, key, host).admin


async def health_details(services: Services) -> dict[str, Any]:
    engine = await services.vllm.status()
    block_size = services.settings.block_size or engine.block_size
    body: dict[str, Any] = {
        "vllm": {
            "url": services.settings.vllm_base_url,
            "ok": engine.ok,
            "model": engine.model,
            "block_size": block_size,
            "error": engine.error,
        },
        "cache_view": services.cache_view_status()["source"],
    }
    if services.vllm.replicas:
        body["vllm"]["replicas"] = await services.vllm.replica_status()
    if services.rewarm is not None:  # the top contexts warmed when vLLM (re)started
        body["rewarm"] = services.rewarm.progress.as_dict()
    healthy = engine.ok
    if services.database is not None:
        db_ok = await services.database.ping()
        body["database"] = {"ok": db_ok}
        healthy = healthy and db_ok
    return {"status": "ok" if healthy else "degraded", **body}


@router.get("/contexts", summary="What a session can start with: the text-to-SQL databases")
async def contexts(request: Request) -> dict[str, list[str]]:
    return {"databases": services_of(request).sql.names()}
