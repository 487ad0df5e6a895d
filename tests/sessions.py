"""The set-up the WebSocket session tests share (`tests/orchestrator/conftest.py` holds the
fixtures): an orchestrator on uvicorn in the test's own event loop, against the fake vLLM, and the
helpers that start a session on it.

A module says what its orchestrators and its fake are like by overriding the module-scoped
fixture `orchestrator_defaults` with its own `Defaults`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from orchestrator.core.engine.salt import tenant_salt
from orchestrator.settings import Settings
from orchestrator.web.services import Services
from tests.fakes import SessionClient
from tests.helpers import SYSTEM, settings_against

SECRET = "session-test-secret"


@dataclass(frozen=True)
class Defaults:
    """What every orchestrator (and the fake vLLM) of a test module is like."""

    settings: dict[str, Any] = field(default_factory=dict)  # over `settings_against`'s
    key: str | None = None  # the API key `started` connects with unless told otherwise
    strict_fake: bool = False  # the fake vLLM checks request bodies as vLLM does


def settings_for(
    vllm_url: str, tokenizer_dir: Path, defaults: Defaults, **overrides: Any
) -> Settings:
    return settings_against(vllm_url, tokenizer_dir, SECRET, **{**defaults.settings, **overrides})


def salt(tenant: str = "anonymous", namespace: str | None = None) -> str:
    """The cache salt the orchestrator gives `tenant`'s requests (in `namespace`)."""
    return tenant_salt(SecretStr(SECRET), tenant, namespace)


@dataclass
class App:
    settings: Settings
    app: FastAPI
    url: str
    stack: contextlib.AsyncExitStack
    key: str | None = None  # what `started` connects with unless told otherwise

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def session(self, *, key: str | None = None, origin: str | None = None) -> SessionClient:
        """A connected client (`key` as the subprotocol), closed when the test ends."""
        connecting = SessionClient.connect(self.url, key=key, origin=origin)
        return await self.stack.enter_async_context(connecting)

    async def http(self, *, over_the_port: bool = False) -> httpx.AsyncClient:
        """An HTTP client of the app, closed when the test ends: in-process (no socket)
        unless `over_the_port`, for a test that counts the connections and tasks."""
        transport = None if over_the_port else httpx.ASGITransport(app=self.app)
        client = httpx.AsyncClient(transport=transport, base_url=self.url, timeout=10)
        return await self.stack.enter_async_context(client)


StartApp = Callable[..., Awaitable[App]]  # the `start_app` fixture: an orchestrator to test


async def started(
    app: App,
    *,
    key: str | EllipsisType | None = ...,
    origin: str | None = None,
    **start: Any,
) -> SessionClient:
    """A client whose session is started with SYSTEM as context (and `start` overrides);
    it connects with `key`, by default the app's."""
    client = await app.session(key=app.key if isinstance(key, EllipsisType) else key, origin=origin)
    await client.send(**{"type": "start", "context": {"system": SYSTEM}, **start})
    await client.next("ready")
    return client
