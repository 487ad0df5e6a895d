"""`GET /health`: does vLLM answer, which model, which block size, is the database up."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from orchestrator.web.dependencies import services_of

router = APIRouter(tags=["health"])


@router.get("/health", summary="Service health, vLLM's model and served block size")
async def health(request: Request) -> JSONResponse:
    services = services_of(request)
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
    body = {"status": "ok" if healthy else "degraded", **body}
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/contexts", summary="What a session can start with: the text-to-SQL databases")
async def contexts(request: Request) -> dict[str, list[str]]:
    return {"databases": services_of(request).sql.names()}
