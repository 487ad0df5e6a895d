"""`create_app(settings)`: the FastAPI application, and the services it builds for its lifetime."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.core.dispatch import WarmDispatcher
from orchestrator.core.engine_watch import EngineWatch, stop_task
from orchestrator.core.final_request import Finals
from orchestrator.core.gate import WarmupGate
from orchestrator.core.kv_events import KVEventFeed
from orchestrator.core.metrics import Metrics
from orchestrator.core.prefill_cost import PrefillCost
from orchestrator.core.prompt import PromptRenderer
from orchestrator.core.registry import SessionRegistry
from orchestrator.core.salt import routing_key
from orchestrator.core.state_keeper import StateKeeper
from orchestrator.core.state_store import MemoryStates, StateStore
from orchestrator.core.vllm_client import VLLMClient, make_http_client
from orchestrator.core.warm_scheduler import WarmScheduler
from orchestrator.errors import ServiceError, error_envelope
from orchestrator.logs import LogRing
from orchestrator.settings import Settings
from orchestrator.text_to_sql.contexts import SqlContexts
from orchestrator.text_to_sql.postgres import Database
from orchestrator.web.health import router as health_router
from orchestrator.web.hosts import TrustedHosts
from orchestrator.web.middleware import BodySizeLimit, RequestId
from orchestrator.web.observability import MAX_LOG_LINES
from orchestrator.web.observability import router as observability_router
from orchestrator.web.passthrough import router as passthrough_router
from orchestrator.web.popular import PrefixTraceRuntime
from orchestrator.web.popular import router as hints_router
from orchestrator.web.services import Services
from orchestrator.web.state_completions import router as state_completions_router
from orchestrator.web.state_store_pg import PostgresStates
from orchestrator.web.states_api import router as states_router
from orchestrator.web.warm_api import router as warm_router
from orchestrator.web.ws import router as ws_router

HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
UI_DIR = Path(__file__).resolve().parent.parent.parent / "ui_static"


@asynccontextmanager
async def lifespan_for(
    app: FastAPI, settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> AsyncIterator[None]:
    renderer = PromptRenderer.load(settings.tokenizer_path) if settings.load_tokenizer else None
    database = (
        Database(settings.database_url, settings.data_dir) if settings.enable_database else None
    )
    sql = SqlContexts()
    states: StateStore = MemoryStates() if database is None else PostgresStates(database)
    if database is not None:
        await database.start()
        try:
            await sql.load(database, settings.datasets_dir)
            await states.start()
        except BaseException:
            await database.stop()
            raise
    http = make_http_client(
        settings.vllm_base_url, settings.connect_timeout_s, settings.request_timeout_s, transport
    )
    metrics = Metrics()
    replicas = [str(url).rstrip("/") for url in settings.vllm_replica_urls]
    vllm = VLLMClient(http, on_error=metrics.upstream_error, replicas=replicas)
    gate = WarmupGate(settings.warmups_per_second)
    engine = EngineWatch(settings.max_warmups_in_flight)
    scheduler = WarmScheduler.from_settings(settings, metrics.final_waited)
    prefill_cost = PrefillCost()
    log_ring = LogRing(MAX_LOG_LINES, settings.log_format)
    services = Services(
        settings=settings,
        vllm=vllm,
        renderer=renderer,
        finals=Finals(vllm, scheduler, metrics),
        dispatcher=WarmDispatcher(
            vllm,
            gate,
            engine,
            settings.warm_priority,
            scheduler,
            metrics=metrics,
            report_chains=settings.kv_events_url is not None,
            piece_tokens=settings.warm_piece_tokens,
            cost=prefill_cost,
        ),
        prefill_cost=prefill_cost,
        contexts=sql,
        sessions=SessionRegistry(settings.max_sessions, settings.max_sessions_per_tenant),
        metrics=metrics,
        http=http,
        database=database,
        sql=sql,
        log_ring=log_ring,
        states=states,
    )
    services.state_keeper = StateKeeper(
        states, services.dispatcher, services.engine_facts, settings.state_touch_interval_s,
        functools.partial(routing_key, settings.server_secret),
    )  # fmt: skip
    metrics.watch(
        lambda: len(services.sessions),
        lambda: engine.in_flight,
        scheduler.queued,
        lambda: len(scheduler.running),
    )
    app.state.services = services
    log_ring.install()
    watcher = asyncio.create_task(services.watch_engine())
    replica_watcher = asyncio.create_task(services.watch_replicas())
    keeper = asyncio.create_task(services.state_keeper.run())
    feed = None
    if settings.kv_events_url is not None:
        services.kv_feed = KVEventFeed(
            settings.kv_events_url, settings.kv_events_replay_url, services.on_eviction
        )
        feed = asyncio.create_task(services.kv_feed.run())
    hot = await PrefixTraceRuntime.start(services, database)  # trace, index, re-warm at start
    try:
        yield
    finally:
        await hot.stop()
        log_ring.uninstall()
        if feed is not None:
            await stop_task(feed)
        await stop_task(keeper)
        await stop_task(watcher)
        await stop_task(replica_watcher)
        await http.aclose()
        if database is not None:
            await database.stop()


def create_app(
    settings: Settings, *, upstream_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The application; `upstream_transport` replaces the network to vLLM (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan_for(app, settings, upstream_transport):
            yield

    app = FastAPI(
        title="prefill-ahead",
        summary="Prefill the prompt while the user types: warm-ups for vLLM's prefix cache.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.http_max_body_bytes)
    app.add_middleware(TrustedHosts, settings=settings)
    app.add_middleware(RequestId)  # outermost: a 413 or a foreign Host's 400 has a request id too
    app.include_router(health_router)
    app.include_router(observability_router)
    app.include_router(ws_router)
    app.include_router(passthrough_router)
    app.include_router(warm_router)
    app.include_router(hints_router)
    app.include_router(states_router)
    app.include_router(state_completions_router)
    install_error_handlers(app)
    if UI_DIR.is_dir():
        app.mount("/", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return JSONResponse(error.envelope(), status_code=error.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """Starlette's and FastAPI's own (a body too deeply nested to parse, an unknown
        route, a wrong method): in the one envelope too."""
        code = HTTP_CODES.get(error.status_code, "http_error")
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        body = error_envelope(str(error.detail), kind, None, code)
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg", "invalid"))
        body = error_envelope(message, "invalid_request_error", param, "invalid_request")
        return JSONResponse(body, status_code=400)
