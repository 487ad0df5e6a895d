"""What the service is doing: `GET /metrics` (Prometheus), `GET /status` (JSON for the page
and for people), `GET /logs` (the tails of vLLM's log and of ours).

Who reads what (`auth.Audience`):

- an admin key (or, with no key configured at all, a loopback client) reads the service's
  figures, all of them;
- a tenant's key reads its own: `/status` gives its open sessions and the engine facts its
  sessions are told anyway (ok, model, block size), `/metrics` its open sessions. What is
  shared by every tenant and cannot be cut per tenant (vLLM's URL, cache usage and hit rate,
  warm-ups in flight, finals waiting, the warm-up and TTFT counters, prefix popularity, KV
  events) is not given to a tenant;
- `/logs` takes an admin key, or, with no key configured, a loopback client.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from orchestrator.core.engine.vllm_metrics import EngineFigures, parse_engine_metrics
from orchestrator.errors import UpstreamError
from orchestrator.logs import tail_lines
from orchestrator.web.dependencies import Reader, http_admin, services_of
from orchestrator.web.services import Services

router = APIRouter(tags=["observability"])
MAX_LOG_LINES = 2000
TENANT_ENGINE_FACTS = ("ok", "model", "block_size")  # what a tenant's sessions are told anyway


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, reader: Reader) -> Response:
    """The orchestrator's own metrics in the Prometheus text format (a tenant: its own)."""
    services = services_of(request)
    if reader.tenant is None:
        registry = services.metrics.registry
    else:
        registry = tenant_registry(services.sessions.per_tenant[reader.tenant])
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def tenant_registry(sessions_open: int) -> CollectorRegistry:
    """What a tenant's scrape holds: the figures that are its own."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "prefill_ahead_sessions_open", "WebSocket sessions open (this tenant's).", registry=registry
    )
    gauge.set(sessions_open)
    return registry


@router.get("/status", summary="vLLM's cache figures, sessions and warm-ups right now")
async def status(request: Request, reader: Reader) -> dict[str, Any]:
    """The service's figures for an admin; a tenant's own for a tenant's key."""
    services = services_of(request)
    engine = await engine_status(services)
    if reader.tenant is not None:
        return {
            "audience": "tenant",
            "engine": {key: engine[key] for key in TENANT_ENGINE_FACTS},
            "sessions": {"open": services.sessions.per_tenant[reader.tenant]},
        }
    return {
        "audience": "admin",
        "engine": engine,
        "kv_events": services.cache_view_status(),
        "sessions": {"open": len(services.sessions)},
        "warmups": {
            "in_flight": services.engine.in_flight,
            **services.dispatcher.scheduler.status(),
        },
        "popularity": services.popularity.status() if services.popularity else None,
        "rewarm": services.rewarm.progress.as_dict() if services.rewarm else None,
    }


async def engine_status(services: Services) -> dict[str, Any]:
    """vLLM's URL, model and figures from its own `/metrics` (None where it has none)."""
    url = services.settings.vllm_base_url
    try:
        models = await services.vllm.model_names()
    except UpstreamError as error:
        figures = EngineFigures(block_size=services.settings.block_size)
        return {"url": url, "ok": False, "model": None, **figures.as_dict(), "error": error.message}
    try:
        figures = parse_engine_metrics(await services.vllm.metrics_text())
    except UpstreamError:
        figures = EngineFigures()
    block_size = services.settings.block_size or figures.block_size
    body = {"url": url, "ok": True, "model": models[0] if models else None, **figures.as_dict()}
    return {**body, "block_size": block_size, "error": None}


@router.get(
    "/logs",
    summary="The last lines of vLLM's log and of the orchestrator's",
    dependencies=[Depends(http_admin)],
)
async def logs(
    request: Request,
    lines: Annotated[int, Query(ge=1, le=MAX_LOG_LINES, description="Lines of each log.")] = 200,
) -> dict[str, list[str]]:
    """vLLM's log file (`PREFILL_VLLM_LOG_FILE`; none when it does not exist) and the
    orchestrator's own records, kept in memory since it started."""
    services = services_of(request)
    vllm = await asyncio.to_thread(tail_lines, services.settings.vllm_log_path, lines)
    return {"vllm": vllm, "orchestrator": services.log_ring.tail(lines)}
