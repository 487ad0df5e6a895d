"""`create_app(settings)`: the FastAPI application, and the services it builds for its lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.errors import ServiceError, error_envelope
from orchestrator.settings import Settings
from orchestrator.web.health import router as health_router
from orchestrator.web.hosts import TrustedHosts
from orchestrator.web.middleware import BodySizeLimit, RequestId
from orchestrator.web.observability import router as observability_router
from orchestrator.web.passthrough import router as passthrough_router
from orchestrator.web.popular import router as hints_router
from orchestrator.web.startup import open_services
from orchestrator.web.state_completions import router as state_completions_router
from orchestrator.web.states_api import router as states_router
from orchestrator.web.warm_api import router as warm_router
from orchestrator.web.ws import router as ws_router

HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
UI_DIR = Path(__file__).resolve().parent.parent.parent / "ui_static"


@asynccontextmanager
async def lifespan_for(
    app: FastAPI, settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> AsyncIterator[None]:
    """The services, built and running while the application serves (`startup.py`)."""
    async with AsyncExitStack() as stack:
        app.state.services = await open_services(settings, transport, stack)
        yield


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
